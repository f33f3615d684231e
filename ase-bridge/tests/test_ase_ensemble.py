"""HydraGNNCalculator on an ensemble file (`hydragnn ensemble`): energy, forces and stress are
the committee mean, and `energy_std`, `forces_std`, `stress_std` and the committee arrays equal
what K separate calculators give (1e-12), on both evaluation paths; a plain model file has none
of the ensemble properties."""

import subprocess

import numpy as np
import pytest
from ase.calculators.calculator import PropertyNotImplementedError

from ase_testutil import REPO, random_atoms, write_random_model
from hydragnn_ase import HydraGNNCalculator

K = 3


@pytest.fixture(scope="module")
def members_and_ensemble(tmp_path_factory):
    d = tmp_path_factory.mktemp("ensemble")
    members = [write_random_model(d / f"m{k}.model", "SchNet", "Cu,Ni", "4.0", "2", "float64", str(30 + k)) for k in range(K)]
    exe = REPO / "target" / "release" / "hydragnn"
    if not exe.is_file():
        pytest.fail(f"{exe} not found; build it with: cargo build --release -p hydragnn-train")
    ens = d / "ens.model"
    subprocess.run([str(exe), "ensemble", *map(str, members), "-o", str(ens)], check=True, capture_output=True)
    return members, ens


def test_ensemble_results_equal_separate_calculators(members_and_ensemble, compress, rng):
    members, ens = members_and_ensemble
    atoms = random_atoms(rng, 8, [29, 28])
    calc = HydraGNNCalculator(ens, compress=compress)
    assert "forces_std" in calc.implemented_properties
    atoms.calc = calc
    e = atoms.get_potential_energy()
    f = atoms.get_forces()
    s = atoms.get_stress()
    r = calc.results
    sep = []
    for p in members:
        a = atoms.copy()
        a.calc = HydraGNNCalculator(p, compress=compress)
        sep.append((a.get_potential_energy(), a.get_forces(), a.get_stress()))
    es = np.array([x[0] for x in sep])
    fs = np.array([x[1] for x in sep])
    ss = np.array([x[2] for x in sep])
    tol = 1e-12
    assert abs(e - es.mean()) <= tol * max(1, abs(e))
    np.testing.assert_allclose(f, fs.mean(axis=0), rtol=0, atol=tol)
    np.testing.assert_allclose(s, ss.mean(axis=0), rtol=0, atol=tol)
    assert r["energy_std"] > 1e-4  # the members disagree
    assert abs(r["energy_std"] - es.std()) <= tol * max(1, abs(e))
    dev = np.sqrt(((fs - fs.mean(axis=0)) ** 2).sum(axis=2).mean(axis=0))
    np.testing.assert_allclose(r["forces_std"], dev, rtol=0, atol=tol)
    assert r["forces_std"].shape == (len(atoms),)
    assert abs(r["max_devi_f"] - dev.max()) <= tol and abs(r["avg_devi_f"] - dev.mean()) <= tol
    np.testing.assert_allclose(r["stress_std"], ss.std(axis=0), rtol=0, atol=tol)
    np.testing.assert_allclose(r["energy_comm"], es, rtol=0, atol=tol)
    np.testing.assert_allclose(r["forces_comm"], fs, rtol=0, atol=tol)
    np.testing.assert_allclose(r["stress_comm"], ss, rtol=0, atol=tol)
    assert calc.get_property("forces_std", atoms) is not None


def test_plain_model_has_no_ensemble_properties(members_and_ensemble, rng):
    members, _ = members_and_ensemble
    atoms = random_atoms(rng, 4, [29])
    atoms.calc = HydraGNNCalculator(members[0])
    assert "energy_std" not in atoms.calc.implemented_properties
    with pytest.raises(PropertyNotImplementedError):
        atoms.calc.get_property("energy_std", atoms)


def test_active_learning_example_collects_frames_above_the_threshold(members_and_ensemble, tmp_path):
    """examples/ase/active_learning.py: threshold 0 keeps every checked frame (with its deviation),
    a threshold above every deviation keeps none."""
    import sys

    from ase.io import read

    _, ens = members_and_ensemble
    script = REPO / "examples" / "ase" / "active_learning.py"
    out = tmp_path / "cand.xyz"
    args = [sys.executable, str(script), str(ens), "--size", "1", "--steps", "6", "--interval", "2",
            "--timestep", "0.5", "--out", str(out)]
    p = subprocess.run(args + ["--threshold", "0"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "collected 3 frames" in p.stdout, p.stdout
    frames = read(out, ":")
    assert len(frames) == 3 and [f.info["step"] for f in frames] == [2, 4, 6]
    for f in frames:
        assert f.info["max_devi_f"] > 0
        assert abs(f.arrays["forces_std"].max() - f.info["max_devi_f"]) <= 1e-7 * f.info["max_devi_f"]  # extxyz keeps 8 decimals
    out.unlink()
    p = subprocess.run(args + ["--threshold", "1e9"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "collected 0 frames" in p.stdout and not out.exists(), p.stdout + p.stderr
    p = subprocess.run([sys.executable, str(script), str(members_and_ensemble[0][0])], capture_output=True, text=True)
    assert p.returncode == 2 and "not an ensemble" in p.stderr
