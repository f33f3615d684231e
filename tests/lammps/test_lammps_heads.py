"""Every head through `pair_style hydragnn`: graph heads as the pair style's global vector
(`compute ID all pair hydragnn` -> c_ID[k], the k <-> head mapping in the log), pooled across
ranks so that 1 and 2 ranks agree, and equal to the ASE calculator's values to 1e-10 relative
(float64, both evaluation paths); node heads per atom through `fix pair`; and the log line that
names the branch a multi-branch model uses when none is named."""

import os

import numpy as np
import pytest

from lammps_util import ROOT, fcc, lammps_cell, read_dump, rel_err, results, run_lammps, write_data

TOL = 1e-10
JOINT = os.path.join(ROOT, "potentials", "joint_schnet.model")


def _molecules():
    """Two waters and an ammonia spread along x (Å): 2 ranks split them."""
    water = np.array([[0.0, 0.0, 0.119], [0.0, 0.763, -0.477], [0.0, -0.763, -0.477]])
    nh3 = np.array([[0.0, 0.0, 0.117], [0.0, 0.939, -0.273], [0.813, -0.470, -0.273], [-0.813, -0.470, -0.273]])
    pos = np.concatenate([water + [-6.0, 0.3, 0.0], nh3 + [-0.8, -0.2, 0.4], water + [5.5, 0.0, -0.3]])
    z = np.array([8, 1, 1, 7, 1, 1, 1, 8, 1, 1], dtype=np.int32)
    return pos, z


def _molecule_data(path, pos, z):
    types = {8: 1, 7: 2, 1: 3}
    with open(path, "w") as f:
        f.write(f"molecules\n\n{len(z)} atoms\n3 atom types\n\n")
        for d in "xyz":
            f.write(f"-12 12 {d}lo {d}hi\n")
        f.write("\nMasses\n\n1 15.999\n2 14.007\n3 1.008\n\nAtoms # atomic\n\n")
        for i, (p, zi) in enumerate(zip(pos, z)):
            f.write(f"{i + 1} {types[int(zi)]} {p[0]:.17g} {p[1]:.17g} {p[2]:.17g}\n")


def _script(plugin, data, model, elements, style_args, boundary="f f f", extra=()):
    return "\n".join([
        f"plugin load {plugin}", "units metal", "atom_style atomic", "atom_modify map array", f"boundary {boundary}",
        f"read_data {data}", f"pair_style hydragnn {style_args}", f"pair_coeff * * {model} {elements}",
        "compute hp all pair hydragnn", *extra, "thermo_style custom step pe", "run 0",
    ]) + "\n"


@pytest.mark.parametrize("compress", [True, False], ids=["fast", "exact"])
def test_gap_equals_ase_on_1_and_2_ranks(plugin, tmp_path, compress):
    from ase import Atoms
    from hydragnn_ase import HydraGNNCalculator

    pos, z = _molecules()
    atoms = Atoms(numbers=z, positions=pos, pbc=False)
    atoms.calc = HydraGNNCalculator(JOINT, head="molecules", compress=compress)
    gap = atoms.calc.get_property("gap", atoms)
    data = str(tmp_path / "mol.data")
    _molecule_data(data, pos, z)
    script = _script(plugin, data, JOINT, "O N H", f"branch molecules compress {'yes' if compress else 'no'}")
    script += 'print "RESULT gap $(c_hp[1]:%.17g) $(pe:%.17g)"\n'
    for nprocs in (1, 2):
        cwd = tmp_path / f"np{nprocs}"
        cwd.mkdir()
        _, out = run_lammps(script, str(cwd), nprocs)
        log = (cwd / "in.test.log").read_text()
        assert "pair_style hydragnn: using branch 'molecules'" in log
        assert "as c_ID[k] of 'compute ID all pair hydragnn': [1] gap" in log
        g, pe = results(out)["gap"]
        assert rel_err(g, gap) <= TOL, f"{nprocs} ranks: gap {g!r} vs ASE {gap!r}"
        assert rel_err(pe, atoms.get_potential_energy()) <= TOL


def test_unnamed_branch_is_logged(plugin, tmp_path):
    pos, z = _molecules()
    data = str(tmp_path / "mol.data")
    _molecule_data(data, pos, z)
    _, out = run_lammps(_script(plugin, data, JOINT, "O N H", ""), str(tmp_path), 2)
    log = (tmp_path / "in.test.log").read_text()
    line = ("pair_style hydragnn: the model has 2 branches (metals, molecules) and none was named: using branch "
            "'metals' (choose another with pair_style hydragnn branch NAME)")
    assert line in log
    assert log.count(line) == 1, "rank 0 alone writes it"
    assert "graph heads of branch" not in log  # metals has the energy head only


@pytest.mark.parametrize("compress", [True, False], ids=["fast", "exact"])
def test_heads_of_every_kind_equal_ase(plugin, tmp_path, compress):
    """Mean, sum (2 values), max and pool-first graph heads; node heads of 1 and 2 values per atom
    (fix pair, with its trigger), on a periodic Cu/Ni cell."""
    import subprocess

    from ase import Atoms
    from hydragnn_ase import HydraGNNCalculator
    from lammps_util import RANDOM_MODEL, env

    model = str(tmp_path / "heads.model")
    subprocess.run([RANDOM_MODEL, model, "SchNet", "Cu,Ni", "4.0", "2", "float64", "5", "heads"], check=True,
                   env=env())
    rng = np.random.default_rng(3)
    pos, z, lengths = fcc(3.6, (3, 3, 3), rng, jitter=0.08)
    data = str(tmp_path / "cuni.data")
    write_data(data, pos, z, lengths)
    atoms = Atoms(numbers=z, positions=pos, cell=lammps_cell(lengths), pbc=True)
    atoms.calc = HydraGNNCalculator(model, compress=compress)
    atoms.get_potential_energy()
    ref = atoms.calc.results
    want = [ref["gap"], *ref["total"], ref["top"], ref["pooled"]]

    extra = ["fix fp all pair 1 hydragnn charges 1 spins 1",
             "dump d all custom 1 out.dump id f_fp[1] f_fp[2] f_fp[3]", "dump_modify d sort id format float %.17g"]
    script = _script(plugin, data, model, "Cu Ni", f"compress {'yes' if compress else 'no'}", "p p p", extra)
    script += 'print "RESULT heads ' + " ".join(f"$(c_hp[{k}]:%.17g)" for k in range(1, 6)) + '"\n'
    for nprocs in (1, 2):
        cwd = tmp_path / f"np{nprocs}"
        cwd.mkdir()
        _, out = run_lammps(script, str(cwd), nprocs)
        assert "[1] gap [2] total[1] [3] total[2] [4] top [5] pooled" in out
        got = results(out)["heads"]
        for k, (g, w) in enumerate(zip(got, want)):
            assert rel_err(g, w) <= TOL, f"{nprocs} ranks, c_hp[{k + 1}]: {g!r} vs ASE {w!r}"
        d = read_dump(str(cwd / "out.dump"))
        assert rel_err(d["f_fp[1]"], ref["charges"]) <= TOL
        assert rel_err(np.stack([d["f_fp[2]"], d["f_fp[3]"]], axis=1), ref["spins"]) <= TOL
