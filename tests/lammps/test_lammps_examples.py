"""Runs each LAMMPS example of examples/lammps for a few steps, as a user would (from that
directory, relative paths), with the committed model of potentials/ when it is there and a
random-weight stand-in otherwise."""

import math
import os
import subprocess

import pytest

from lammps_util import ROOT, env, lmp_command, make_random_model

EXAMPLES = os.path.join(ROOT, "examples", "lammps")
POTENTIALS = os.path.join(ROOT, "potentials")

# example -> (model file it uses by default, the elements that model needs, ranks)
CASES = {
    "in.cu_nve": ("metals_schnet.model", "Cu", 1),
    "in.cu_npt": ("metals_schnet.model", "Cu", 2),
    "in.molecule": ("joint_schnet.model", "C,H,O", 1),
}


@pytest.mark.parametrize("example", sorted(CASES))
def test_example_runs(plugin, example, tmp_path):
    model_name, elements, nprocs = CASES[example]
    model = os.path.join(POTENTIALS, model_name)
    extra = []
    if not os.path.exists(model):
        model = make_random_model(str(tmp_path / model_name), "SchNet", elements, 4.5, 2, "float64", 5)
        extra = ["-var", "args", ""]  # a one-branch stand-in has no 'molecules' branch
    cmd = lmp_command(nprocs) + ["-in", example, "-var", "model", model, "-var", "plugin", plugin,
                                 "-var", "steps", "20", "-log", str(tmp_path / "log.lammps"), "-nocite"] + extra
    if example != "in.molecule":
        cmd += ["-var", "n", "2"]
    p = subprocess.run(cmd, cwd=EXAMPLES, env=env(), capture_output=True, text=True, timeout=600)
    out = p.stdout + p.stderr
    assert p.returncode == 0 and "ERROR" not in out, out[-4000:]
    assert "Loop time" in out
    # the thermo rows hold finite numbers
    rows = [l.split() for l in out.splitlines() if l.split() and l.split()[0] in ("0", "20")]
    assert rows and all(math.isfinite(float(v)) for r in rows for v in r), rows


def test_auto_load_through_lammps_plugin_path(plugin, models, tmp_path):
    """No `plugin load`: LAMMPS loads hydragnnplugin.so (a link made by build.sh) from
    LAMMPS_PLUGIN_PATH."""
    script = f"""units metal
lattice fcc 3.615
region box block 0 2 0 2 0 2
create_box 1 box
create_atoms 1 box
mass 1 63.546
pair_style hydragnn
pair_coeff * * {models['schnet2']} Cu
run 0
"""
    (tmp_path / "in.auto").write_text(script)
    e = {**env(), "LAMMPS_PLUGIN_PATH": os.path.dirname(plugin)}
    p = subprocess.run(lmp_command(1) + ["-in", "in.auto", "-log", "none", "-nocite"], cwd=tmp_path, env=e,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    assert "Loaded 1 plugins" in p.stdout and "Loop time" in p.stdout
