"""The ZBL core repulsion and the training-domain warning in LAMMPS: a model with ZBL gives the
engine's whole-structure energy, forces and virial (hgnn_compute) on 1 and 2 ranks, on the fast
and the exact path, for a Cu/Ni crystal with a pair pushed inside the ZBL radii; and when a pair
comes closer than the shortest distance of the model's training data, rank 0 warns once per run,
naming the distance and the two LAMMPS atom IDs."""

import re
import subprocess

import numpy as np
import pytest

from hgnn_ref import Model
from lammps_util import (NKTV2P_METAL, RANDOM_MODEL, env, fcc, read_dump, results, rel_err, run_lammps,
                         write_data)

TOL = 1e-10


@pytest.fixture(scope="module")
def zbl_model(plugin, tmp_path_factory):
    """A random-weight Cu/Ni SchNet with ZBL between 1.0 and 2.0 A, claiming 2.2 A as the
    shortest distance of its training data."""
    path = str(tmp_path_factory.mktemp("zbl") / "zbl.model")
    subprocess.run([RANDOM_MODEL, path, "SchNet", "Cu,Ni", "4.5", "2", "float64", "21", "-",
                    "zbl=1.0:2.0", "dmin=2.2"], check=True, env=env())
    return path


def _crystal(tmp_path, close):
    rng = np.random.default_rng(7)
    pos, z, L = fcc(3.6, (3, 3, 3), rng, jitter=0.05)
    # atom 6 (LAMMPS ID 6) pushed to `close` Å from atom 1 (ID 1); None: the rattled crystal
    # (nearest neighbours 2.55 +- 0.1 Å, all farther than the model's 2.2 Å)
    if close is not None:
        pos[5] = pos[0] + np.array([close, 0.0, 0.0])
    path = str(tmp_path / "close.data")
    write_data(path, pos, z, L)
    return path, pos, z, L


def _script(plugin, model, data, compress, steps=0):
    return "\n".join([
        f"plugin load {plugin}", "units metal", "atom_style atomic", "atom_modify map array",
        "boundary p p p", f"read_data {data}", f"pair_style hydragnn compress {'yes' if compress else 'no'}",
        f"pair_coeff * * {model} Cu Ni", "compute pv all pressure NULL virial",
        "thermo_style custom step pe c_pv[*] vol", "thermo_modify format float %.17g",
        "dump d all custom 1 zbl.dump id type x y z fx fy fz", "dump_modify d sort id format float %.17g",
        "run 0", "undump d",
        'print "RESULT zbl $(pe:%.17g) $(c_pv[1]:%.17g) $(c_pv[2]:%.17g) $(c_pv[3]:%.17g) '
        '$(c_pv[4]:%.17g) $(c_pv[5]:%.17g) $(c_pv[6]:%.17g) $(vol:%.17g)"',
        "velocity all create 300 5", "fix nve all nve", f"run {steps}",
    ]) + "\n"


@pytest.mark.parametrize("compress", [True, False], ids=["fast", "exact"])
@pytest.mark.parametrize("nprocs", [1, 2])
def test_lammps_with_zbl_equals_engine_and_warns_once(plugin, zbl_model, tmp_path, nprocs, compress):
    data, pos, z, L = _crystal(tmp_path, 1.3)
    _, out = run_lammps(_script(plugin, zbl_model, data, compress, steps=5), str(tmp_path), nprocs)
    pe, *pv, vol = results(out)["zbl"]
    d = read_dump(str(tmp_path / "zbl.dump"))
    f = np.stack([d["fx"], d["fy"], d["fz"]], axis=1)
    p = np.stack([d["x"], d["y"], d["z"]], axis=1)
    ref = Model(zbl_model, compress=compress).compute(p, z, np.diag(L))
    assert rel_err(pe, ref["energy"]) <= TOL, (pe, ref["energy"])
    assert rel_err(f, ref["forces"]) <= TOL
    w = np.array(pv) * vol / NKTV2P_METAL
    w_ref = np.array([ref["virial"][a, b] for a, b in [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]])
    assert rel_err(w, w_ref) <= TOL
    # the repulsion is in it: far above the same crystal without the close atom
    without = Model(zbl_model, compress=compress).compute(np.delete(p, 5, axis=0), np.delete(z, 5), np.diag(L))
    assert ref["energy"] > 10.0 + without["energy"], (ref["energy"], without["energy"])
    warnings = re.findall(r"WARNING: pair_style hydragnn: atoms (\d+) and (\d+) are (\S+) A apart", out)
    assert len(warnings) == 1, out[-3000:]
    i, j, r = warnings[0]
    assert (int(i), int(j)) == (1, 6), warnings
    assert float(r) == pytest.approx(np.linalg.norm(p[5] - p[0]), abs=1e-3)
    assert "(2.2000 A)" in out


def test_lammps_no_warning_inside_the_training_domain(plugin, zbl_model, tmp_path):
    data, *_ = _crystal(tmp_path, None)
    _, out = run_lammps(_script(plugin, zbl_model, data, True, steps=3), str(tmp_path), 2)
    assert "closer than any pair" not in out
