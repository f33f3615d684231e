"""The calculator's contract with ASE: properties and their conventions, per-atom sums, caching
(one engine call per configuration, counted by wrapping the C function), recomputation after
every kind of change, batch evaluation, and fresh result arrays; each on both of the engine's
evaluation paths (the `compress` fixture: fast and exact)."""

import copy
import pickle

import numpy as np
import pytest
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.singlepoint import SinglePointCalculator
from ase.stress import voigt_6_to_full_3x3_stress

from ase_testutil import random_atoms
from hydragnn_ase import HydraGNNCalculator


@pytest.fixture
def counted(monkeypatch):
    """Wraps the engine's compute functions (process-wide, undone after the test) and returns
    the list of calls they record."""

    def wrap(calc):
        calls = []  # every calculator's calls, as the library is shared
        lib = calc._model.lib
        for name in ("hgnn_compute", "hgnn_compute_batch"):
            f = getattr(lib, name)

            def counting(*args, _f=f, _name=name):
                calls.append(_name)
                return _f(*args)

            monkeypatch.setattr(lib, name, counting)
        return calls

    return wrap


def fresh(atoms, model_path, compress=True):
    """The same configuration on a brand-new calculator (on the same evaluation path)."""
    a = atoms.copy()
    a.calc = HydraGNNCalculator(model_path, compress=compress)
    return a


def test_energies_sum_to_energy_and_stresses_to_stress(model_path, rng, compress):
    calc = HydraGNNCalculator(model_path, compress=compress)
    atoms = random_atoms(rng, 8, calc.species)
    atoms.calc = calc
    e, energies = atoms.get_potential_energy(), atoms.get_potential_energies()
    assert energies.shape == (8,)
    assert abs(energies.sum() - e) < 1e-10 * max(1.0, abs(e))
    assert atoms.get_potential_energy(force_consistent=True) == e  # free_energy
    stress, stresses = atoms.get_stress(), atoms.get_stresses()
    assert stresses.shape == (8, 6)
    assert np.abs(stresses.sum(axis=0) - stress).max() < 1e-10 * max(1.0, np.abs(stress).max())


def test_stress_is_minus_virial_over_volume_in_voigt_order(schnet_path, rng, compress):
    """xx yy zz yz xz xy, from the strain derivative: dE/dε_ab = -V σ_ab, checked on a
    shear (xy) strain, where a wrong Voigt order would show."""
    calc = HydraGNNCalculator(schnet_path, compress=compress)
    atoms = random_atoms(rng, 6, calc.species)
    atoms.calc = calc
    sigma = voigt_6_to_full_3x3_stress(atoms.get_stress())
    h, cell0 = 1e-6, atoms.cell.array.copy()
    energies = []
    for sign in (1, -1):
        strain = np.eye(3)
        strain[0, 1] = strain[1, 0] = sign * h / 2
        a = atoms.copy()
        a.calc = calc
        a.set_cell(cell0 @ strain, scale_atoms=True)
        energies.append(a.get_potential_energy())
    de = (energies[0] - energies[1]) / (2 * h)  # dE/dε_xy with ε_xy = ε_yx = h/2
    assert abs(de / atoms.get_volume() - sigma[0, 1]) < 1e-6 * max(1.0, np.abs(sigma).max())


@pytest.mark.parametrize("pbc", [False, [True, True, False], [True, False, False]])
def test_stress_of_a_full_rank_cell_for_any_periodicity(schnet_path, rng, pbc, compress):
    """Issue 13: stress was refused unless pbc was all True; like ASE's own calculators, any
    cell of full rank has one (the strain derivative over the cell volume; equal to finite
    differences in test_ase_finite_differences)."""
    calc = HydraGNNCalculator(schnet_path, compress=compress)
    atoms = random_atoms(rng, 5, calc.species, pbc=pbc)
    atoms.calc = calc
    stress, stresses = atoms.get_stress(), atoms.get_stresses()
    assert stress.shape == (6,) and np.isfinite(stress).all() and stresses.shape == (5, 6)
    assert np.abs(stresses.sum(axis=0) - stress).max() < 1e-10 * max(1.0, np.abs(stress).max())


@pytest.mark.parametrize("cell", ["zero", "rank2"])
def test_stress_without_a_full_rank_cell_raises_but_the_rest_works(schnet_path, rng, cell, compress):
    calc = HydraGNNCalculator(schnet_path, compress=compress)
    pbc = False if cell == "zero" else [True, True, False]
    atoms = random_atoms(rng, 5, calc.species, pbc=pbc)
    c = np.zeros((3, 3)) if cell == "zero" else atoms.cell.array * [[1], [1], [0]]
    atoms.set_cell(c)
    atoms.calc = calc
    f = atoms.get_forces()
    assert f.shape == (5, 3) and np.isfinite(f).all()
    for get in (atoms.get_stress, atoms.get_stresses):
        with pytest.raises(PropertyNotImplementedError, match="cell of full rank"):
            get()
    assert np.array_equal(atoms.get_forces(), f)


def test_molecule_with_a_zero_cell(schnet_path, rng, compress):
    calc = HydraGNNCalculator(schnet_path, compress=compress)
    atoms = random_atoms(rng, 5, calc.species, pbc=False)
    e = fresh(atoms, schnet_path, compress).get_potential_energy()
    atoms.set_cell(np.zeros((3, 3)))
    atoms.calc = calc
    assert atoms.get_potential_energy() == e


def test_unknown_property_raises(schnet_path, rng, compress):
    calc = HydraGNNCalculator(schnet_path, compress=compress)
    atoms = random_atoms(rng, 3, calc.species)
    atoms.calc = calc
    for name in ("dipole", "magmom", "charges"):
        with pytest.raises(PropertyNotImplementedError):
            calc.get_property(name, atoms)


def test_no_recomputation_when_unchanged(schnet_path, rng, counted, compress):
    calc = HydraGNNCalculator(schnet_path, compress=compress)
    calls = counted(calc)
    atoms = random_atoms(rng, 6, calc.species)
    atoms.calc = calc
    e = atoms.get_potential_energy()
    f = atoms.get_forces()
    atoms.get_stress()
    atoms.get_stresses()
    atoms.get_potential_energies()
    assert calls == ["hgnn_compute"]
    # An equal copy, charges and magnetic moments (which the model does not read) change nothing.
    twin = atoms.copy()
    twin.calc = calc
    twin.get_forces()
    atoms.set_initial_magnetic_moments(np.ones(len(atoms)))
    atoms.set_initial_charges(np.ones(len(atoms)))
    assert atoms.get_potential_energy() == e
    assert calls == ["hgnn_compute"]
    # Returned arrays are copies: mutating one does not touch the cache.
    f[:] = 0.0
    assert np.abs(atoms.get_forces()).max() > 0
    assert calls == ["hgnn_compute"]


def _change_positions(a):
    p = a.get_positions()
    p[1, 2] += 1e-7
    a.set_positions(p)


def _change_numbers(a):
    a.numbers[0] = 28 if a.numbers[0] == 29 else 29


def _change_cell(a):
    a.set_cell(a.cell.array * 1.001, scale_atoms=False)


def _change_pbc(a):
    a.pbc = [True, False, True]


CHANGES = {"positions": _change_positions, "numbers": _change_numbers, "cell": _change_cell, "pbc": _change_pbc}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_recomputation_after_each_kind_of_change(painn_path, rng, counted, change, compress):
    calc = HydraGNNCalculator(painn_path, compress=compress)
    calls = counted(calc)
    atoms = random_atoms(rng, 6, calc.species)
    atoms.calc = calc
    before = atoms.get_forces()
    e_before = atoms.get_potential_energy()
    CHANGES[change](atoms)
    after = atoms.get_forces()
    e_after = atoms.get_potential_energy()
    assert calls == ["hgnn_compute"] * 2
    assert e_after != e_before
    assert not np.array_equal(after, before)
    ref = fresh(atoms, painn_path, compress)  # (the wrapper counts every calculator's calls)
    assert e_after == ref.get_potential_energy()
    assert np.array_equal(after, ref.get_forces())


def test_results_are_fresh_arrays(schnet_path, rng, compress):
    """A later calculation must not overwrite arrays handed out (or kept) earlier."""
    calc = HydraGNNCalculator(schnet_path, compress=compress)
    atoms = random_atoms(rng, 4, calc.species)
    atoms.calc = calc
    atoms.get_forces()
    first = calc.results
    kept = {k: np.copy(v) for k, v in first.items()}
    _change_positions(atoms)
    atoms.get_forces()
    assert calc.results is not first
    for k, v in first.items():
        assert np.array_equal(v, kept[k]), k


def test_batch_equals_one_by_one(model_path, rng, counted, compress):
    calc = HydraGNNCalculator(model_path, compress=compress)
    images = [random_atoms(rng, n, calc.species) for n in (3, 7, 5)]
    calls = counted(calc)
    batch = calc.batch(images)
    assert calls == ["hgnn_compute_batch"]
    assert len(batch) == 3
    for atoms, r in zip(images, batch):
        assert atoms.calc is None
        ref = fresh(atoms, model_path, compress)
        assert set(r) == {"energy", "free_energy", "energies", "forces", "stress", "stresses"}
        assert abs(r["energy"] - ref.get_potential_energy()) <= 1e-12 * max(1.0, abs(r["energy"]))
        for key, value in [
            ("forces", ref.get_forces()),
            ("energies", ref.get_potential_energies()),
            ("stress", ref.get_stress()),
            ("stresses", ref.get_stresses()),
        ]:
            assert np.allclose(r[key], value, rtol=1e-12, atol=1e-12), key
    # Results attach to the structures with a SinglePointCalculator.
    images[0].calc = SinglePointCalculator(images[0], **batch[0])
    assert images[0].get_potential_energy() == batch[0]["energy"]


def test_batch_of_mixed_periodicity(schnet_path, rng, compress):
    calc = HydraGNNCalculator(schnet_path, compress=compress)
    images = [random_atoms(rng, 4, calc.species), random_atoms(rng, 4, calc.species, pbc=False)]
    images[1].set_cell(np.zeros((3, 3)))  # a molecule without a cell: no stress
    out = calc.batch(images)
    assert "stress" not in out[0] and "stress" not in out[1]
    for atoms, r in zip(images, out):
        # (equal to round-off: a batch sums in another order)
        assert np.allclose(r["forces"], fresh(atoms, schnet_path, compress).get_forces(), rtol=1e-12, atol=1e-12)
    with pytest.raises(PropertyNotImplementedError, match="structure 1: stress"):
        calc.batch(images, properties=["energy", "stress"])
    with pytest.raises(PropertyNotImplementedError):
        calc.batch(images, properties=["dipole"])
    assert calc.batch([]) == []


def test_set_reloads_and_copies_are_independent(model_dir, rng, compress):
    calc = HydraGNNCalculator(model_dir / "schnet.model", compress=compress)
    atoms = random_atoms(rng, 4, [29])
    atoms.calc = calc
    e_schnet = atoms.get_potential_energy()
    calc.set(model=str(model_dir / "painn.model"))
    assert calc.results == {} and set(calc.species) == {28, 29}
    assert atoms.get_potential_energy() == fresh(atoms, model_dir / "painn.model", compress).get_potential_energy()
    # deepcopy and pickle reload the model rather than share (and double-free) the handle.
    for twin in (copy.deepcopy(calc), pickle.loads(pickle.dumps(calc))):
        twin.set(model=str(model_dir / "schnet.model"))
        a = atoms.copy()
        a.calc = twin
        assert a.get_potential_energy() == e_schnet
    assert set(calc.species) == {28, 29}


def test_float32_is_close_to_float64(schnet_path, rng, compress):
    atoms = random_atoms(rng, 6, [29])
    ref = fresh(atoms, schnet_path, compress)
    atoms.calc = HydraGNNCalculator(schnet_path, dtype="float32", compress=compress)
    assert atoms.calc.info["species"] == ["Cu"]
    scale = np.abs(ref.get_forces()).max()
    assert np.abs(atoms.get_forces() - ref.get_forces()).max() < 1e-3 * scale
    assert abs(atoms.get_potential_energy() - ref.get_potential_energy()) < 1e-4 * abs(ref.get_potential_energy())


def test_direct_calculate_computes_what_applies(schnet_path, rng, compress):
    """calc.calculate(atoms) without properties (as some scripts call it) works for a molecule too."""
    calc = HydraGNNCalculator(schnet_path, compress=compress)
    molecule = random_atoms(rng, 4, calc.species, pbc=False)
    molecule.set_cell(np.zeros((3, 3)))  # no cell: no stress (with a box, it has one)
    calc.calculate(molecule)
    assert set(calc.results) == {"energy", "free_energy", "energies", "forces"}
    crystal = random_atoms(rng, 4, calc.species)
    calc.calculate(crystal)
    assert set(calc.results) == set(calc.implemented_properties)
    assert calc.batch([crystal], properties="energy")[0]["energy"] == pytest.approx(calc.results["energy"], rel=1e-12)
