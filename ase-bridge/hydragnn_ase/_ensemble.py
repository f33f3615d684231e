"""Ensembles (committees) in the ASE calculator: on an ensemble model file, one engine call
(`hgnn_compute_ensemble`) gives the driving results (the committee mean by default) and the
model deviation, added to `results`:

- `energy_std` (eV), `forces_std` (per-atom force deviation sqrt(<|F_i - <F_i>|^2>), (n,), eV/Å),
  `stress_std` (std of each stress component over the members, Voigt order, eV/Å^3; periodic
  cells), `max_devi_f`, `min_devi_f`, `avg_devi_f` (eV/Å; DeePMD-kit's model_devi columns);
- the committee: `energy_comm` (K,), `forces_comm` (K, n, 3), `stress_comm` (K, 6).

The committee energies are `energy_comm`, not `energies`: `energies` already means the per-atom
energies in ASE and in this calculator."""

from ctypes import POINTER, Structure, byref, c_double

import numpy as np
from ase.stress import full_3x3_to_voigt_6_stress

PROPERTIES = [
    "energy_std",
    "forces_std",
    "stress_std",
    "max_devi_f",
    "min_devi_f",
    "avg_devi_f",
    "energy_comm",
    "forces_comm",
    "stress_comm",
]


class hgnn_ensemble_results_t(Structure):
    _fields_ = [
        ("energy_std", c_double),
        ("max_devi_f", c_double),
        ("min_devi_f", c_double),
        ("avg_devi_f", c_double),
        ("max_devi_v", c_double),
        ("min_devi_v", c_double),
        ("avg_devi_v", c_double),
        ("virial_std", c_double * 9),
        ("force_dev", POINTER(c_double)),
        ("member_energies", POINTER(c_double)),
        ("member_forces", POINTER(c_double)),
        ("member_virials", POINTER(c_double)),
    ]


def bind(lib):
    """Declares the ensemble entry points on `lib` (status-checked like every other)."""
    from ctypes import c_int32, c_void_p

    from . import _capi

    for name, argtypes in (
        ("hgnn_model_ensemble_size", [c_void_p, POINTER(c_int32)]),
        ("hgnn_model_set_ensemble_drive", [c_void_p, c_int32]),
        (
            "hgnn_compute_ensemble",
            [c_void_p, POINTER(_capi.hgnn_structure_t), POINTER(_capi.hgnn_results_t), POINTER(hgnn_ensemble_results_t)],
        ),
    ):
        f = getattr(lib, name)
        f.argtypes = argtypes
        f.restype = c_int32
        f.errcheck = _capi._check


def size(lib, handle):
    """K, the number of members (1 for a model file)."""
    from ctypes import c_int32

    if not getattr(lib, "_hgnn_ensemble_bound", False):
        bind(lib)
        lib._hgnn_ensemble_bound = True
    k = c_int32()
    lib.hgnn_model_ensemble_size(handle, byref(k))
    return k.value


def compute(m, job, k):
    """Runs `hgnn_compute_ensemble` for `job` (a calculator `_Job`): fills the job's driving
    results and returns the ensemble's entries for `results`."""
    n = job.n
    e = hgnn_ensemble_results_t()
    fd, me, mf = np.zeros(n), np.zeros(k), np.zeros((k, n, 3))
    mv = np.zeros((k, 3, 3)) if job.virial is not None else None
    dp = lambda a: a.ctypes.data_as(POINTER(c_double))  # noqa: E731
    e.force_dev, e.member_energies, e.member_forces = dp(fd), dp(me), dp(mf)
    if mv is not None:
        e.member_virials = dp(mv)
    m.lib.hgnn_compute_ensemble(m.handle, byref(job.structure), byref(job.raw), byref(e))
    out = {
        "energy_std": float(e.energy_std),
        "forces_std": fd,
        "max_devi_f": float(e.max_devi_f),
        "min_devi_f": float(e.min_devi_f),
        "avg_devi_f": float(e.avg_devi_f),
        "energy_comm": me,
        "forces_comm": mf,
    }
    if mv is not None:
        stress = np.array([full_3x3_to_voigt_6_stress(-w / job.volume) for w in mv])
        out["stress_comm"] = stress
        out["stress_std"] = stress.std(axis=0)
    return out
