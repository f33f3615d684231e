"""HydraGNN's foundation-model recipe in `pair_style hydragnn`: the GFM PaiNN with a graph-level
energy head (node features summed over the whole system, then shared layers and an MLP) and two
branches, imported with `hydragnn import-hydragnn` from ../shared/hydragnn_golden. Its energy is
not a sum over atoms, so every step the ranks all-reduce their partial pooled sums before the
backward pass: on 1, 2, 3 and 4 ranks, brick and tiled, and with ranks left without atoms,
LAMMPS's energy, forces and virial equal the ASE calculator's (the engine's whole-structure path)
to 1e-10 relative, for each branch. compute pe/atom is refused with a message that says why.
The charge/spin-conditioned variant (concat_node) reads atoms.info["charge"], ["spin"] in ASE
(HydraGNN's numbers to 1e-8) and `pair_style hydragnn charge Q spin S` in LAMMPS (ASE's to 1e-10).
(Agreement with HydraGNN itself: mlip/tests/hydragnn_gfm.rs and mlip/capi/tests/hydragnn_gfm.rs.)"""

import os
import subprocess

import numpy as np
import pytest

from lammps_util import NKTV2P_METAL, ROOT, env, read_dump, rel_err, results, run_lammps, write_data, golden_dir

TOL = 1e-10
VOIGT = [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]
BRANCHES = ("branch-0", "branch-1")


@pytest.fixture(scope="module")
def gfm_model(plugin, tmp_path_factory):
    """GFM_PAINN_graph2 imported through the CLI (x = Z, HydraGNN's atomic-number feature)."""
    g = golden_dir()
    if not os.environ.get("HYDRAGNN_LAMMPS_NO_BUILD"):
        subprocess.run(["cargo", "build", "--release", "-p", "hydragnn-train", "--bin", "hydragnn"], cwd=ROOT,
                       check=True, env={**env(), "LIBTORCH_USE_PYTORCH": "1"})
    path = str(tmp_path_factory.mktemp("gfm") / "gfm_painn_graph2.hgnn")
    p = subprocess.run([os.path.join(ROOT, "target", "release", "hydragnn"), "import-hydragnn",
                        os.path.join(g, "GFM_PAINN_graph2_config.json"),
                        os.path.join(g, "GFM_PAINN_graph2_checkpoint.pk"), "-o", path],
                       env=env(), capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    return path


def _system(vacuum=0.0):
    """The golden Al5Cu7 cell (3.7 x 3.7 x 11.1 Å) repeated 2 x 2 x 1 (48 atoms), moved a little;
    with `vacuum`, the cell is that much longer along z (a slab)."""
    z = np.load(os.path.join(golden_dir(), "GFM_PAINN_graph2_cual12_golden.npz"))
    pos, cell, numbers = z["pos"], np.diag(z["cell"]), z["atomic_numbers"]
    shifts = [np.array([i, j, 0]) * cell for i in (0, 1) for j in (0, 1)]
    pos = np.concatenate([pos + s for s in shifts])
    numbers = np.concatenate([numbers] * 4).astype(np.int32)
    rng = np.random.default_rng(11)
    pos = pos + rng.uniform(-0.05, 0.05, size=pos.shape)
    lengths = cell * np.array([2.0, 2.0, 1.0]) + np.array([0.0, 0.0, vacuum])
    return np.mod(pos, lengths), numbers, lengths


def _script(plugin, data, model, branch, comm_style, procs="", extra=()):
    lines = [f"plugin load {plugin}", "units metal", "atom_style atomic", "atom_modify map array", "boundary p p p"]
    if procs:
        lines.append(f"processors {procs}")
    if comm_style == "tiled":
        lines.append("comm_style tiled")
    lines += [f"read_data {data}", f"pair_style hydragnn branch {branch}", f"pair_coeff * * {model} Cu Al"]
    if comm_style == "tiled":
        lines.append("balance 1.0 rcb")
    lines += ["compute pv all pressure NULL virial", "thermo_style custom step pe c_pv[*] vol", *extra,
              "dump d all custom 1 out.dump id fx fy fz", "dump_modify d sort id format float %.17g", "run 0",
              'print "RESULT gfm $(pe:%.17g) $(c_pv[1]:%.17g) $(c_pv[2]:%.17g) $(c_pv[3]:%.17g) '
              '$(c_pv[4]:%.17g) $(c_pv[5]:%.17g) $(c_pv[6]:%.17g) $(vol:%.17g)"']
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def reference(gfm_model):
    """ASE (whole-structure engine path) energy, forces and virial per case and branch."""
    from ase import Atoms
    from hydragnn_ase import HydraGNNCalculator

    out = {}
    for case, vacuum in (("bulk", 0.0), ("slab", 14.0)):
        pos, z, lengths = _system(vacuum)
        atoms = Atoms(numbers=z, positions=pos, cell=np.diag(lengths), pbc=True)
        for b in BRANCHES:
            atoms.calc = HydraGNNCalculator(gfm_model, head=b)
            assert "energies" not in atoms.calc.implemented_properties
            w = -atoms.get_stress(voigt=False) * atoms.get_volume()
            out[case, b] = (atoms.get_potential_energy(), atoms.get_forces(), [w[i, j] for i, j in VOIGT])
    return out


@pytest.mark.parametrize("nprocs,comm_style", [(1, "brick"), (2, "brick"), (3, "brick"), (4, "brick"),
                                               (1, "tiled"), (2, "tiled"), (3, "tiled"), (4, "tiled")])
def test_graph_energy_in_lammps_equals_ase_on_1_to_4_ranks(plugin, gfm_model, reference, nprocs, comm_style,
                                                           tmp_path):
    # the slab runs along z on a 1 x 1 x nprocs grid: with vacuum, the top ranks hold no atoms
    cases = [("bulk", 0.0, "")] + ([("slab", 14.0, f"1 1 {nprocs}")] if comm_style == "brick" else [])
    for case, vacuum, procs in cases:
        pos, z, lengths = _system(vacuum)
        data = str(tmp_path / f"{case}.data")
        write_data(data, pos, z, lengths, species=(29, 13))
        for b in BRANCHES:
            cwd = tmp_path / f"{case}_{b}"
            cwd.mkdir()
            _, out = run_lammps(_script(plugin, data, gfm_model, b, comm_style, procs), str(cwd), nprocs)
            log = (cwd / "in.test.log").read_text()
            assert f"the energy of branch '{b}' is graph-level" in log
            pe, *pv, vol = results(out)["gfm"]
            d = read_dump(str(cwd / "out.dump"))
            f = np.stack([d["fx"], d["fy"], d["fz"]], axis=1)
            w = np.array(pv) * vol / NKTV2P_METAL
            e_ref, f_ref, w_ref = reference[case, b]
            errs = {"energy": rel_err(pe, e_ref), "forces": rel_err(f, f_ref), "virial": rel_err(w, w_ref)}
            assert all(v <= TOL for v in errs.values()), f"{case} {b} on {nprocs} ranks ({comm_style}): {errs}"


def test_per_atom_energy_of_a_graph_energy_is_refused(plugin, gfm_model, tmp_path):
    pos, z, lengths = _system()
    data = str(tmp_path / "bulk.data")
    write_data(data, pos, z, lengths, species=(29, 13))
    script = _script(plugin, data, gfm_model, "branch-0", "brick",
                     extra=["compute pea all pe/atom", "compute sum all reduce sum c_pea"])
    script = script.replace("thermo_style custom step pe c_pv[*] vol", "thermo_style custom step pe c_sum")
    rc, out = run_lammps(script, str(tmp_path), 2, check=False)
    assert rc != 0
    assert "per-atom energies (compute pe/atom" in out and "graph-level" in out, out[-3000:]


@pytest.fixture(scope="module")
def concat_model(gfm_model, tmp_path_factory):
    """GFM_PAINN_graph2_concat (conditioned on [charge, spin], concat_node) through the CLI."""
    g = golden_dir()
    path = str(tmp_path_factory.mktemp("gfm_concat") / "gfm_painn_graph2_concat.hgnn")
    p = subprocess.run([os.path.join(ROOT, "target", "release", "hydragnn"), "import-hydragnn",
                        os.path.join(g, "GFM_PAINN_graph2_concat_config.json"),
                        os.path.join(g, "GFM_PAINN_graph2_concat_checkpoint.pk"), "-o", path],
                       env=env(), capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "[charge, spin]" in p.stderr, p.stderr
    return path


def test_charge_and_spin_from_atoms_info_reproduce_hydragnn(concat_model):
    from ase import Atoms
    from hydragnn_ase import HydraGNNCalculator

    z = np.load(os.path.join(golden_dir(), "GFM_PAINN_graph2_concat_ethanol_golden.npz"))
    atoms = Atoms(numbers=z["atomic_numbers"], positions=z["pos"], pbc=False)
    for b, branch in enumerate(BRANCHES):
        atoms.calc = HydraGNNCalculator(concat_model, head=branch)
        atoms.info.pop("charge", None)
        atoms.info.pop("spin", None)
        with pytest.raises(ValueError, match=r"charge and spin: set atoms.info\['charge'\]"):
            atoms.get_potential_energy()
        atoms.info["charge"], atoms.info["spin"] = z["graph_attr"]
        assert rel_err(atoms.get_potential_energy(), z["energy"][b]) <= 1e-8
        assert rel_err(atoms.get_forces(), z["forces"][b]) <= 1e-8
        e = atoms.get_potential_energy()
        atoms.info["charge"] = 0.0    # a new charge is a reason to recompute
        assert abs(atoms.get_potential_energy() - e) > 1e-6


def _molecule_data(path, pos, z):
    types = {6: 1, 8: 2, 1: 3}
    with open(path, "w") as f:
        f.write(f"ethanol\n\n{len(z)} atoms\n3 atom types\n\n")
        for d in "xyz":
            f.write(f"-10 10 {d}lo {d}hi\n")
        f.write("\nMasses\n\n1 12.011\n2 15.999\n3 1.008\n\nAtoms # atomic\n\n")
        for i, (p, zi) in enumerate(zip(pos, z)):
            f.write(f"{i + 1} {types[int(zi)]} {p[0]:.17g} {p[1]:.17g} {p[2]:.17g}\n")


def test_charge_and_spin_in_pair_style_equal_ase_on_1_and_2_ranks(plugin, gfm_model, concat_model, tmp_path):
    from ase import Atoms
    from hydragnn_ase import HydraGNNCalculator

    z = np.load(os.path.join(golden_dir(), "GFM_PAINN_graph2_concat_ethanol_golden.npz"))
    pos = z["pos"] - z["pos"].mean(axis=0)
    data = str(tmp_path / "ethanol.data")
    _molecule_data(data, pos, z["atomic_numbers"])
    atoms = Atoms(numbers=z["atomic_numbers"], positions=pos, pbc=False)
    atoms.info.update(charge=1.0, spin=3.0)

    def script(style_args):
        return "\n".join([
            f"plugin load {plugin}", "units metal", "atom_style atomic", "atom_modify map array", "boundary f f f",
            f"read_data {data}", f"pair_style hydragnn {style_args}", f"pair_coeff * * {concat_model} C O H",
            "dump d all custom 1 out.dump id fx fy fz", "dump_modify d sort id format float %.17g",
            "thermo_style custom step pe", "run 0", 'print "RESULT mol $(pe:%.17g)"']) + "\n"

    for branch in BRANCHES:
        atoms.calc = HydraGNNCalculator(concat_model, head=branch)
        e_ref, f_ref = atoms.get_potential_energy(), atoms.get_forces()
        for nprocs in (1, 2):
            cwd = tmp_path / f"{branch}_np{nprocs}"
            cwd.mkdir()
            _, out = run_lammps(script(f"branch {branch} charge 1 spin 3"), str(cwd), nprocs)
            assert "pair_style hydragnn: the model is conditioned on the system's charge = 1 spin = 3" in out
            d = read_dump(str(cwd / "out.dump"))
            f = np.stack([d["fx"], d["fy"], d["fz"]], axis=1)
            errs = (rel_err(results(out)["mol"][0], e_ref), rel_err(f, f_ref))
            assert max(errs) <= TOL, f"{branch} on {nprocs} ranks: {errs}"
    rc, out = run_lammps(script("branch branch-0 charge 1"), str(tmp_path), 1, check=False, name="in.missing")
    assert rc != 0 and "is conditioned on the system's charge and spin: give them with pair_style hydragnn ... " \
                      "charge VALUE spin VALUE" in out, out[-2000:]
    rc, out = run_lammps(script("branch branch-0 charge 1 spin 3").replace(concat_model, gfm_model),
                         str(tmp_path), 1, check=False, name="in.extra")
    assert rc != 0 and "keyword 'charge' given, but model file" in out, out[-2000:]

