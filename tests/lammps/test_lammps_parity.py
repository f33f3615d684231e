"""LAMMPS (pair_style hydragnn, spatial decomposition with per-layer ghost exchange) against the
engine's direct whole-structure evaluation (hgnn_compute): energy, forces, global virial,
per-atom energies and per-atom (and centroid) virials to 1e-10 relative in float64, on 1-4 ranks,
comm_style brick and tiled (balance rcb), a slab whose vacuum leaves ranks without atoms, boxes
smaller than twice the cutoff, and a triclinic box. Each on both evaluation paths: `compress yes`
against the engine on the fast path, `compress no` against the exact path; LAMMPS logs the path
the engine reports, and the two paths agree to the tables' accuracy."""

import os
import re

import numpy as np
import pytest

from hgnn_ref import Model
from lammps_util import (NKTV2P_METAL, fcc, lammps_cell, read_dump, results, rel_err, run_lammps,
                         write_data)

TOL = 1e-10
PATH_TOL = 1e-5  # fast path vs exact path, relative to the largest force (the tables are relative to 1e-8)
SKIN = 2.0  # LAMMPS's default neighbour skin for units metal
VOIGT = [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]
CENTROID = VOIGT + [(1, 0), (2, 0), (2, 1)]


def _cases(models, d):
    """name -> (data file, model, positions, numbers, cell, brick-only commands)."""
    rng = np.random.default_rng(2024)
    cases = {}

    def add(name, model, pos, z, lengths, tilt=(0.0, 0.0, 0.0), procs="", species=(29, 28)):
        path = os.path.join(d, name + ".data")
        write_data(path, pos, z, lengths, tilt, species=species)
        symbols = {29: "Cu", 28: "Ni", 1: "H", 6: "C", 8: "O"}
        cases[name] = dict(data=path, model=models[model], procs=procs, cell=lammps_cell(lengths, tilt), z=z,
                           elements=" ".join(symbols[s] for s in species),
                           # comm_style tiled cannot reach past one periodic box length (LAMMPS
                           # limitation): boxes shorter than cutoff + skin run with brick only
                           tiled=min(lengths) >= Model(models[model]).cutoff + SKIN)

    pos, z, L = fcc(3.6, (4, 4, 4), rng)
    add("bulk_schnet", "schnet2", pos, z, L)
    add("bulk_painn", "painn3", pos, z, L)
    add("bulk_schnet4", "schnet4", pos, z, L)
    # a box smaller than twice the cutoff: ghosts include periodic images of local atoms (several
    # images of the same atom within one cutoff)
    pos, z, L = fcc(3.6, (2, 2, 2), rng)
    add("small_schnet", "schnet2", pos, z, L)
    add("small_painn", "painn3", pos, z, L)
    pos, z, L = fcc(3.6, (1, 2, 2), rng, jitter=0.05)
    add("tiny_painn", "painn3", pos, z, L)
    # a slab along z in a 40 Å box: with a 1 x 1 x n grid the upper ranks own no atoms
    pos, z, L = fcc(3.6, (4, 4, 3), rng)
    add("slab_schnet", "schnet2", pos, z, np.array([L[0], L[1], 40.0]), procs="processors 1 1 *")
    add("slab_painn", "painn3", pos, z, np.array([L[0], L[1], 40.0]), procs="processors 1 1 *")
    # triclinic
    pos, z, L = fcc(3.6, (4, 4, 4), rng)
    tilt = (1.0, 0.5, -0.7)
    frac = pos / L
    cart = frac @ lammps_cell(L, tilt)
    add("tri_painn", "painn3", cart, z, L, tilt=tilt)
    # atom types in the other order than the model's species (type 1 = Ni, type 2 = Cu)
    pos, z, L = fcc(3.6, (3, 3, 3), rng)
    add("swapped_types", "painn3", pos, z, L, species=(28, 29))
    # a molecule (ethanol) in a 20 Å box centred on the corner shared by four sub-domains: on 4
    # ranks its atoms belong to different ranks, and on 3 or 4 ranks some ranks own nothing
    mol = np.array([[1.168181, -0.400382, 0.0], [0.0, 0.559462, 0.0], [-1.190083, -0.227669, 0.0],
                    [-1.946623, 0.381525, 0.0], [0.042557, 1.207508, 0.886933], [0.042557, 1.207508, -0.886933],
                    [2.115891, 0.1448, 0.0], [1.128599, -1.037234, 0.885881], [1.128599, -1.037234, -0.885881]])
    zmol = np.array([6, 6, 8, 1, 1, 1, 1, 1, 1], dtype=np.int32)
    add("molecule", "mol3", mol + 10.0, zmol, np.array([20.0, 20.0, 20.0]), species=(6, 1, 8))
    return cases


def _script(cases, plugin, comm_style, compress):
    s = [f"plugin load {plugin}"]
    for name, c in cases.items():
        if comm_style == "tiled" and not c["tiled"]:
            continue
        s += ["clear", f'print "CASE {name}"', "units metal", "atom_style atomic", "atom_modify map array", "boundary p p p"]
        if comm_style == "tiled":
            s += ["comm_style tiled"]
        elif c["procs"]:
            s += [c["procs"]]
        s += [f"read_data {c['data']}"]
        if comm_style == "tiled":
            s += ["balance 1.0 rcb"]
        s += [f"pair_style hydragnn compress {'yes' if compress else 'no'}", f"pair_coeff * * {c['model']} {c['elements']}",
              "compute pe all pe/atom", "compute st all stress/atom NULL virial",
              "compute cst all centroid/stress/atom NULL virial",
              "compute pv all pressure NULL virial",
              "thermo_style custom step pe c_pv[*] vol", "thermo_modify format float %.17g",
              f"dump d all custom 1 {name}.dump id type x y z fx fy fz c_pe c_st[*] c_cst[*]",
              "dump_modify d sort id format float %.17g",
              "run 0", "undump d",
              f'print "RESULT {name} $(pe:%.17g) $(c_pv[1]:%.17g) $(c_pv[2]:%.17g) $(c_pv[3]:%.17g) '
              f'$(c_pv[4]:%.17g) $(c_pv[5]:%.17g) $(c_pv[6]:%.17g) $(vol:%.17g)"']
    return "\n".join(s) + "\n"


@pytest.fixture(scope="module")
def cases(models, tmp_path_factory):
    return _cases(models, str(tmp_path_factory.mktemp("configs")))


_first = {}


@pytest.mark.parametrize("compress", [True, False], ids=["fast", "exact"])
@pytest.mark.parametrize("nprocs,comm_style", [(1, "brick"), (2, "brick"), (3, "brick"), (4, "brick"),
                                               (1, "tiled"), (2, "tiled"), (3, "tiled"), (4, "tiled")])
def test_lammps_equals_engine(plugin, cases, nprocs, comm_style, compress, tmp_path):
    _, out = run_lammps(_script(cases, plugin, comm_style, compress), str(tmp_path), nprocs)
    res = results(out)
    chunks = {m.group(1): chunk for chunk in out.split("\nCASE ")[1:] for m in [re.match(r"(\S+)", chunk)]}
    worst = 0.0
    for name, c in cases.items():
        if comm_style == "tiled" and not c["tiled"]:
            continue
        d = read_dump(str(tmp_path / f"{name}.dump"))
        pos = np.stack([d["x"], d["y"], d["z"]], axis=1)
        z = c["z"]
        model = Model(c["model"], compress=compress)
        path = model.path_info["path"]
        if not compress:
            assert path == "exact", model.path_info
        # LAMMPS reports the path the engine runs, once (rank 0)
        logged = re.findall(r"pair_style hydragnn: (fast|exact) path", chunks[name])
        assert logged == [path], f"{name}: log names {logged}, the engine runs the {path} path"
        ref = model.compute(pos, z, c["cell"])
        pe, *pv, vol = res[name]
        f = np.stack([d["fx"], d["fy"], d["fz"]], axis=1)
        w_lmp = np.array(pv) * vol / NKTV2P_METAL
        w_ref = np.array([ref["virial"][a, b] for a, b in VOIGT])
        vat = -np.stack([d[f"c_st[{k + 1}]"] for k in range(6)], axis=1) / NKTV2P_METAL
        vat_ref = np.stack([ref["virials"][:, a, b] for a, b in VOIGT], axis=1)
        cvat = -np.stack([d[f"c_cst[{k + 1}]"] for k in range(9)], axis=1) / NKTV2P_METAL
        cvat_ref = np.stack([ref["virials"][:, a, b] for a, b in CENTROID], axis=1)
        errs = {
            "energy": rel_err(pe, ref["energy"]),
            "forces": rel_err(f, ref["forces"]),
            "virial": rel_err(w_lmp, w_ref),
            "energies": rel_err(d["c_pe"], ref["energies"]),
            "virials": rel_err(vat, vat_ref),
            "centroid virials": rel_err(cvat, cvat_ref),
        }
        worst = max(worst, *errs.values())
        bad = {k: v for k, v in errs.items() if not v <= TOL}
        assert not bad, f"{name} on {nprocs} ranks ({comm_style}): relative errors {bad}"
        # the ghost shell is one cutoff (+ skin) wide whatever the number of layers: the per-layer
        # exchange, not a layers x cutoff shell, provides the features of distant atoms
        rc = Model(c["model"]).cutoff
        ghost_cut = float(re.search(r"ghost atom cutoff = (\S+)", chunks[name]).group(1))
        assert ghost_cut == pytest.approx(rc + SKIN), f"{name}: ghost cutoff {ghost_cut}, expected {rc + SKIN}"
        if name.startswith("slab") and comm_style == "brick" and nprocs > 1:
            nmin = float(re.search(r"Nlocal:\s+\S+ ave\s+\S+ max\s+(\S+) min", chunks[name]).group(1))
            assert nmin == 0, f"{name}: expected a rank without atoms"
        # identical across rank counts and comm styles (same tolerance; sums run in other orders)
        key = (name, compress)
        if key in _first:
            f0, pe0 = _first[key]
            assert rel_err(f, f0) <= TOL and rel_err(pe, pe0) <= TOL, f"{name}: differs from the first run"
        else:
            _first[key] = (f, pe)
        # the other path agrees to the tables' accuracy
        other = _first.get((name, not compress))
        if other is not None:
            f1, pe1 = other
            assert rel_err(f, f1) <= PATH_TOL and rel_err(pe, pe1) <= PATH_TOL, \
                f"{name}: fast and exact paths differ by {rel_err(f, f1):.2e} (forces), {rel_err(pe, pe1):.2e} (energy)"
    label = "compress yes" if compress else "compress no"
    print(f"\n{nprocs} ranks, {comm_style}, {label}: worst relative error {worst:.2e} over {len(res)} configurations")
