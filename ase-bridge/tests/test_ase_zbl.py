"""A model with the ZBL core repulsion through ASE (a Cu dimer's energy rises steeply as r -> 0.5 Å,
forces are the energy's derivative), and the once-per-calculator warning when a pair comes closer
than the shortest distance of the model's training data."""

import subprocess
import warnings
from ctypes import byref, c_double

import numpy as np
import pytest
from ase import Atoms

from ase_testutil import random_model_binary
from hydragnn_ase import HydraGNNCalculator


@pytest.fixture(scope="module")
def zbl_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("zbl") / "zbl.model"
    subprocess.run([str(random_model_binary()), str(path), "SchNet", "Cu", "4.5", "2", "float64", "5", "-",
                    "zbl=1.0:2.0", "dmin=2.2"], check=True, capture_output=True)
    return path


def _dimer(r):
    return Atoms("Cu2", positions=[[5.0, 5.0, 5.0], [5.0 + r, 5.0, 5.0]], cell=[12.0] * 3, pbc=False)


def test_ase_zbl_dimer_rises_steeply_and_forces_are_its_derivative(zbl_model, compress):
    calc = HydraGNNCalculator(zbl_model, compress=compress)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        energies = []
        for r in [2.5, 1.5, 1.0, 0.7, 0.5]:
            a = _dimer(r)
            a.calc = calc
            energies.append(a.get_potential_energy())
        assert all(b > a for a, b in zip(energies, energies[1:])), energies
        assert energies[-1] - energies[0] > 1000.0, energies
        a = _dimer(0.8)
        a.calc = calc
        f = a.get_forces()[1, 0]
        h = 1e-5
        e = []
        for d in (h, -h):
            b = _dimer(0.8 + d)
            b.calc = calc
            e.append(b.get_potential_energy())
        fd = -(e[0] - e[1]) / (2 * h)
        assert f == pytest.approx(fd, rel=1e-6), (f, fd)


def test_ase_warns_once_when_a_pair_is_closer_than_the_training_data(zbl_model):
    calc = HydraGNNCalculator(zbl_model)
    assert calc._model.min_training_distance == pytest.approx(2.2)
    inner, outer = c_double(), c_double()
    calc._model.lib.hgnn_model_zbl(calc._model.handle, byref(inner), byref(outer))
    assert (inner.value, outer.value) == (1.0, 2.0)
    far = _dimer(2.5)
    far.calc = calc
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        far.get_potential_energy()  # inside the training domain: no warning
    close = _dimer(1.5)
    close.calc = calc
    with pytest.warns(RuntimeWarning, match=r"atoms 0 and 1 are 1\.5000 Å apart.*training data \(2\.2000 Å\)"):
        close.get_potential_energy()
    closer = _dimer(1.2)
    closer.calc = calc
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        closer.get_potential_energy()  # once per calculator
