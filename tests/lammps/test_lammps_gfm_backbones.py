"""Every HydraGNN backbone the importer takes, as a drop-in potential in `pair_style hydragnn`: the
GFM checkpoints of ../shared/hydragnn_golden (SchNet, PNA, PNAPlus, PNAEq and MACE with node energy
heads; MACE with a two-branch graph-level energy head), imported with `hydragnn import-hydragnn`,
run in LAMMPS on 1, 2 and 3 ranks (3 on a tiled decomposition) and give the energy, forces and
virial of the ASE calculator (the engine's whole-structure path) to 1e-10 relative in float64.
The periodic case is the golden Al5Cu7 cell repeated 2 x 2 x 1 and moved a little; the molecular
case is ethanol in an open box. (Agreement with HydraGNN itself: mlip/tests/hydragnn_gfm.rs.)
DimeNet runs where a rank has no ghost atoms (one rank, an open box) and is refused with a message
naming it where there are ghosts: its triplets would need the ghosts' own neighbours."""

import os
import subprocess

import numpy as np
import pytest

from lammps_util import NKTV2P_METAL, ROOT, env, read_dump, rel_err, results, run_lammps, write_data, golden_dir

TOL = 1e-10
VOIGT = [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]
# (golden name, system, branches)
CASES = [
    ("SchNet_node", "ethanol", (None,)),
    ("PNA_node", "cual", (None,)),
    ("PNAPlus_node", "ethanol", (None,)),
    ("PNAEq_node", "cual", (None,)),
    ("MACE_node", "ethanol", (None,)),
    ("MACE_graph2", "cual", ("branch-0", "branch-1")),
]


@pytest.fixture(scope="module")
def imported(plugin, tmp_path_factory):
    """name -> model file, every case imported through the CLI."""
    g = golden_dir()
    if not os.environ.get("HYDRAGNN_LAMMPS_NO_BUILD"):
        subprocess.run(["cargo", "build", "--release", "-p", "hydragnn-train", "--bin", "hydragnn"], cwd=ROOT,
                       check=True, env={**env(), "LIBTORCH_USE_PYTORCH": "1"})
    d = tmp_path_factory.mktemp("gfm_backbones")

    def one(name):
        path = str(d / f"{name}.hgnn")
        p = subprocess.run([os.path.join(ROOT, "target", "release", "hydragnn"), "import-hydragnn",
                            os.path.join(g, f"GFM_{name}_config.json"),
                            os.path.join(g, f"GFM_{name}_checkpoint.pk"), "-o", path],
                           env=env(), capture_output=True, text=True)
        return path, p

    out = {}
    for name, _, _ in CASES:
        path, p = one(name)
        assert p.returncode == 0, f"{name}: {p.stdout}{p.stderr}"
        out[name] = path
    path, p = one("DimeNet_node")
    assert p.returncode == 0, p.stdout + p.stderr
    out["DimeNet_node"] = path
    return out


def _cual():
    """The golden Al5Cu7 cell repeated 2 x 2 x 1 (48 atoms), moved a little: (pos, z, lengths)."""
    z = np.load(os.path.join(golden_dir(), "GFM_PNA_node_cual12_golden.npz"))
    pos, cell, numbers = z["pos"], np.diag(z["cell"]), z["atomic_numbers"]
    shifts = [np.array([i, j, 0]) * cell for i in (0, 1) for j in (0, 1)]
    pos = np.concatenate([pos + s for s in shifts])
    numbers = np.concatenate([numbers] * 4).astype(np.int32)
    rng = np.random.default_rng(5)
    pos = pos + rng.uniform(-0.05, 0.05, size=pos.shape)
    lengths = cell * np.array([2.0, 2.0, 1.0])
    return np.mod(pos, lengths), numbers, lengths


def _ethanol():
    """The golden ethanol molecule, centred in a 20 Å open box at (10, 10, 10): (pos, z)."""
    z = np.load(os.path.join(golden_dir(), "GFM_SchNet_node_ethanol_golden.npz"))
    return z["pos"] - z["pos"].mean(axis=0) + 10.0, z["atomic_numbers"].astype(np.int32)


def _ethanol_data(path, pos, z):
    types = {6: 1, 8: 2, 1: 3}
    with open(path, "w") as f:
        f.write(f"ethanol\n\n{len(z)} atoms\n3 atom types\n\n")
        for d in "xyz":
            f.write(f"0 20 {d}lo {d}hi\n")
        f.write("\nMasses\n\n1 12.011\n2 15.999\n3 1.008\n\nAtoms # atomic\n\n")
        for i, (p, zi) in enumerate(zip(pos, z)):
            f.write(f"{i + 1} {types[int(zi)]} {p[0]:.17g} {p[1]:.17g} {p[2]:.17g}\n")


def _script(plugin, data, model, system, branch, comm_style):
    boundary, elements = ("p p p", "Cu Al") if system == "cual" else ("f f f", "C O H")
    style = f"hydragnn branch {branch}" if branch else "hydragnn"
    lines = [f"plugin load {plugin}", "units metal", "atom_style atomic", "atom_modify map array",
             f"boundary {boundary}"]
    if comm_style == "tiled":
        lines.append("comm_style tiled")
    lines += [f"read_data {data}", f"pair_style {style}", f"pair_coeff * * {model} {elements}"]
    if comm_style == "tiled":
        lines.append("balance 1.0 rcb")
    lines += ["compute pv all pressure NULL virial", "thermo_style custom step pe c_pv[*] vol",
              "dump d all custom 1 out.dump id fx fy fz", "dump_modify d sort id format float %.17g", "run 0",
              'print "RESULT gfm $(pe:%.17g) $(c_pv[1]:%.17g) $(c_pv[2]:%.17g) $(c_pv[3]:%.17g) '
              '$(c_pv[4]:%.17g) $(c_pv[5]:%.17g) $(c_pv[6]:%.17g) $(vol:%.17g)"']
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name,system,branches", CASES, ids=[c[0] for c in CASES])
def test_imported_backbone_in_lammps_equals_ase_on_1_to_3_ranks(plugin, imported, name, system, branches,
                                                                tmp_path):
    from ase import Atoms
    from hydragnn_ase import HydraGNNCalculator

    data = str(tmp_path / f"{system}.data")
    if system == "cual":
        pos, z, lengths = _cual()
        write_data(data, pos, z, lengths, species=(29, 13))
        atoms = Atoms(numbers=z, positions=pos, cell=np.diag(lengths), pbc=True)
    else:
        pos, z = _ethanol()
        _ethanol_data(data, pos, z)
        atoms = Atoms(numbers=z, positions=pos, pbc=False)
    for branch in branches:
        atoms.calc = HydraGNNCalculator(imported[name], **({"head": branch} if branch else {}))
        e_ref, f_ref = atoms.get_potential_energy(), atoms.get_forces()
        assert np.abs(f_ref).max() > 1e-6, f"{name}: forces vanish"
        w_ref = None
        if system == "cual":
            w = -atoms.get_stress(voigt=False) * atoms.get_volume()
            w_ref = [w[i, j] for i, j in VOIGT]
        for nprocs, comm_style in ((1, "brick"), (2, "brick"), (3, "tiled")):
            cwd = tmp_path / f"{branch}_{nprocs}_{comm_style}"
            cwd.mkdir()
            _, out = run_lammps(_script(plugin, data, imported[name], system, branch, comm_style), str(cwd), nprocs)
            pe, *pv, vol = results(out)["gfm"]
            d = read_dump(str(cwd / "out.dump"))
            f = np.stack([d["fx"], d["fy"], d["fz"]], axis=1)
            errs = {"energy": rel_err(pe, e_ref), "forces": rel_err(f, f_ref)}
            if w_ref is not None:
                errs["virial"] = rel_err(np.array(pv) * vol / NKTV2P_METAL, w_ref)
            assert all(v <= TOL for v in errs.values()), \
                f"{name} {branch or ''} on {nprocs} ranks ({comm_style}): {errs}"


def test_dimenet_runs_without_ghosts_and_is_refused_with_them(plugin, imported, tmp_path):
    from ase import Atoms
    from hydragnn_ase import HydraGNNCalculator

    pos, z = _ethanol()
    data = str(tmp_path / "ethanol.data")
    _ethanol_data(data, pos, z)
    atoms = Atoms(numbers=z, positions=pos, pbc=False)
    atoms.calc = HydraGNNCalculator(imported["DimeNet_node"])
    e_ref, f_ref = atoms.get_potential_energy(), atoms.get_forces()
    script = _script(plugin, data, imported["DimeNet_node"], "ethanol", None, "brick")
    # One rank, an open box: no ghost atoms, the whole molecule is local.
    (tmp_path / "np1").mkdir()
    _, out = run_lammps(script, str(tmp_path / "np1"), 1)
    pe = results(out)["gfm"][0]
    d = read_dump(str(tmp_path / "np1" / "out.dump"))
    f = np.stack([d["fx"], d["fy"], d["fz"]], axis=1)
    assert rel_err(pe, e_ref) <= TOL and rel_err(f, f_ref) <= TOL
    # Two ranks: atoms near the cut have ghosts, and DimeNet's triplets would need theirs.
    (tmp_path / "np2").mkdir()
    rc, out = run_lammps(script, str(tmp_path / "np2"), 2, check=False)
    assert rc != 0
    assert "mpnn_type DimeNet cannot run on a graph with ghost atoms" in out, out[-3000:]
