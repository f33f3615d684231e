"""Every head of a model through the calculator: the trained two-branch SchNet's `gap` (branch
`molecules`) in `results` and through `get_property`, equal to the C ABI's batch evaluation of
that head (`hgnn_compute_head` on several structures at once); node and graph heads of every
pooling of a random model; and the warning that names the branch a multi-branch model uses when
none is named."""

import ctypes
import warnings

import numpy as np
import pytest
from ase.build import molecule
from ase.calculators.calculator import PropertyNotImplementedError

from ase_testutil import REPO, random_atoms, write_random_model
from hydragnn_ase import HydraGNNCalculator, _capi

JOINT = REPO / "potentials" / "joint_schnet.model"


def _batch_reference(path, branch, images, name, compress):
    """Head `name` of `images`, from one `hgnn_compute_head` batch on a model loaded here (on the
    same evaluation path)."""
    lib = _capi.load_library()
    opts = lib.hgnn_options_default()
    opts.branch = branch.encode()
    h = ctypes.c_void_p()
    lib.hgnn_model_load(str(path).encode(), ctypes.byref(opts), ctypes.byref(h))
    try:
        lib.hgnn_model_set_compress(h, int(compress), 0.0)
        keep, structs = [], []
        for a in images:
            pos = np.ascontiguousarray(a.positions, dtype=np.float64)
            z = np.ascontiguousarray(a.numbers, dtype=np.int32)
            keep += [pos, z]
            s = _capi.hgnn_structure_t()
            s.n_atoms = len(a)
            s.positions = pos.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
            s.atomic_numbers = z.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
            structs.append(s)
        arr = (_capi.hgnn_structure_t * len(structs))(*structs)
        out = np.zeros(len(images))
        lib.hgnn_compute_head(h, len(images), arr, name.encode(),
                              out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)), out.size)
        return out
    finally:
        lib.hgnn_model_free(h)


def test_gap_of_the_trained_model(compress):
    calc = HydraGNNCalculator(JOINT, head="molecules", compress=compress)
    assert "gap" in calc.implemented_properties
    assert calc.heads == {"energy": {"kind": "graph", "dim": 1}, "gap": {"kind": "graph", "dim": 1}}
    assert calc.branch == "molecules" and calc.branches == ("metals", "molecules")
    images = [molecule("H2O"), molecule("NH3"), molecule("CH4")]
    ref = _batch_reference(JOINT, "molecules", images, "gap", compress)
    for a, want in zip(images, ref):
        a.calc = calc
        gap = calc.get_property("gap", a)
        assert isinstance(gap, float)
        assert gap == pytest.approx(want, rel=1e-12, abs=1e-12)
        assert calc.results["gap"] == gap
    # the batch carries the heads too
    for r, want in zip(calc.batch(images), ref):
        assert r["gap"] == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_gap_is_not_a_property_of_the_other_branch():
    calc = HydraGNNCalculator(JOINT, head="metals")
    assert "gap" not in calc.implemented_properties
    a = molecule("H2O")
    with pytest.raises(PropertyNotImplementedError):
        calc.get_property("gap", a)
    calc.set(head="molecules")
    assert calc.get_property("gap", a) > 0


def test_unnamed_branch_of_a_multi_branch_model_warns():
    with pytest.warns(UserWarning, match=r"using branch 'metals'.*head='molecules'"):
        calc = HydraGNNCalculator(JOINT)
    assert calc.branch == "metals"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        HydraGNNCalculator(JOINT, head="metals")


def test_single_branch_model_does_not_warn(schnet_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        calc = HydraGNNCalculator(schnet_path)
    assert calc.implemented_properties == HydraGNNCalculator.implemented_properties


def test_node_and_graph_heads_of_every_kind(tmp_path, rng, compress):
    path = write_random_model(tmp_path / "heads.model", "SchNet", "Cu,Ni", "4.0", "2", "float64", "5")
    # the eighth argument adds the extra heads
    import subprocess

    from ase_testutil import random_model_binary

    subprocess.run([str(random_model_binary()), str(path), "SchNet", "Cu,Ni", "4.0", "2", "float64", "5", "heads"],
                   check=True)
    calc = HydraGNNCalculator(path, compress=compress)
    kinds = {k: (v["kind"], v["dim"]) for k, v in calc.heads.items()}
    assert kinds == {"energy": ("graph", 1), "gap": ("graph", 1), "total": ("graph", 2), "top": ("graph", 1),
                     "pooled": ("graph", 1), "charges": ("node", 1), "spins": ("node", 2)}
    a = random_atoms(rng, 6, [29, 28])
    a.calc = calc
    a.get_potential_energy()
    r = calc.results
    assert r["charges"].shape == (6,) and r["spins"].shape == (6, 2)
    assert r["total"].shape == (2,) and isinstance(r["gap"], float)
    # sum and mean pooling of per-atom outputs are consistent with each other: a structure and
    # its doubled copy (a supercell) have the same mean and twice the sum
    b = a.repeat((2, 1, 1))
    rb = calc.batch([a, b])
    assert rb[0]["gap"] == pytest.approx(r["gap"], rel=1e-10)
    assert rb[1]["gap"] == pytest.approx(r["gap"], rel=1e-8)
    assert rb[1]["pooled"] == pytest.approx(r["pooled"], rel=1e-8)
    assert rb[1]["top"] == pytest.approx(r["top"], rel=1e-8)
    np.testing.assert_allclose(rb[1]["total"], 2 * r["total"], rtol=1e-8)
    np.testing.assert_allclose(rb[1]["charges"], np.tile(r["charges"], 2), rtol=1e-8, atol=1e-12)
