"""pair_style hydragnn with an ensemble file: every member runs the layer-by-layer protocol with its
own ghost exchange, the committee mean (`drive mean`, the default) or member 0 (`drive first`)
moves the atoms, and `uncertainty every N` gives DeePMD-kit's model deviation. On 1, 2, 3 and 4
ranks, energy, forces and virial of the driving model, the per-atom force deviation (fix pair ->
dump), the global deviations (c_ID[1..7], model_devi.out) equal those of the members evaluated
one by one through the ASE calculator (and the ASE calculator's own ensemble values) to 1e-10
relative in float64. The members differ in architecture (two SchNet, one PaiNN: different feature
widths in the ghost exchange). See docs/ensembles.md."""

import os
import subprocess

import numpy as np
import pytest

from lammps_util import (RANDOM_MODEL, ROOT, env, fcc, lammps_cell, read_dump, rel_err, results,
                         run_lammps, write_data, golden_dir)

TOL = 1e-10
VOIGT_LMP = [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]
NKTV2P_METAL = 1.6021765e6


def make_ensemble(directory, names, out="ens.model"):
    """An ensemble of random-weight Cu/Ni members (cutoff 4.5 Å, 2 layers): (members, ensemble)."""
    kinds = {"s1": ("SchNet", 11), "s2": ("SchNet", 21), "p3": ("PAINN", 31)}
    members = []
    for n in names:
        mpnn, seed = kinds[n]
        path = os.path.join(directory, f"{n}.model")
        if not os.path.exists(path):
            subprocess.run([RANDOM_MODEL, path, mpnn, "Cu,Ni", "4.5", "2", "float64", str(seed)], check=True,
                           env=env())
        members.append(path)
    exe = os.path.join(ROOT, "target", "release", "hydragnn")
    if not os.path.isfile(exe):
        pytest.fail(f"{exe} not found; build it with: cargo build --release -p hydragnn-train")
    ens = os.path.join(directory, out)
    subprocess.run([exe, "ensemble", *members, "-o", ens], check=True, capture_output=True)
    return members, ens


@pytest.fixture(scope="module")
def committee(plugin, tmp_path_factory):
    return make_ensemble(str(tmp_path_factory.mktemp("ens")), ["s1", "s2", "p3"])


def reference(members, ens, atoms):
    """Per member energy, forces, LAMMPS-convention virial (3x3) through ASE, the deviations as
    docs/ensembles.md defines them, and the ASE ensemble calculator's results."""
    from hydragnn_ase import HydraGNNCalculator

    e, f, w = [], [], []
    for m in members:
        a = atoms.copy()
        a.calc = HydraGNNCalculator(m, dtype="float64")
        e.append(a.get_potential_energy())
        f.append(a.get_forces())
        w.append(-a.get_stress(voigt=False) * a.get_volume())
    e, f, w = np.array(e), np.array(f), np.array(w)
    n = len(atoms)
    dev = np.sqrt(np.mean(np.sum((f - f.mean(axis=0)) ** 2, axis=2), axis=0))
    vdev = (np.std(w, axis=0) / n).ravel()
    a = atoms.copy()
    a.calc = HydraGNNCalculator(ens, dtype="float64")
    a.get_potential_energy()
    return {"e": e, "f": f, "w": w, "dev": dev, "devi": [dev.max(), dev.min(), dev.mean(), vdev.max(), vdev.min(),
                                                        vdev.mean(), np.std(e)], "ase": a.calc.results}


def _script(plugin, data, ens, style):
    return "\n".join([
        f"plugin load {plugin}", "units metal", "atom_style atomic", "atom_modify map array", "boundary p p p",
        f"read_data {data}", f"pair_style hydragnn {style}", f"pair_coeff * * {ens} Cu Ni",
        "compute hp all pair hydragnn", "compute pv all pressure NULL virial",
        "fix fd all pair 1 hydragnn model_devi_f 1",
        "dump d all custom 1 out.dump id fx fy fz f_fd", "dump_modify d sort id format float %.17g",
        "thermo_style custom step pe c_hp[*] c_pv[*] vol", "run 0",
        'print "RESULT devi ' + " ".join(f"$(c_hp[{k}]:%.17g)" for k in range(1, 8)) + '"',
        'print "RESULT pe $(pe:%.17g) $(vol:%.17g)"',
        'print "RESULT pv ' + " ".join(f"$(c_pv[{k}]:%.17g)" for k in range(1, 7)) + '"']) + "\n"


@pytest.fixture(scope="module")
def configuration(tmp_path_factory):
    from ase import Atoms

    d = tmp_path_factory.mktemp("cfg")
    rng = np.random.default_rng(5)
    pos, z, lengths = fcc(3.6, (3, 3, 3), rng, jitter=0.08)
    tilt = (0.6, -0.4, 0.3)
    cell = lammps_cell(lengths, tilt)
    pos = (pos / lengths) @ cell
    data = str(d / "cuni.data")
    write_data(data, pos, z, lengths, tilt=tilt)
    return data, Atoms(numbers=z, positions=pos, cell=cell, pbc=True)


@pytest.mark.parametrize("drive", ["mean", "first"])
def test_lammps_committee_equals_ase(plugin, committee, configuration, tmp_path, drive):
    members, ens = committee
    data, atoms = configuration
    ref = reference(members, ens, atoms)
    # the ASE ensemble calculator agrees with the members one by one (sanity of the reference)
    assert rel_err(ref["ase"]["forces_std"], ref["dev"]) <= 1e-10
    assert rel_err(ref["ase"]["max_devi_f"], ref["devi"][0]) <= 1e-10
    assert rel_err(ref["ase"]["energy_std"], ref["devi"][6]) <= 1e-10
    want_e = ref["e"].mean() if drive == "mean" else ref["e"][0]
    want_f = ref["f"].mean(axis=0) if drive == "mean" else ref["f"][0]
    want_w = ref["w"].mean(axis=0) if drive == "mean" else ref["w"][0]
    script = _script(plugin, data, ens, f"drive {drive} uncertainty every 1 file md.out atomic")
    for nprocs in (1, 2, 3, 4):
        cwd = tmp_path / f"np{nprocs}"
        cwd.mkdir()
        _, out = run_lammps(script, str(cwd), nprocs, timeout=300)
        assert f"ensemble of 3 members" in out and f"drive {drive}" in out
        r = results(out)
        pe, vol = r["pe"]
        w = np.array(r["pv"]) * vol / NKTV2P_METAL
        d = read_dump(str(cwd / "out.dump"))
        f = np.stack([d["fx"], d["fy"], d["fz"]], axis=1)
        errs = {
            "energy": rel_err(pe, want_e),
            "forces": rel_err(f, want_f),
            "virial": rel_err(w, [want_w[a, b] for a, b in VOIGT_LMP]),
            "per-atom devi (fix pair)": rel_err(d["f_fd"], ref["dev"]),
        }
        for k, name in enumerate(["max_devi_f", "min_devi_f", "avg_devi_f", "max_devi_v", "min_devi_v",
                                  "avg_devi_v", "devi_e"]):
            errs[f"c_hp[{k + 1}] {name}"] = rel_err(r["devi"][k], ref["devi"][k])
        rows = np.loadtxt(str(cwd / "md.out"), ndmin=2)
        assert rows.shape == (1, 7 + len(atoms)), rows.shape
        step, mv, nv, av, mf, nf, af = rows[0, :7]
        assert step == 0
        for name, got, k in [("max_devi_v", mv, 3), ("min_devi_v", nv, 4), ("avg_devi_v", av, 5),
                             ("max_devi_f", mf, 0), ("min_devi_f", nf, 1), ("avg_devi_f", af, 2)]:
            errs[f"md.out {name}"] = rel_err(got, ref["devi"][k])
        errs["md.out atomic"] = rel_err(rows[0, 7:], ref["dev"])
        bad = {k: v for k, v in errs.items() if not v <= TOL}
        assert not bad, f"drive {drive}, {nprocs} ranks vs ASE: {bad}"


@pytest.mark.parametrize("nprocs", [1, 3])
def test_graph_level_energy_ensemble(plugin, tmp_path, nprocs):
    """A committee of HydraGNN's GFM PaiNN (graph-level energy: partial sums all-reduced every step
    for every member) twice, in a slab on a 1 x 1 x 3 grid (the top rank holds no atoms): energy,
    forces, virial = the ASE calculator's for the model file to 1e-10, deviations 0."""
    from ase import Atoms
    from hydragnn_ase import HydraGNNCalculator

    import test_lammps_gfm as gfm

    g = golden_dir()
    model = str(tmp_path / "gfm.hgnn")
    p = subprocess.run([os.path.join(ROOT, "target", "release", "hydragnn"), "import-hydragnn",
                        os.path.join(g, "GFM_PAINN_graph2_config.json"),
                        os.path.join(g, "GFM_PAINN_graph2_checkpoint.pk"), "-o", model],
                       env=env(), capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    ens = str(tmp_path / "gfm_ens.model")
    subprocess.run([os.path.join(ROOT, "target", "release", "hydragnn"), "ensemble", model, model, "-o", ens],
                   check=True, capture_output=True)
    pos, z, lengths = gfm._system(14.0)
    atoms = Atoms(numbers=z, positions=pos, cell=np.diag(lengths), pbc=True)
    atoms.calc = HydraGNNCalculator(model, head="branch-0")
    e_ref, f_ref = atoms.get_potential_energy(), atoms.get_forces()
    w = -atoms.get_stress(voigt=False) * atoms.get_volume()
    w_ref = [w[a, b] for a, b in VOIGT_LMP]
    data = str(tmp_path / "slab.data")
    write_data(data, pos, z, lengths, species=(29, 13))
    script = gfm._script(plugin, data, ens, "branch-0", "brick", f"1 1 {nprocs}",
                         extra=["compute hp all pair hydragnn"])
    script = script.replace("pair_style hydragnn branch branch-0",
                            "pair_style hydragnn branch branch-0 uncertainty every 1 file md.out")
    script += 'print "RESULT devi ' + " ".join(f"$(c_hp[{k}]:%.17g)" for k in range(1, 8)) + '"\n'
    _, out = run_lammps(script, str(tmp_path), nprocs, timeout=300)
    assert "ensemble of 2 members" in out
    pe, *pv, vol = results(out)["gfm"]
    d = read_dump(str(tmp_path / "out.dump"))
    f = np.stack([d["fx"], d["fy"], d["fz"]], axis=1)
    errs = {"energy": rel_err(pe, e_ref), "forces": rel_err(f, f_ref),
            "virial": rel_err(np.array(pv) * vol / NKTV2P_METAL, w_ref)}
    assert all(v <= TOL for v in errs.values()), errs
    assert max(abs(v) for v in results(out)["devi"]) <= 1e-12 * np.abs(f_ref).max()


def test_charge_spin_conditioned_ensemble(plugin, tmp_path):
    """`charge Q spin S` reach every member of an ensemble (hgnn_model_set_graph_attr sets them on
    all members; before, the members after member 0 refused to run): the GFM PaiNN conditioned on
    charge and spin, twice, on ethanol over 2 ranks = the ASE calculator for the model file."""
    from ase import Atoms
    from hydragnn_ase import HydraGNNCalculator

    import test_lammps_gfm as gfm

    g = golden_dir()
    exe = os.path.join(ROOT, "target", "release", "hydragnn")
    model = str(tmp_path / "concat.hgnn")
    p = subprocess.run([exe, "import-hydragnn", os.path.join(g, "GFM_PAINN_graph2_concat_config.json"),
                        os.path.join(g, "GFM_PAINN_graph2_concat_checkpoint.pk"), "-o", model],
                       env=env(), capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    ens = str(tmp_path / "concat_ens.model")
    subprocess.run([exe, "ensemble", model, model, "-o", ens], check=True, capture_output=True)
    z = np.load(os.path.join(g, "GFM_PAINN_graph2_concat_ethanol_golden.npz"))
    pos = z["pos"] - z["pos"].mean(axis=0)
    data = str(tmp_path / "ethanol.data")
    gfm._molecule_data(data, pos, z["atomic_numbers"])
    atoms = Atoms(numbers=z["atomic_numbers"], positions=pos, pbc=False)
    atoms.info.update(charge=1.0, spin=3.0)
    atoms.calc = HydraGNNCalculator(model, head="branch-0")
    e_ref, f_ref = atoms.get_potential_energy(), atoms.get_forces()
    script = "\n".join([
        f"plugin load {plugin}", "units metal", "atom_style atomic", "atom_modify map array", "boundary f f f",
        f"read_data {data}", "pair_style hydragnn branch branch-0 charge 1 spin 3 uncertainty every 1",
        f"pair_coeff * * {ens} C O H", "compute hp all pair hydragnn",
        "dump d all custom 1 out.dump id fx fy fz", "dump_modify d sort id format float %.17g",
        "thermo_style custom step pe c_hp[1]", "run 0", 'print "RESULT mol $(pe:%.17g) $(c_hp[1]:%.17g)"']) + "\n"
    _, out = run_lammps(script, str(tmp_path), 2, timeout=300)
    pe, maxf = results(out)["mol"]
    d = read_dump(str(tmp_path / "out.dump"))
    f = np.stack([d["fx"], d["fy"], d["fz"]], axis=1)
    assert max(rel_err(pe, e_ref), rel_err(f, f_ref)) <= TOL
    assert maxf <= 1e-12 * np.abs(f_ref).max()
