"""pair_style hydragnn under hybrid styles (overlay sums, NULL element mapping), its keywords
(precision float32, threads, branch, compress and the logged evaluation path), and MD trajectories that agree across rank counts and comm
styles while atoms migrate between ranks."""

import os
import re

import numpy as np
import pytest

from hgnn_ref import Model
from lammps_util import fcc, lammps_cell, read_dump, results, rel_err, run_lammps, write_data
from test_lammps_nve import EAM

TOL = 1e-10


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    d = tmp_path_factory.mktemp("hybrid")
    rng = np.random.default_rng(77)
    pos, z, L = fcc(3.6, (3, 3, 3), rng, jitter=0.1, ni_fraction=0.3)
    path = str(d / "cuni.data")
    write_data(path, pos, z, L)
    return dict(data=path, z=z, cell=lammps_cell(L))


def _run0(plugin, config, pair_lines, tmp_path, name, nprocs=1, extra="", output=False):
    script = f"""plugin load {plugin}
units metal
atom_style atomic
atom_modify map array
{extra}
read_data {config['data']}
{pair_lines}
thermo_style custom step pe
dump d all custom 1 {name}.dump id type x y z fx fy fz
dump_modify d sort id format float %.17g
run 0
print "RESULT {name} $(pe:%.17g)"
"""
    _, out = run_lammps(script, str(tmp_path), nprocs=nprocs, name=f"in.{name}")
    d = read_dump(str(tmp_path / f"{name}.dump"))
    r = (results(out)[name][0], np.stack([d["fx"], d["fy"], d["fz"]], axis=1), d)
    return r + (out,) if output else r


def test_hybrid_overlay_is_the_sum(plugin, models, config, tmp_path):
    m = models["schnet2"]
    # the eam part is taken from the same hybrid with hydragnn replaced by pair_style zero (eam
    # alone on two types is not the same as eam inside hybrid in LAMMPS itself)
    e_eam, f_eam, _ = _run0(plugin, config, f"pair_style hybrid/overlay eam zero 6.0\npair_coeff * * eam {EAM}\n"
                            "pair_coeff * * zero", tmp_path, "eam")
    e_h, f_h, _ = _run0(plugin, config, f"pair_style hydragnn\npair_coeff * * {m} Cu Ni", tmp_path, "h")
    e_o, f_o, _ = _run0(plugin, config, f"pair_style hybrid/overlay eam hydragnn\npair_coeff * * eam {EAM}\n"
                        f"pair_coeff * * hydragnn {m} Cu Ni", tmp_path, "overlay", nprocs=2)
    assert rel_err(e_o, e_eam + e_h) <= TOL
    assert rel_err(f_o, f_eam + f_h) <= TOL


@pytest.mark.parametrize("nprocs", [1, 3])
def test_null_type_under_hybrid(plugin, models, config, tmp_path, nprocs):
    """Type 2 is NULL for hydragnn and handled by pair_style zero: the hydragnn part is the
    engine's evaluation of the type-1 atoms alone."""
    m = models["painn3"]
    pair = f"pair_style hybrid hydragnn zero 6.0\npair_coeff * * hydragnn {m} Cu NULL\npair_coeff 1 2 zero\npair_coeff 2 2 zero"
    e, f, d = _run0(plugin, config, pair, tmp_path, f"null{nprocs}", nprocs=nprocs)
    keep = config["z"] == 29
    pos = np.stack([d["x"], d["y"], d["z"]], axis=1)[keep]
    ref = Model(m).compute(pos, np.full(keep.sum(), 29), config["cell"])
    assert rel_err(e, ref["energy"]) <= TOL
    assert rel_err(f[keep], ref["forces"]) <= TOL
    assert np.all(f[~keep] == 0.0)


def test_float32(plugin, models, config, tmp_path):
    """precision float32 (from a float64 model file) matches the engine's float32 evaluation to
    float32 accuracy, and is identical in its float64 digits on 1 and 2 ranks up to reordering."""
    m = models["schnet2"]
    pair = f"pair_style hydragnn precision float32\npair_coeff * * {m} Cu Ni"
    e1, f1, d = _run0(plugin, config, pair, tmp_path, "f32a", nprocs=1)
    e2, f2, _ = _run0(plugin, config, pair, tmp_path, "f32b", nprocs=2)
    pos = np.stack([d["x"], d["y"], d["z"]], axis=1)
    ref = Model(m, dtype=32).compute(pos, config["z"], config["cell"])
    ref64 = Model(m).compute(pos, config["z"], config["cell"])
    assert rel_err(e1, ref["energy"]) < 1e-5 and rel_err(f1, ref["forces"]) < 1e-4
    assert rel_err(f1, ref64["forces"]) < 1e-3
    assert rel_err(e2, e1) < 1e-5 and rel_err(f2, f1) < 1e-4


def test_float32_model_file(plugin, models, config, tmp_path):
    """A model file saved in float32, evaluated in float32 and (converted on load) in float64."""
    m = models["schnet2_f32"]
    e32, f32, d = _run0(plugin, config, f"pair_style hydragnn precision float32\npair_coeff * * {m} Cu Ni", tmp_path, "m32")
    e64, f64, _ = _run0(plugin, config, f"pair_style hydragnn\npair_coeff * * {m} Cu Ni", tmp_path, "m64", nprocs=2)
    pos = np.stack([d["x"], d["y"], d["z"]], axis=1)
    ref32 = Model(m, dtype=32).compute(pos, config["z"], config["cell"])
    ref64 = Model(m).compute(pos, config["z"], config["cell"])
    assert rel_err(e32, ref32["energy"]) < 1e-5 and rel_err(f32, ref32["forces"]) < 1e-4
    assert rel_err(e64, ref64["energy"]) <= TOL and rel_err(f64, ref64["forces"]) <= TOL


def test_pair_style_reissued_reloads(plugin, models, config, tmp_path):
    """pair_style hydragnn given again after pair_coeff keeps the coefficients and reloads the
    model with the new keywords."""
    m = models["schnet2"]
    pair = (f"pair_style hydragnn\npair_coeff * * {m} Cu Ni\nrun 0\nprint \"RESULT first $(pe:%.17g)\"\n"
            "pair_style hydragnn precision float32")
    e2, _, _ = _run0(plugin, config, pair, tmp_path, "reissue")
    e1 = _run0(plugin, config, f"pair_style hydragnn\npair_coeff * * {m} Cu Ni", tmp_path, "plain")[0]
    e32 = _run0(plugin, config, f"pair_style hydragnn precision float32\npair_coeff * * {m} Cu Ni", tmp_path, "p32")[0]
    assert e2 == e32 and e2 != e1


def _logged_paths(out):
    return re.findall(r"^pair_style hydragnn: (fast|exact) path", out, flags=re.M)


@pytest.mark.parametrize("nprocs", [1, 2])
def test_compress_keyword_and_the_logged_path(plugin, models, config, tmp_path, nprocs):
    """`compress yes` (the default) runs the engine's fast path, `compress no` the exact one; rank 0
    logs one line naming the path; each equals the engine on that path; the two agree to the
    tables' accuracy; pair_style re-issued with another `compress` reloads on the other path."""
    m = models["schnet2"]
    e_d, f_d, d, out_d = _run0(plugin, config, f"pair_style hydragnn\npair_coeff * * {m} Cu Ni", tmp_path,
                               "cdefault", nprocs=nprocs, output=True)
    e_y, f_y, _, out_y = _run0(plugin, config, f"pair_style hydragnn compress yes\npair_coeff * * {m} Cu Ni",
                               tmp_path, "cyes", nprocs=nprocs, output=True)
    e_n, f_n, _, out_n = _run0(plugin, config, f"pair_style hydragnn compress no\npair_coeff * * {m} Cu Ni",
                               tmp_path, "cno", nprocs=nprocs, output=True)
    assert _logged_paths(out_d) == ["fast"], out_d[-3000:]
    assert _logged_paths(out_y) == ["fast"], out_y[-3000:]
    assert _logged_paths(out_n) == ["exact"], out_n[-3000:]
    assert e_d == e_y and np.array_equal(f_d, f_y)
    pos = np.stack([d["x"], d["y"], d["z"]], axis=1)
    for compress, e, f in ((True, e_y, f_y), (False, e_n, f_n)):
        ref = Model(m, compress=compress).compute(pos, config["z"], config["cell"])
        assert rel_err(e, ref["energy"]) <= TOL and rel_err(f, ref["forces"]) <= TOL, compress
    assert e_y != e_n
    assert rel_err(e_y, e_n) < 1e-5 and rel_err(f_y, f_n) < 1e-5
    # re-issued after pair_coeff: the model is reloaded on the other path
    pair = (f"pair_style hydragnn\npair_coeff * * {m} Cu Ni\nrun 0\n"
            "pair_style hydragnn compress no")
    e_r, f_r, _, out_r = _run0(plugin, config, pair, tmp_path, "creissue", nprocs=nprocs, output=True)
    assert _logged_paths(out_r) == ["fast", "exact"], out_r[-3000:]
    assert rel_err(e_r, e_n) <= TOL and rel_err(f_r, f_n) <= TOL


def test_threads_and_branch(plugin, models, config, tmp_path):
    m = models["schnet2"]
    e1, f1, _ = _run0(plugin, config, f"pair_style hydragnn\npair_coeff * * {m} Cu Ni", tmp_path, "t1")
    e2, f2, _ = _run0(plugin, config, f"pair_style hydragnn threads 2 branch default device cpu precision float64\n"
                      f"pair_coeff * * {m} Cu Ni", tmp_path, "t2")
    assert rel_err(e2, e1) <= TOL and rel_err(f2, f1) <= TOL


def _md(plugin, models, data, tmp_path, nprocs, comm, name):
    script = f"""plugin load {plugin}
units metal
atom_style atomic
atom_modify map array
{comm}
read_data {data}
{"balance 1.0 rcb" if "tiled" in comm else ""}
pair_style hybrid/scaled 1.0 eam 0.01 hydragnn
pair_coeff * * eam {EAM}
pair_coeff * * hydragnn {models['schnet4']} Cu Ni
velocity all create 1200 12345 mom yes rot yes loop geom
fix 1 all nve
timestep 0.001
neighbor 1.0 bin
thermo 50
run 200
write_dump all custom {name}.dump id xu yu zu fx fy fz modify sort id format float %.17g
"""
    run_lammps(script, str(tmp_path), nprocs=nprocs, name=f"in.{name}")
    d = read_dump(str(tmp_path / f"{name}.dump"))
    return np.stack([d[c] for c in ("xu", "yu", "zu")], axis=1), np.stack([d[c] for c in ("fx", "fy", "fz")], axis=1)


def test_md_independent_of_ranks(plugin, models, config, tmp_path):
    """200 MD steps (atoms cross sub-domain boundaries, neighbour lists are rebuilt, a 4-
    layer SchNet exchanges features three times each way) give the same trajectory on 1, 2 and 4 ranks, brick and
    tiled. Round-off differs between decompositions and grows along the trajectory, hence 1e-8."""
    x1, f1 = _md(plugin, models, config["data"], tmp_path, 1, "", "md1")
    for nprocs, comm in [(2, ""), (4, ""), (3, "comm_style tiled")]:
        x, f = _md(plugin, models, config["data"], tmp_path, nprocs, comm, f"md{nprocs}")
        assert np.max(np.abs(x - x1)) < 1e-8, (nprocs, comm)
        assert rel_err(f, f1) < 1e-8, (nprocs, comm)
