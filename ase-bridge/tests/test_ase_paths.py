"""The engine's two evaluation paths through the calculator: `compress=True` (the fast path:
tabulated radial filters and fused kernels, where the backbone has one) and `compress=False` (the
exact libtorch autograd path) agree in float64 to 1e-6 eV/atom in energy and 1e-5 eV/Å in forces
for the trained SchNet potential (forces of a few eV/Å); `path_info` says which path runs;
`compress` accepts booleans only.

The tables' error is relative, so the paths' difference scales with the size of the forces: the
random-weight test models (`random_model`) have forces of 20-200 eV/Å (10-100 times a real
potential's) and differ by up to 2e-6 of the largest force; for them the bounds are scaled by
max(1, |F|max / 1 eV/Å), i.e. 1e-5 relative."""

import copy
import json
import pickle
import re
from ctypes import byref, c_char_p, c_void_p

import numpy as np
import pytest
from ase.build import bulk

from ase_testutil import REPO, random_atoms
from hydragnn_ase import HydraGNNCalculator, load_library

E_TOL = 1e-6  # eV/atom
F_TOL = 1e-5  # eV/Å
S_TOL = 1e-6  # eV/Å^3 (0.16 MPa)
F_SCALE = 1.0  # eV/Å: forces up to this size get the absolute bounds, larger ones proportionally more
TRAINED = REPO / "potentials" / "metals_schnet.model"

SYSTEMS = {
    "triclinic": dict(n=8, pbc=True),
    "molecule": dict(n=8, pbc=False),
    "slab": dict(n=8, pbc=[True, False, True]),
    "small_cell": dict(n=2, pbc=True, cell=[[2.9, 0.0, 0.0], [0.6, 2.8, 0.0], [0.3, -0.4, 3.1]], spread=0.3),
}


def _both(path, atoms, **kw):
    """(fast, exact) results of the same structure: energy, energies, forces (+ stress)."""
    out = []
    for compress in (True, False):
        a = atoms.copy()
        a.calc = HydraGNNCalculator(path, compress=compress, **kw)
        a.get_forces()
        out.append((a.calc.path_info, dict(a.calc.results)))
    return out


def _assert_close(fast, exact, n, where, scaled=False):
    """Absolute bounds; with `scaled`, multiplied by max(1, |F|max / F_SCALE)."""
    k = max(1.0, np.abs(exact["forces"]).max() / F_SCALE) if scaled else 1.0
    de = abs(fast["energy"] - exact["energy"]) / n
    df = np.abs(fast["forces"] - exact["forces"]).max()
    dei = np.abs(fast["energies"] - exact["energies"]).max()
    fmax = np.abs(exact["forces"]).max()
    note = f" (|F|max {fmax:.3g} eV/Å, bound x{k:.3g})"
    assert de < k * E_TOL, f"{where}: energy differs by {de:.2e} eV/atom{note}"
    assert dei < k * E_TOL, f"{where}: per-atom energies differ by {dei:.2e} eV{note}"
    assert df < k * F_TOL, f"{where}: forces differ by {df:.2e} eV/Å{note}"
    if "stress" in exact:
        ds = np.abs(fast["stress"] - exact["stress"]).max()
        assert ds < k * S_TOL, f"{where}: stress differs by {ds:.2e} eV/Å^3{note}"
    return de, df


def _crystals():
    cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(3)
    cu.rattle(0.05, seed=3)
    alloy = cu.copy()
    alloy.numbers[::3] = 13
    alloy.numbers[1::3] = 28
    return {"Cu108": cu, "AlNiCu108": alloy}


@pytest.mark.skipif(not TRAINED.exists(), reason=f"{TRAINED} not present")
@pytest.mark.parametrize("system", sorted(SYSTEMS) + sorted(_crystals()))
def test_fast_equals_exact_trained_schnet(system, rng):
    """The trained SchNet potential (float32 weights, evaluated in float64) on its two paths:
    1e-6 eV/atom, 1e-5 eV/Å, 1e-6 eV/Å^3, unscaled; on the random structures (Al/Ni/Cu) and a
    rattled 108-atom Cu crystal and Al/Ni/Cu alloy."""
    if system in SYSTEMS:
        atoms = random_atoms(rng, species=[13, 28, 29], **SYSTEMS[system])
    else:
        atoms = _crystals()[system]
    (info_f, fast), (info_e, exact) = _both(TRAINED, atoms, dtype="float64")
    assert info_f["path"] == "fast", info_f
    assert info_e["path"] == "exact", info_e
    de, df = _assert_close(fast, exact, len(atoms), f"metals_schnet {system}")
    print(f"metals_schnet {system}: fast vs exact: energy {de:.1e} eV/atom, forces {df:.1e} eV/Å")
    # not the same numbers: the two paths really are different code
    assert not np.array_equal(fast["forces"], exact["forces"])


@pytest.mark.parametrize("system", sorted(SYSTEMS))
def test_fast_equals_exact_random_models(model_path, system, rng):
    species = HydraGNNCalculator(model_path, compress=False).species
    atoms = random_atoms(rng, species=species, **SYSTEMS[system])
    (info_f, fast), (info_e, exact) = _both(model_path, atoms)
    assert info_e["path"] == "exact"
    de, df = _assert_close(fast, exact, len(atoms), f"{model_path.stem} {system} ({info_f['path']} vs exact)",
                           scaled=True)
    print(f"{model_path.stem} {system}: {info_f['path']} vs exact: energy {de:.1e} eV/atom, forces {df:.1e} eV/Å")


def test_random_schnet_runs_on_the_fast_path(schnet_path, rng):
    """(else the comparisons above would compare the exact path with itself)"""
    atoms = random_atoms(rng, 8, [29])
    (info_f, fast), (info_e, exact) = _both(schnet_path, atoms)
    assert info_f["path"] == "fast", info_f
    assert info_e["path"] == "exact", info_e
    assert not np.array_equal(fast["forces"], exact["forces"])


def test_batch_fast_equals_exact(model_path, rng):
    species = HydraGNNCalculator(model_path, compress=False).species
    images = [random_atoms(rng, n, species, pbc=pbc) for n, pbc in ((3, True), (7, False), (5, True))]
    fast = HydraGNNCalculator(model_path, compress=True).batch(images, properties=["energy", "forces"])
    exact = HydraGNNCalculator(model_path, compress=False).batch(images, properties=["energy", "forces"])
    for k, (a, f, e) in enumerate(zip(images, fast, exact)):
        _assert_close(f, e, len(a), f"batch structure {k}", scaled=True)


def test_path_info(schnet_path, painn_path, rng):
    fast = HydraGNNCalculator(schnet_path)  # compress=True is the default
    info = fast.path_info
    assert info["path"] == "fast", info
    assert info["description"].startswith("fast path"), info
    assert 0.0 <= info["table_rel_error"] <= info["table_tolerance"], info
    exact = HydraGNNCalculator(schnet_path, compress=False)
    assert exact.path_info["path"] == "exact" and exact.path_info["reason"], exact.path_info
    # path_info is a copy
    fast.path_info["path"] = "changed"
    assert fast.path_info["path"] == "fast"
    # float32 has the fast path too
    assert HydraGNNCalculator(schnet_path, dtype="float32").path_info["path"] == "fast"
    # PaiNN: fast where the engine has it, else exact with the reason
    p = HydraGNNCalculator(painn_path).path_info
    assert p["path"] in ("fast", "exact"), p
    if p["path"] == "exact":
        assert p["reason"], p
    assert HydraGNNCalculator(painn_path, compress=False).path_info["path"] == "exact"


def test_set_compress_switches_the_path(schnet_path, rng):
    calc = HydraGNNCalculator(schnet_path)
    atoms = random_atoms(rng, 6, [29])
    atoms.calc = calc
    f_fast = atoms.get_forces()
    handle = calc._model.handle
    calc.set(compress=False)
    assert calc.path_info["path"] == "exact"
    assert calc.results == {}  # results discarded
    assert calc._model.handle is handle  # the model is not reloaded
    f_exact = atoms.get_forces()
    assert np.abs(f_fast - f_exact).max() < F_TOL * max(1.0, np.abs(f_exact).max() / F_SCALE)
    assert np.array_equal(f_exact, _both(schnet_path, atoms)[1][1]["forces"])
    calc.set(compress=True)
    assert calc.path_info["path"] == "fast"
    assert np.array_equal(atoms.get_forces(), f_fast)
    # a reload (another dtype) keeps the chosen path; so do copies
    calc.set(compress=False)
    calc.set(dtype="float32")
    assert calc.path_info["path"] == "exact"
    for twin in (copy.deepcopy(calc), pickle.loads(pickle.dumps(calc))):
        assert twin.path_info["path"] == "exact" and twin.parameters["compress"] is False


@pytest.mark.parametrize("bad", ["yes", "no", 1, 0, None, 1.0, "True"])
def test_compress_must_be_a_bool(schnet_path, bad):
    with pytest.raises(TypeError, match=r"compress must be True .* or False .*got " + re.escape(repr(bad))):
        HydraGNNCalculator(schnet_path, compress=bad)
    calc = HydraGNNCalculator(schnet_path)
    with pytest.raises(TypeError, match="compress must be True"):
        calc.set(compress=bad)
    assert calc.path_info["path"] == "fast" and calc.parameters["compress"] is True


def test_numpy_bool_is_accepted(schnet_path):
    calc = HydraGNNCalculator(schnet_path, compress=np.bool_(False))
    assert calc.path_info["path"] == "exact" and calc.parameters["compress"] is False


def _engine_default_path(path):
    """Which path a plain hgnn_model_load selects (no hgnn_model_set_compress)."""
    lib = load_library()
    opts = lib.hgnn_options_default()
    handle = c_void_p()
    lib.hgnn_model_load(str(path).encode(), byref(opts), byref(handle))
    try:
        out = c_char_p()
        lib.hgnn_model_path(handle, byref(out))
        return json.loads(out.value.decode())["path"]
    finally:
        lib.hgnn_model_free(handle)


def test_engine_default_and_environment(schnet_path, monkeypatch):
    """The engine loads models on the fast path unless HYDRAGNN_COMPRESS=0; the calculator sets
    the path explicitly, so the variable does not change what `compress` says."""
    monkeypatch.delenv("HYDRAGNN_COMPRESS", raising=False)
    assert _engine_default_path(schnet_path) == "fast"
    monkeypatch.setenv("HYDRAGNN_COMPRESS", "0")
    assert _engine_default_path(schnet_path) == "exact"
    assert HydraGNNCalculator(schnet_path).path_info["path"] == "fast"
    assert HydraGNNCalculator(schnet_path, compress=False).path_info["path"] == "exact"
