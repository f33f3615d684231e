"""Helpers of the hydragnn_ase tests (a module name of its own, so that pytest can collect these
tests together with the other suites): random-weight model files written by the engine's
`random_model` example, and random structures."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

REPO = Path(__file__).resolve().parents[2]
BUILD_HINT = (
    "build it with: cd {repo} && . scripts/env.sh && "
    "cargo build --release -p hydragnn-capi -p mlip --example random_model"
).format(repo=REPO)

# name -> random_model arguments (mpnn, species, radius, layers, dtype, seed)
MODELS = {
    "schnet": ("SchNet", "Cu", "4.5", "2", "float64", "11"),
    "painn": ("PAINN", "Cu,Ni", "4.0", "2", "float64", "12"),
}


def random_model_binary():
    exe = Path(os.environ.get("HYDRAGNN_RANDOM_MODEL", REPO / "target" / "release" / "examples" / "random_model"))
    if not exe.is_file():
        pytest.fail(f"{exe} not found; {BUILD_HINT}")
    return exe


def write_random_model(path, mpnn="SchNet", species="Cu", radius="4.5", layers="2", dtype="float64", seed="7"):
    """Writes a random-weight model file with the engine's own writer."""
    subprocess.run(
        [str(random_model_binary()), str(path), mpnn, species, radius, layers, dtype, seed],
        check=True,
        capture_output=True,
    )
    return Path(path)


TRICLINIC = np.array([[5.3, 0.3, -0.2], [0.9, 4.9, 0.4], [-0.6, 0.7, 5.6]])


def random_atoms(rng, n, species, cell=TRICLINIC, pbc=True, min_dist=2.0, spread=None):
    """n atoms of the given species at random positions, placed one by one so that no pair (with
    periodic images) is closer than min_dist. Fractional coordinates span the cell, widened by
    `spread` on each side so that atoms also lie outside it; without periodicity the cell is
    only the box the molecule fills."""
    cell = np.asarray(cell, dtype=float)
    atoms = Atoms(cell=cell, pbc=pbc)
    tries = 0
    while len(atoms) < n:
        tries += 1
        if tries > 100000:
            raise RuntimeError(f"could not place {n} atoms {min_dist} Å apart")
        frac = rng.random(3)
        if spread:
            frac = frac * (1 + 2 * spread) - spread
        trial = atoms.copy()
        trial.append(int(rng.choice(species)))
        trial.positions[-1] = frac @ cell
        if len(trial) > 1 and trial.get_distances(len(trial) - 1, range(len(trial) - 1), mic=bool(np.any(pbc))).min() <= min_dist:
            continue
        atoms = trial
    return atoms
