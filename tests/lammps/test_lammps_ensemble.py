"""pair_style hydragnn with an ensemble file: not supported yet (the layer-by-layer protocol runs
one model), so the run stops with a clear error naming the ensemble, on one rank and on two (no
hang), instead of running member 0 alone. See docs/ensembles.md."""

import os
import subprocess

import pytest

from lammps_util import ROOT, run_lammps

SCRIPT = """plugin load {plugin}
units metal
lattice fcc 3.61
region box block 0 3 0 3 0 3
create_box 2 box
create_atoms 1 box
mass * 63.5
pair_style hydragnn
pair_coeff * * {model} Cu Ni
run 0
"""


@pytest.fixture(scope="module")
def ensemble(models, tmp_path_factory):
    exe = os.path.join(ROOT, "target", "release", "hydragnn")
    if not os.path.isfile(exe):
        pytest.fail(f"{exe} not found; build it with: cargo build --release -p hydragnn-train")
    out = str(tmp_path_factory.mktemp("ens") / "ens.model")
    # two members of one species list, cutoff and layer count (the same file twice is allowed)
    subprocess.run([exe, "ensemble", models["schnet2"], models["schnet2"], "-o", out], check=True,
                   capture_output=True)
    return out


@pytest.mark.parametrize("nprocs", [1, 2])
def test_ensemble_file_is_refused_clearly(plugin, ensemble, tmp_path, nprocs):
    rc, out = run_lammps(SCRIPT.format(plugin=plugin, model=ensemble), str(tmp_path), nprocs=nprocs,
                         check=False, timeout=120)
    assert rc != 0, out[-3000:]
    assert "ensemble of 2 members" in out, out[-3000:]
