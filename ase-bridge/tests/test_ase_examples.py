"""The ASE examples (examples/ase/md.py, relax.py) run end to end on a random model, a few steps
each, as a user would start them."""

import subprocess
import sys

import pytest

from ase_testutil import REPO

EXAMPLES = REPO / "examples" / "ase"


def run(script, *args):
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *map(str, args)], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_md_langevin_then_nve(schnet_path):
    out = run("md.py", schnet_path, "--size", 2, "--steps-langevin", 5, "--steps-nve", 5, "--interval", 5,
              "--timestep", 0.5, "--threads", 1)
    assert "Langevin step      5" in out and "NVE      step      5" in out
    drift = float(out.split("max |Etot - Etot(0)| = ")[1].split()[0])
    assert drift < 0.1, out


def test_relax_with_frechet_cell_filter(painn_path):
    out = run("relax.py", painn_path, "--element", "Ni", "--steps", 3, "--threads", 1)
    assert "Ni atoms" in out and "BFGS:    3" in out and "converged: False after 3 steps" in out


@pytest.mark.parametrize("script", ["md.py", "relax.py"])
def test_missing_model_is_a_clear_error(script, tmp_path):
    out = subprocess.run([sys.executable, str(EXAMPLES / script), str(tmp_path / "none.model")], capture_output=True, text=True)
    assert out.returncode == 2 and "none.model not found" in out.stderr
