"""Clear Python exceptions, with the engine's message, for a missing or corrupt model file, an
element the model does not know, a NaN position, bad options, and a missing library."""

import os
import subprocess
import sys

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from ase_testutil import random_atoms
import hydragnn_ase
from hydragnn_ase import (
    HydraGNNCalculator,
    HydraGNNError,
    InvalidArgumentError,
    ModelFileError,
    ModelIOError,
    ModelNotFoundError,
    UnknownSpeciesError,
)


def test_missing_model_file(tmp_path):
    path = tmp_path / "nowhere.model"
    with pytest.raises(FileNotFoundError, match="model file not found") as e:
        HydraGNNCalculator(path)
    assert isinstance(e.value, ModelNotFoundError) and isinstance(e.value, HydraGNNError)
    assert e.value.filename == str(path)


def test_model_path_that_is_a_directory(tmp_path):
    with pytest.raises(ModelIOError, match=str(tmp_path)) as e:
        HydraGNNCalculator(tmp_path)
    assert isinstance(e.value, OSError)


@pytest.mark.parametrize("damage", ["truncated", "flipped", "empty", "text"])
def test_corrupt_model_file(schnet_path, tmp_path, damage):
    data = schnet_path.read_bytes()
    bad = tmp_path / f"{damage}.model"
    if damage == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "flipped":
        b = bytearray(data)
        b[len(b) // 2] ^= 0xFF
        bad.write_bytes(bytes(b))
    elif damage == "empty":
        bad.write_bytes(b"")
    else:
        bad.write_text("pair_style eam\n")
    with pytest.raises(ModelFileError, match="invalid model file") as e:
        HydraGNNCalculator(bad)
    assert isinstance(e.value, ValueError)
    assert str(bad) in str(e.value)
    assert e.value.code == hydragnn_ase._capi.HGNN_ERROR_MODEL_FILE


def test_element_not_in_model(schnet_path):
    atoms = bulk("Cu", "fcc", a=3.6).repeat(2)
    atoms.numbers[3] = 26
    atoms.calc = HydraGNNCalculator(schnet_path)
    with pytest.raises(UnknownSpeciesError, match=r"atom 3 .*Fe.*not in the model") as e:
        atoms.get_forces()
    assert isinstance(e.value, ValueError)
    # The calculator stays usable.
    atoms.numbers[3] = 29
    assert np.isfinite(atoms.get_forces()).all()


def _batch_with_oxygen(schnet_path):
    calc = HydraGNNCalculator(schnet_path)
    good = bulk("Cu", "fcc", a=3.6)
    bad = Atoms("CuO", positions=[[0, 0, 0], [0, 0, 2.0]])
    calc.batch([good, bad])


def test_element_not_in_model_in_a_batch_names_the_structure(schnet_path):
    with pytest.raises(ValueError, match=r"structure 1: .*atomic number 8 \(O\).*not in the model"):
        _batch_with_oxygen(schnet_path)


def test_element_not_in_model_in_a_batch_is_unknown_species(schnet_path):
    with pytest.raises(UnknownSpeciesError):
        _batch_with_oxygen(schnet_path)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_position(schnet_path, rng, value):
    atoms = random_atoms(rng, 4, [29])
    atoms.calc = HydraGNNCalculator(schnet_path)
    atoms.positions[2, 1] = value
    with pytest.raises(InvalidArgumentError, match="atom 2 is not finite") as e:
        atoms.get_potential_energy()
    assert isinstance(e.value, ValueError)


def test_bad_options(schnet_path):
    with pytest.raises(ValueError, match="dtype"):
        HydraGNNCalculator(schnet_path, dtype="float16")
    with pytest.raises(ValueError, match="device"):
        HydraGNNCalculator(schnet_path, device="tpu")
    with pytest.raises(ValueError, match="threads"):
        HydraGNNCalculator(schnet_path, threads=0)
    with pytest.raises(HydraGNNError, match="no-such-head"):
        HydraGNNCalculator(schnet_path, head="no-such-head")


def test_zero_volume_cell(schnet_path):
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [1.5, 1.5, 0]], cell=[[3, 0, 0], [0, 3, 0], [3, 3, 0]], pbc=True)
    atoms.calc = HydraGNNCalculator(schnet_path)
    with pytest.raises(InvalidArgumentError, match="zero volume"):
        atoms.get_potential_energy()


def test_library_not_found(tmp_path):
    """HYDRAGNN_LIB pointing nowhere is an ImportError that names the path."""
    code = (
        "import hydragnn_ase\n"
        "try:\n"
        "    hydragnn_ase.load_library()\n"
        "except ImportError as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    env = dict(os.environ, HYDRAGNN_LIB=str(tmp_path / "libnothing.so"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.startswith("LibraryNotFoundError") and "libnothing.so" in out.stdout
