"""ctypes binding of the engine's C ABI (mlip/capi/include/hydragnn.h): library lookup, the
structs, the exception hierarchy, and the one place where a status code becomes an exception."""

import ctypes
import errno
import importlib.util
import os
from ctypes import POINTER, Structure, c_char_p, c_double, c_int32, c_int64, c_void_p
from pathlib import Path

LIBRARY_NAME = "libhydragnn.so"
# The C ABI version this binding is written for (HGNN_ABI_VERSION in hydragnn.h); a library that
# reports another one from hgnn_abi_version() is refused at load.
HGNN_ABI_VERSION = 2

# Status codes and option constants, as in hydragnn.h.
HGNN_SUCCESS = 0
HGNN_ERROR_INVALID_ARGUMENT = 1
HGNN_ERROR_NULL_POINTER = 2
HGNN_ERROR_IO = 3
HGNN_ERROR_MODEL_FILE = 4
HGNN_ERROR_UNKNOWN_SPECIES = 5
HGNN_ERROR_INTERNAL = 6
HGNN_DEVICE_CPU = 0
HGNN_DEVICE_CUDA = 1
HGNN_DTYPE_FLOAT32 = 32
HGNN_DTYPE_FLOAT64 = 64
HGNN_HEAD_GRAPH = 0
HGNN_HEAD_NODE = 1
HGNN_POOL_SUM = 0
HGNN_POOL_MEAN = 1
HGNN_POOL_MAX = 2
# The largest libtorch thread count the engine accepts (mlip::compute::MAX_THREADS); checked here
# too because ctypes would silently truncate a Python int beyond 32 bits before the engine sees it.
MAX_THREADS = 1024


# --- exceptions -----------------------------------------------------------------------------


class HydraGNNError(Exception):
    """An error reported by the engine; `code` is its HGNN_ERROR_* status."""

    code = None

    def __init__(self, message, code=None):
        super().__init__(message)
        if code is not None:
            self.code = code


class InvalidArgumentError(HydraGNNError, ValueError):
    """An invalid input: a NaN position, a zero-volume cell, a bad option ..."""

    code = HGNN_ERROR_INVALID_ARGUMENT


class NullPointerError(HydraGNNError, ValueError):
    """A NULL pointer reached the engine (a bug in this binding)."""

    code = HGNN_ERROR_NULL_POINTER


class ModelIOError(HydraGNNError, OSError):
    """A model file could not be read."""

    code = HGNN_ERROR_IO


class ModelNotFoundError(ModelIOError, FileNotFoundError):
    """The model file does not exist (errno ENOENT, `filename` is the path)."""

    def __init__(self, path):
        OSError.__init__(self, errno.ENOENT, f"model file not found: {path}", str(path))


class ModelFileError(HydraGNNError, ValueError):
    """The file is not a valid model file (truncated, corrupted, wrong version, not a model)."""

    code = HGNN_ERROR_MODEL_FILE


class UnknownSpeciesError(HydraGNNError, ValueError):
    """An atom's element is not one of the model's species."""

    code = HGNN_ERROR_UNKNOWN_SPECIES


class InternalError(HydraGNNError, RuntimeError):
    """A failure inside the engine (libtorch error, non-finite model output)."""

    code = HGNN_ERROR_INTERNAL


class LibraryNotFoundError(HydraGNNError, ImportError):
    """libhydragnn.so was not found or could not be loaded."""


class AbiVersionError(LibraryNotFoundError):
    """libhydragnn.so implements another C ABI version than this binding expects."""


_ERRORS = {
    cls.code: cls
    for cls in (InvalidArgumentError, NullPointerError, ModelIOError, ModelFileError, UnknownSpeciesError, InternalError)
}


# --- structs --------------------------------------------------------------------------------


class hgnn_options_t(Structure):
    _fields_ = [("device", c_int32), ("dtype", c_int32), ("num_threads", c_int32), ("branch", c_char_p)]


class hgnn_structure_t(Structure):
    _fields_ = [
        ("n_atoms", c_int64),
        ("positions", POINTER(c_double)),
        ("atomic_numbers", POINTER(c_int32)),
        ("cell", c_double * 9),
        ("pbc", c_int32 * 3),
    ]


class hgnn_results_t(Structure):
    _fields_ = [
        ("energy", c_double),
        ("forces", POINTER(c_double)),
        ("virial", POINTER(c_double)),
        ("energies", POINTER(c_double)),
        ("virials", POINTER(c_double)),
    ]


class hgnn_head_t(Structure):
    _fields_ = [
        ("name", c_char_p),
        ("kind", c_int32),
        ("dim", c_int32),
        ("pooling", c_int32),
        ("pool_first", c_int32),
    ]


# --- the library ----------------------------------------------------------------------------


def _candidates():
    """Where to look for the library, in order: env HYDRAGNN_LIB; the package folder (where a
    wheel built from a tree with the engine built ships it); CARGO_TARGET_DIR; and, when the
    package runs from a hydragnn-rs source tree (editable install, PYTHONPATH), that tree's
    target/release."""
    env = os.environ.get("HYDRAGNN_LIB")
    if env:
        return [Path(env)]
    here = Path(__file__).resolve().parent
    out = [here / LIBRARY_NAME]
    target = os.environ.get("CARGO_TARGET_DIR")
    if target:
        out.append(Path(target) / "release" / LIBRARY_NAME)
    repo = here.parent.parent  # ase-bridge/hydragnn_ase/_capi.py -> repository root
    if (repo / "Cargo.toml").is_file() and (repo / "mlip" / "capi").is_dir():
        out.append(repo / "target" / "release" / LIBRARY_NAME)
    return out


# How to get the engine, for every "not found" message.
_HOW_TO_FIX = (
    "To fix it, either\n"
    "  - set HYDRAGNN_LIB to the path of libhydragnn.so (built in a hydragnn-rs checkout with "
    "`. scripts/env.sh && cargo build --release -p hydragnn-capi`, it is "
    "target/release/libhydragnn.so), or\n"
    "  - build the engine first, then reinstall this package from that checkout "
    "(`pip install ./ase-bridge`): the wheel then ships libhydragnn.so inside hydragnn_ase/."
)


def library_path():
    """The path of the libhydragnn.so that `load_library` would load."""
    cands = _candidates()
    for p in cands:
        if p.is_file():
            return p
    if os.environ.get("HYDRAGNN_LIB"):
        raise LibraryNotFoundError(
            f"HYDRAGNN_LIB={cands[0]} does not exist (HYDRAGNN_LIB must be the path of "
            f"{LIBRARY_NAME} itself). {_HOW_TO_FIX}"
        )
    tried = "\n  ".join(str(p) for p in cands)
    raise LibraryNotFoundError(
        f"the engine library {LIBRARY_NAME} was not found; looked in:\n  {tried}\n{_HOW_TO_FIX}"
    )


def check_threads(threads):
    """`threads` as an int in 1..=MAX_THREADS, or None; anything else raises
    InvalidArgumentError (a ValueError) naming the value and the range (ctypes would truncate a
    value beyond 32 bits silently, so the range is checked before the engine sees it)."""
    if threads is None:
        return None
    import numpy as np

    if isinstance(threads, (bool, np.bool_)) or not isinstance(threads, (int, np.integer)):
        raise InvalidArgumentError(
            f"threads must be None or an integer in 1..={MAX_THREADS}, got {threads!r} "
            f"of type {type(threads).__name__}"
        )
    if not 1 <= threads <= MAX_THREADS:
        raise InvalidArgumentError(f"threads={threads} is out of range: it must be in 1..={MAX_THREADS}")
    return int(threads)


def _preload_libtorch():
    """Loads libtorch from an installed torch wheel (without importing torch), for a library
    whose RUNPATH does not point at one; returns False when there is none."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    lib = Path(list(spec.submodule_search_locations)[0]) / "lib"
    for name in ("libc10.so", "libtorch_cpu.so"):
        if not (lib / name).is_file():
            return False
        ctypes.CDLL(str(lib / name), mode=ctypes.RTLD_GLOBAL)
    return True


def _check(status, func, args):
    """The one place where a status code is checked: raises the matching HydraGNNError with the
    engine's message (`hgnn_last_error`, per thread, read right after the failing call)."""
    if status == HGNN_SUCCESS:
        return status
    msg = _LIB.hgnn_last_error().decode("utf-8", "replace")
    raise _ERRORS.get(status, HydraGNNError)(f"{func.__name__}: {msg}", status)


def _check_abi(lib, path):
    """Refuses a library whose C ABI version is not `HGNN_ABI_VERSION`."""
    try:
        f = lib.hgnn_abi_version
    except AttributeError:
        raise AbiVersionError(
            f"{path} has no hgnn_abi_version (a library older than C ABI version 1), but this "
            f"binding needs C ABI version {HGNN_ABI_VERSION}: rebuild libhydragnn.so from the "
            "same hydragnn-rs revision as this package"
        ) from None
    f.argtypes = []
    f.restype = c_int32
    found = f()
    if found != HGNN_ABI_VERSION:
        raise AbiVersionError(
            f"{path} implements C ABI version {found} but this binding (hydragnn_ase) expects "
            f"version {HGNN_ABI_VERSION}: use a libhydragnn.so and a hydragnn_ase from the same "
            "hydragnn-rs revision (set HYDRAGNN_LIB to the matching library)"
        )


def _bind(lib):
    P = POINTER
    status = [
        ("hgnn_set_num_threads", [c_int32]),
        ("hgnn_model_load", [c_char_p, P(hgnn_options_t), P(c_void_p)]),
        ("hgnn_model_cutoff", [c_void_p, P(c_double)]),
        ("hgnn_model_num_layers", [c_void_p, P(c_int32)]),
        ("hgnn_model_num_species", [c_void_p, P(c_int32)]),
        ("hgnn_model_species", [c_void_p, P(c_int32), c_int32]),
        ("hgnn_model_info", [c_void_p, P(c_char_p)]),
        ("hgnn_model_set_compress", [c_void_p, c_int32, c_double]),
        ("hgnn_model_path", [c_void_p, P(c_char_p)]),
        ("hgnn_compute", [c_void_p, P(hgnn_structure_t), P(hgnn_results_t)]),
        ("hgnn_compute_batch", [c_void_p, c_int64, P(hgnn_structure_t), P(hgnn_results_t)]),
        ("hgnn_model_precision", [c_void_p, P(c_int32)]),
        ("hgnn_precision_parse", [c_char_p, P(c_int32)]),
        ("hgnn_model_num_branches", [c_void_p, P(c_int32)]),
        ("hgnn_model_branch_name", [c_void_p, c_int32, P(c_char_p)]),
        ("hgnn_model_active_branch", [c_void_p, P(c_int32)]),
        ("hgnn_model_energy_is_pooled", [c_void_p, P(c_int32)]),
        ("hgnn_model_num_graph_attr", [c_void_p, P(c_int32)]),
        ("hgnn_model_graph_attr_name", [c_void_p, c_int32, P(c_char_p)]),
        ("hgnn_model_set_graph_attr", [c_void_p, P(c_double), c_int64]),
        ("hgnn_model_num_heads", [c_void_p, P(c_int32)]),
        ("hgnn_model_head", [c_void_p, c_int32, P(hgnn_head_t)]),
        ("hgnn_compute_head", [c_void_p, c_int64, P(hgnn_structure_t), c_char_p, P(c_double), c_int64]),
        ("hgnn_model_min_training_distance", [c_void_p, P(c_double)]),
        ("hgnn_model_zbl", [c_void_p, P(c_double), P(c_double)]),
        ("hgnn_closest_pair", [c_void_p, P(hgnn_structure_t), P(c_int64), P(c_int64), P(c_double)]),
    ]
    for name, argtypes in status:
        f = getattr(lib, name)
        f.argtypes = argtypes
        f.restype = c_int32
        f.errcheck = _check
    lib.hgnn_last_error.argtypes = []
    lib.hgnn_last_error.restype = c_char_p
    lib.hgnn_version.argtypes = []
    lib.hgnn_version.restype = c_char_p
    lib.hgnn_options_default.argtypes = []
    lib.hgnn_options_default.restype = hgnn_options_t
    lib.hgnn_precision_name.argtypes = [c_int32]
    lib.hgnn_precision_name.restype = c_char_p
    lib.hgnn_model_free.argtypes = [c_void_p]
    lib.hgnn_model_free.restype = None
    return lib


_LIB = None


def load_library():
    """The bound library (loaded once per process)."""
    global _LIB
    if _LIB is None:
        path = library_path()
        try:
            lib = ctypes.CDLL(str(path))
        except OSError as first:
            # The RUNPATH written at build time may not exist here; try the torch wheel.
            try:
                found = "libtorch" in str(first) and _preload_libtorch()
                lib = ctypes.CDLL(str(path)) if found else None
            except OSError:
                lib = None
            if lib is None:
                raise LibraryNotFoundError(
                    f"cannot load {path}: {first}\n"
                    "libhydragnn.so needs libtorch (libtorch_cpu.so, libc10.so): install the same "
                    "torch version it was built against, or add its lib/ folder to LD_LIBRARY_PATH."
                ) from first
        _check_abi(lib, path)
        _LIB = _bind(lib)
    return _LIB


def parse_precision(value):
    """The HGNN_DTYPE_* of a precision given by name ("float32", "fp64", "double" ...: the engine's
    one parser, `hgnn_precision_parse`) or as a numpy dtype (np.float32, np.dtype("float64")).
    Raises InvalidArgumentError (a ValueError) naming `dtype` and what is accepted."""
    import numpy as np

    name = value if isinstance(value, str) else np.dtype(value).name
    out = c_int32()
    try:
        load_library().hgnn_precision_parse(name.encode(), ctypes.byref(out))
    except InvalidArgumentError as e:
        raise InvalidArgumentError(f"dtype {value!r}: {e}", e.code) from None
    return out.value


def precision_name(dtype):
    """The canonical name ("float32" or "float64") of an HGNN_DTYPE_* value."""
    name = load_library().hgnn_precision_name(dtype)
    if name is None:
        raise InvalidArgumentError(f"dtype {dtype} is not HGNN_DTYPE_FLOAT32 or HGNN_DTYPE_FLOAT64")
    return name.decode()
