"""The C ABI version check at load: the library's hgnn_abi_version() must equal the binding's
HGNN_ABI_VERSION, and a mismatch is refused with a message that names both versions."""

import pytest

import hydragnn_ase
from hydragnn_ase import _capi


def test_library_reports_the_bindings_abi_version():
    lib = _capi.load_library()
    assert lib.hgnn_abi_version() == _capi.HGNN_ABI_VERSION == hydragnn_ase.HGNN_ABI_VERSION


def test_mismatched_abi_version_is_refused(monkeypatch):
    monkeypatch.setattr(_capi, "_LIB", None)  # load afresh (monkeypatch restores the bound one)
    monkeypatch.setattr(_capi, "HGNN_ABI_VERSION", _capi.HGNN_ABI_VERSION + 41)
    with pytest.raises(hydragnn_ase.AbiVersionError) as e:
        _capi.load_library()
    msg = str(e.value)
    assert f"C ABI version {_capi.HGNN_ABI_VERSION - 41}" in msg
    assert f"expects version {_capi.HGNN_ABI_VERSION}" in msg
    assert isinstance(e.value, ImportError) and isinstance(e.value, hydragnn_ase.HydraGNNError)
    assert _capi._LIB is None  # nothing half-loaded is kept


def test_library_without_abi_version_is_refused(monkeypatch):
    class Old:  # a library older than ABI version 1: no hgnn_abi_version symbol
        pass

    with pytest.raises(hydragnn_ase.AbiVersionError, match="no hgnn_abi_version"):
        _capi._check_abi(Old(), "old/libhydragnn.so")


def test_precision_names_are_parsed_by_the_engine():
    import numpy as np

    f32, f64 = _capi.HGNN_DTYPE_FLOAT32, _capi.HGNN_DTYPE_FLOAT64
    for name, dt in [("float32", f32), ("fp32", f32), ("single", f32), (np.float32, f32),
                     ("float64", f64), ("FP64", f64), ("double", f64), (np.dtype("float64"), f64)]:
        assert _capi.parse_precision(name) == dt, name
    assert _capi.precision_name(f32) == "float32" and _capi.precision_name(f64) == "float64"
    with pytest.raises(_capi.InvalidArgumentError, match="dtype 'bf16'.*evaluation are float32 or float64"):
        _capi.parse_precision("bf16")
    with pytest.raises(ValueError, match="must be float32 or float64"):
        _capi.parse_precision(np.float16)
