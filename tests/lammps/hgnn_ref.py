"""The engine's direct evaluation (hgnn_compute through ctypes on libhydragnn.so): the reference
that LAMMPS results are compared with. Independent of the ASE bridge on purpose. The evaluation
path is set explicitly (hgnn_model_set_compress), like `pair_style hydragnn compress yes|no`:
compress=True (the default, as the pair style's) is the fast path where the backbone has one,
compress=False the exact libtorch path."""

import ctypes
import json
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIB_PATH = os.environ.get("HYDRAGNN_LIB", os.path.join(ROOT, "target", "release", "libhydragnn.so"))


class _Options(ctypes.Structure):
    _fields_ = [("device", ctypes.c_int32), ("dtype", ctypes.c_int32),
                ("num_threads", ctypes.c_int32), ("branch", ctypes.c_char_p)]


class _Structure(ctypes.Structure):
    _fields_ = [("n_atoms", ctypes.c_int64), ("positions", ctypes.POINTER(ctypes.c_double)),
                ("atomic_numbers", ctypes.POINTER(ctypes.c_int32)), ("cell", ctypes.c_double * 9),
                ("pbc", ctypes.c_int32 * 3)]


class _Results(ctypes.Structure):
    _fields_ = [("energy", ctypes.c_double), ("forces", ctypes.POINTER(ctypes.c_double)),
                ("virial", ctypes.POINTER(ctypes.c_double)),
                ("energies", ctypes.POINTER(ctypes.c_double)),
                ("virials", ctypes.POINTER(ctypes.c_double))]


class EngineError(RuntimeError):
    pass


_lib = None


def lib():
    global _lib
    if _lib is None:
        _lib = ctypes.CDLL(LIB_PATH)
        _lib.hgnn_last_error.restype = ctypes.c_char_p
        _lib.hgnn_options_default.restype = _Options
        for name in ("hgnn_model_load", "hgnn_compute", "hgnn_model_cutoff", "hgnn_model_num_layers",
                     "hgnn_model_set_compress", "hgnn_model_path"):
            getattr(_lib, name).restype = ctypes.c_int32
        _lib.hgnn_model_set_compress.argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.c_double]
        _lib.hgnn_model_path.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p)]
    return _lib


def _check(status):
    if status != 0:
        raise EngineError(lib().hgnn_last_error().decode())


def _dptr(a):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_double))


class Model:
    """A loaded model file (float64 on the CPU unless told otherwise), on the fast path
    (compress=True, where the backbone has one) or the exact path (compress=False)."""

    def __init__(self, path, dtype=64, compress=True):
        if not isinstance(compress, bool):
            raise TypeError(f"compress must be True or False, got {compress!r}")
        opts = lib().hgnn_options_default()
        opts.dtype = dtype
        opts.num_threads = 1
        self._ptr = ctypes.c_void_p()
        _check(lib().hgnn_model_load(os.fsencode(path), ctypes.byref(opts), ctypes.byref(self._ptr)))
        _check(lib().hgnn_model_set_compress(self._ptr, int(compress), 0.0))  # 0: default tolerance

    def __del__(self):
        if getattr(self, "_ptr", None):
            lib().hgnn_model_free(self._ptr)

    @property
    def path_info(self):
        """hgnn_model_path as a dict: {"path": "fast" | "exact", "description": ..., ...}."""
        out = ctypes.c_char_p()
        _check(lib().hgnn_model_path(self._ptr, ctypes.byref(out)))
        return json.loads(out.value.decode())

    @property
    def cutoff(self):
        c = ctypes.c_double()
        _check(lib().hgnn_model_cutoff(self._ptr, ctypes.byref(c)))
        return c.value

    @property
    def num_layers(self):
        n = ctypes.c_int32()
        _check(lib().hgnn_model_num_layers(self._ptr, ctypes.byref(n)))
        return n.value

    def compute(self, positions, numbers, cell, pbc=(1, 1, 1)):
        """energy, forces (N,3), virial (3,3), energies (N,), virials (N,3,3) in eV, Å."""
        pos = np.ascontiguousarray(positions, dtype=np.float64)
        z = np.ascontiguousarray(numbers, dtype=np.int32)
        n = len(z)
        s = _Structure()
        s.n_atoms = n
        s.positions = _dptr(pos)
        s.atomic_numbers = z.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        s.cell[:] = [float(v) for v in np.asarray(cell, dtype=np.float64).reshape(9)]
        s.pbc[:] = [int(p) for p in pbc]
        forces = np.zeros((n, 3))
        virial = np.zeros((3, 3))
        energies = np.zeros(n)
        virials = np.zeros((n, 3, 3))
        r = _Results()
        r.forces, r.virial, r.energies, r.virials = _dptr(forces), _dptr(virial), _dptr(energies), _dptr(virials)
        _check(lib().hgnn_compute(self._ptr, ctypes.byref(s), ctypes.byref(r)))
        return {"energy": r.energy, "forces": forces, "virial": virial, "energies": energies,
                "virials": virials}
