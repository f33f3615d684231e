"""hydragnn_ase: the ASE calculator of hydragnn-rs, a thin ctypes client of the engine's C ABI
(libhydragnn.so); the model is evaluated by the same engine that LAMMPS uses."""

from ._capi import (
    HGNN_ABI_VERSION,
    AbiVersionError,
    HydraGNNError,
    InternalError,
    InvalidArgumentError,
    LibraryNotFoundError,
    ModelFileError,
    ModelIOError,
    ModelNotFoundError,
    NullPointerError,
    UnknownSpeciesError,
    library_path,
    load_library,
)
from .calculator import HydraGNNCalculator

__all__ = [
    "HGNN_ABI_VERSION",
    "AbiVersionError",
    "HydraGNNCalculator",
    "HydraGNNError",
    "InternalError",
    "InvalidArgumentError",
    "LibraryNotFoundError",
    "ModelFileError",
    "ModelIOError",
    "ModelNotFoundError",
    "NullPointerError",
    "UnknownSpeciesError",
    "library_path",
    "load_library",
    "version",
]
__version__ = "0.1.0"


def version():
    """The engine's version (from the loaded libhydragnn.so)."""
    return load_library().hgnn_version().decode()
