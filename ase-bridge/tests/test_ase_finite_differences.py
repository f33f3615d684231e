"""Forces and stress equal ase.calculators.fd's central differences of the energy (float64), for
SchNet and PaiNN random models, on both evaluation paths (fast and exact), on fresh random
structures: a triclinic periodic cell, a molecule in vacuum, a slab (mixed periodicity), and a
cell smaller than the cutoff with atoms outside it."""

import numpy as np
import pytest
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress

from ase_testutil import random_atoms
from hydragnn_ase import HydraGNNCalculator

SYSTEMS = {
    "triclinic": dict(n=6, pbc=True),
    "molecule": dict(n=6, pbc=False),
    "slab": dict(n=6, pbc=[True, False, True]),
    "small_cell": dict(n=2, pbc=True, cell=[[2.9, 0.0, 0.0], [0.6, 2.8, 0.0], [0.3, -0.4, 3.1]], spread=0.3),
}


def scaled_err(analytic, numeric):
    return np.abs(analytic - numeric).max() / max(1.0, np.abs(analytic).max())


@pytest.mark.parametrize("system", sorted(SYSTEMS))
def test_forces_equal_finite_differences(model_path, system, rng, compress):
    calc = HydraGNNCalculator(model_path, compress=compress)
    atoms = random_atoms(rng, species=calc.species, **SYSTEMS[system])
    atoms.calc = calc
    forces = atoms.get_forces()
    # eps 1e-6: the central difference's truncation error (eps^2) stays far below the bound for the
    # random PaiNN model's stiff molecules (1.5e-7 at eps 2e-6, on both paths alike)
    numeric = calculate_numerical_forces(atoms, eps=1e-6)
    assert scaled_err(forces, numeric) < 1e-7, (forces, numeric)
    # Total force vanishes (translation invariance) for any periodicity.
    assert np.abs(forces.sum(axis=0)).max() < 1e-9 * max(1.0, np.abs(forces).max())


@pytest.mark.parametrize("system", ["triclinic", "small_cell"])
def test_stress_equals_finite_differences(model_path, system, rng, compress):
    calc = HydraGNNCalculator(model_path, compress=compress)
    atoms = random_atoms(rng, species=calc.species, **SYSTEMS[system])
    atoms.calc = calc
    stress = atoms.get_stress()
    assert stress.shape == (6,)
    numeric = calculate_numerical_stress(atoms, eps=1e-6)
    assert scaled_err(stress, numeric) < 1e-7, (stress, numeric)
    # The full 3x3 form is symmetric (rotation invariance) and matches the Voigt one.
    full = atoms.get_stress(voigt=False)
    assert np.abs(full - full.T).max() < 1e-9 * max(1.0, np.abs(full).max())
