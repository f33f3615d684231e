"""Clear LAMMPS errors (and no hang under mpirun) for the mistakes users make: a missing or corrupt
model file, an element the model does not know, units other than metal, newton_pair off, unknown
keywords (`compress maybe` included), a missing engine library, and an engine failure inside
compute() on one rank only."""

import os
import re

import pytest

from lammps_util import run_lammps

HEAD = """plugin load {plugin}
units {units}
{newton}
lattice fcc 3.61
region box block 0 3 0 3 0 3
create_box 2 box
create_atoms 1 box
mass * 63.5
"""


def _script(plugin, pair_style="pair_style hydragnn", coeff="pair_coeff * * {model} Cu Ni",
            units="metal", newton="", tail="run 0", model=""):
    return (HEAD.format(plugin=plugin, units=units, newton=newton) + pair_style + "\n" +
            coeff.format(model=model) + "\n" + tail + "\n")


def _fails(script, tmp_path, nprocs=1, env=None, timeout=120):
    rc, out = run_lammps(script, str(tmp_path), nprocs=nprocs, check=False, timeout=timeout, env_extra=env)
    assert rc != 0, out[-3000:]
    return out


@pytest.mark.parametrize("nprocs", [1, 2])
def test_missing_model_file(plugin, tmp_path, nprocs):
    out = _fails(_script(plugin, model=str(tmp_path / "nope.model")), tmp_path, nprocs)
    assert "cannot open model file" in out and "nope.model" in out


def test_corrupt_model_file(plugin, models, tmp_path):
    bad = tmp_path / "truncated.model"
    data = open(models["schnet2"], "rb").read()
    bad.write_bytes(data[: len(data) // 2])
    out = _fails(_script(plugin, model=str(bad)), tmp_path)
    assert "cannot load model file" in out and "truncated.model" in out


def test_element_not_in_model(plugin, models, tmp_path):
    out = _fails(_script(plugin, coeff="pair_coeff * * {model} Cu Ag", model=models["schnet2"]), tmp_path)
    assert "element 'Ag' (atom type 2) is not in model file" in out
    assert "its elements: Cu Ni" in out


def test_wrong_number_of_elements(plugin, models, tmp_path):
    out = _fails(_script(plugin, coeff="pair_coeff * * {model} Cu", model=models["schnet2"]), tmp_path)
    assert "element name(s), one per atom type" in out


def test_wrong_units(plugin, models, tmp_path):
    out = _fails(_script(plugin, units="real", model=models["schnet2"]), tmp_path)
    assert "requires 'units metal'" in out and "units real" in out


@pytest.mark.parametrize("nprocs", [1, 2])
def test_newton_pair_off(plugin, models, tmp_path, nprocs):
    out = _fails(_script(plugin, newton="newton off", model=models["schnet2"]), tmp_path, nprocs)
    assert "requires newton_pair on" in out


@pytest.mark.parametrize("style,msg", [
    ("pair_style hydragnn colour red", "unknown keyword 'colour'"),
    ("pair_style hydragnn precision half", "precision must be float32 or float64"),
    ("pair_style hydragnn device tpu", "device must be cpu or cuda"),
    ("pair_style hydragnn threads 0", "threads must be >= 1"),
    ("pair_style hydragnn branch", "keyword 'branch' needs a value"),
    ("pair_style hydragnn branch nosuchhead", "nosuchhead"),
])
def test_bad_keywords(plugin, models, tmp_path, style, msg):
    out = _fails(_script(plugin, pair_style=style, model=models["schnet2"]), tmp_path)
    assert msg in out


@pytest.mark.parametrize("nprocs", [1, 2])
def test_compress_needs_yes_or_no(plugin, models, tmp_path, nprocs):
    """`compress maybe`: an ERROR whose own line names the keyword and the bad value (not only
    LAMMPS's echo of the input line), on every rank count without a hang."""
    out = _fails(_script(plugin, pair_style="pair_style hydragnn compress maybe", model=models["schnet2"]),
                 tmp_path, nprocs, timeout=60)
    errors = [l for l in out.splitlines() if l.startswith("ERROR")]
    assert errors, out[-3000:]
    assert any(re.search(r"compress", l) and "'maybe'" in l for l in errors), errors
    out = _fails(_script(plugin, pair_style="pair_style hydragnn compress", model=models["schnet2"]), tmp_path)
    assert "keyword 'compress' needs a value" in out


def test_missing_engine_library(plugin, models, tmp_path):
    out = _fails(_script(plugin, model=models["schnet2"]), tmp_path, env={"HYDRAGNN_LIB": "/nonexistent/libhydragnn.so"})
    assert "cannot load the engine library '/nonexistent/libhydragnn.so'" in out


def test_engine_failure_on_one_rank_does_not_hang(plugin, models, tmp_path):
    """Two atoms at the same place on the lower half of the box: the engine refuses the graph on
    the rank that owns them (error->one), the other rank is blocked in the feature exchange, and
    the run must still end promptly with the engine's message."""
    tail = "create_atoms 2 single 0.1 0.1 0.1 units box\ncreate_atoms 2 single 0.1 0.1 0.1 units box\nrun 0"
    script = _script(plugin, model=models["schnet2"], tail=tail).replace("create_box 2 box", "processors 2 1 1\ncreate_box 2 box")
    out = _fails(script, tmp_path, nprocs=2, timeout=60)
    assert "ERROR on proc 0" in out and "at the same position" in out
