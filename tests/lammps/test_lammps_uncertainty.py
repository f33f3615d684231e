"""`pair_style hydragnn ... uncertainty every N [file F] [atomic]` in MD runs: the model_devi file
read the way DP-GEN reads it (numpy.loadtxt, `#` header, whitespace columns in DeePMD-kit's order,
one line per multiple of N), `drive first` moves the atoms exactly as member 0 alone does, `fix
halt` on the deviation (c_ID[1]) stops a hot melt before its last step, and bad input stops with
a clear error (no hang on 2 ranks). The members are random-weight models (the one trained metals
potential in potentials/ has no second member): their deviation at a perfect fcc crystal is 0 by
symmetry (every force is 0) and grows as the melt breaks it."""

import numpy as np
import pytest

from lammps_util import read_dump, run_lammps
from test_lammps_ensemble import make_ensemble

DEVI_COLUMNS = ["step", "max_devi_v", "min_devi_v", "avg_devi_v", "max_devi_f", "min_devi_f", "avg_devi_f"]


@pytest.fixture(scope="module")
def pair(plugin, tmp_path_factory):
    """Two random SchNet members: (member files, ensemble file)."""
    return make_ensemble(str(tmp_path_factory.mktemp("ens2")), ["s1", "s2"])


def _md(plugin, model, style, steps, extra=(), temp=6000, dt=0.0005, alloy=False, after=()):
    """A 3x3x3 fcc Cu (optionally Cu/Ni) crystal given `temp` K and run `steps` NVE steps."""
    return "\n".join([
        f"plugin load {plugin}", "units metal", "atom_modify map array", "lattice fcc 3.61",
        "region box block 0 3 0 3 0 3", "create_box 2 box", "create_atoms 1 box",
        *(["set type 1 type/fraction 2 0.3 5"] if alloy else []),
        "mass 1 63.546", "mass 2 58.6934",
        f"velocity all create {temp} 1 loop geom", f"timestep {dt}", f"pair_style hydragnn {style}",
        f"pair_coeff * * {model} Cu Ni", "compute hp all pair hydragnn", "variable devi equal c_hp[1]",
        "fix nve all nve", *extra, f"run {steps}", *after]) + "\n"


@pytest.mark.parametrize("nprocs,atomic", [(1, False), (2, True)])
def test_model_devi_file_as_dpgen_reads_it(plugin, pair, tmp_path, nprocs, atomic):
    _, ens = pair
    style = f"drive first uncertainty every 5 file devi/md.out{' atomic' if atomic else ''}"
    (tmp_path / "devi").mkdir()
    extra = ["thermo 3", "thermo_style custom step pe c_hp[1] c_hp[3] c_hp[7]"]
    _, out = run_lammps(_md(plugin, ens, style, 23, extra, temp=300, dt=0.0002, alloy=True), str(tmp_path),
                        nprocs, timeout=300)
    path = tmp_path / "devi" / "md.out"
    header = path.read_text().splitlines()[0]
    assert header.startswith("#") and header[1:].split()[:7] == DEVI_COLUMNS, header
    rows = np.loadtxt(str(path), ndmin=2)  # DP-GEN's reader
    # steps 0, 5, ..., 20 of a 23-step run; thermo every 3 steps adds no line
    assert rows[:, 0].tolist() == [0, 5, 10, 15, 20]
    assert rows.shape[1] == 7 + (108 if atomic else 0)
    v, f = rows[:, 1:4], rows[:, 4:7]
    assert np.all(v[:, 0] >= v[:, 2]) and np.all(v[:, 2] >= v[:, 1]), "max >= avg >= min (virial)"
    assert np.all(f[:, 0] >= f[:, 2]) and np.all(f[:, 2] >= f[:, 1]), "max >= avg >= min (force)"
    assert np.all(f[:, 0] > 0)
    if atomic:
        per_atom = rows[:, 7:]
        assert np.allclose(per_atom.max(axis=1), f[:, 0], rtol=1e-14, atol=0)
        assert np.allclose(per_atom.min(axis=1), f[:, 1], rtol=1e-14, atol=0)
        assert np.allclose(per_atom.mean(axis=1), f[:, 2], rtol=1e-12, atol=0)


def test_drive_first_moves_atoms_as_member_0_alone(plugin, pair, tmp_path):
    """With drive first, the trajectory (deviation every 4 steps, member 0 alone on the others)
    is member 0's model file's; with drive mean it is not."""
    members, ens = pair
    dump = ["write_dump all custom out.dump id x y z modify sort id format float %.17g"]
    pos = {}
    for name, model, style in [("member0", members[0], ""), ("first", ens, "drive first uncertainty every 4"),
                               ("mean", ens, "uncertainty every 4")]:
        cwd = tmp_path / name
        cwd.mkdir()
        run_lammps(_md(plugin, model, style, 10, temp=1000, dt=0.0002, alloy=True, after=dump), str(cwd), 2,
                   timeout=300)
        d = read_dump(str(cwd / "out.dump"))
        pos[name] = np.stack([d["x"], d["y"], d["z"]], axis=1)
    assert np.max(np.abs(pos["first"] - pos["member0"])) <= 1e-9
    assert np.max(np.abs(pos["mean"] - pos["member0"])) > 1e-6


def test_fix_halt_stops_hot_melt(plugin, pair, tmp_path):
    """A Cu crystal at 6000 K: the deviation starts at 0 (perfect crystal) and crosses 20 eV/Å
    within a few dozen steps; fix halt (every 5 steps, the model_devi file's period) stops the
    200-step run at the first multiple of 5 whose max_devi_f exceeds it."""
    _, ens = pair
    extra = ["thermo 5", "thermo_style custom step temp pe v_devi",
             "fix stop all halt 5 v_devi > 20.0 error soft"]
    _, out = run_lammps(_md(plugin, ens, "uncertainty every 5 file md.out", 200, extra), str(tmp_path), 2,
                        timeout=300)
    rows = np.loadtxt(str(tmp_path / "md.out"), ndmin=2)
    assert rows[0, 0] == 0 and rows[0, 4] < 1e-10, "perfect crystal: every member's forces are 0"
    over = rows[rows[:, 4] > 20.0]
    assert len(over) == 1, rows[:, [0, 4]]
    step = int(over[0, 0])
    assert 0 < step < 200
    assert f"Fix halt condition for fix-id stop met on step {step} with value" in out, out[-3000:]
    assert rows[-1, 0] == step, "the run stopped there"
    assert f"for {step} steps with 108 atoms" in out


BAD = [
    ("uncertainty every 0", "'uncertainty every N' needs a positive integer N"),
    ("uncertainty every five", "'uncertainty every N' needs a positive integer N (steps between model "
                               "deviation outputs), got 'five'"),
    ("uncertainty every", "'uncertainty every' needs N"),
    ("uncertainty 10", "expected 'uncertainty every N [file PATH] [atomic]', got 'uncertainty 10'"),
    ("uncertainty every 5 file", "'uncertainty ... file' needs a file name"),
    ("uncertainty every 5 file /nonexistent-dir/md.out", "cannot open the model deviation file "
                                                         "'/nonexistent-dir/md.out' for writing"),
    ("drive sideways", "drive must be mean or first, got 'sideways'"),
]


@pytest.mark.parametrize("nprocs", [1, 2])
@pytest.mark.parametrize("style,message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_refused_clearly(plugin, pair, tmp_path, nprocs, style, message):
    _, ens = pair
    rc, out = run_lammps(_md(plugin, ens, style, 0), str(tmp_path), nprocs, check=False, timeout=120)
    assert rc != 0, out[-3000:]
    assert message in out, out[-3000:]


@pytest.mark.parametrize("nprocs", [1, 2])
def test_uncertainty_on_a_single_model_is_refused(plugin, pair, tmp_path, nprocs):
    members, _ = pair
    rc, out = run_lammps(_md(plugin, members[0], "uncertainty every 10", 0), str(tmp_path), nprocs, check=False,
                         timeout=120)
    assert rc != 0, out[-3000:]
    assert "'uncertainty every 10' needs an ensemble file" in out and "is a single model" in out, out[-3000:]


def test_example_input_runs(plugin, pair, tmp_path):
    """examples/lammps/in.cu_uncertainty for 20 steps on 2 ranks (random-weight stand-in members):
    model_devi.out has a line per 5 steps, the dump the per-atom deviation of each frame."""
    import os
    import subprocess

    from lammps_util import ROOT, env, lmp_command

    _, ens = pair
    example = os.path.join(ROOT, "examples", "lammps", "in.cu_uncertainty")
    cmd = lmp_command(2) + ["-in", example, "-var", "model", ens, "-var", "plugin", plugin, "-var", "steps", "20",
                            "-var", "every", "5", "-var", "T", "300", "-var", "threshold", "1e9", "-log",
                            "log.lammps", "-nocite"]
    p = subprocess.run(cmd, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode == 0 and "ERROR" not in out, out[-4000:]
    rows = np.loadtxt(str(tmp_path / "model_devi.out"), ndmin=2)
    assert rows[:, 0].tolist() == [0, 5, 10, 15, 20]
    frames = (tmp_path / "devi.dump").read_text().split("ITEM: TIMESTEP")[1:]
    assert len(frames) == 5
    last = frames[-1].splitlines()
    k = next(i for i, line in enumerate(last) if line.startswith("ITEM: ATOMS"))
    assert last[k].split()[-1] == "f_devi_f"
    devi = np.array([float(line.split()[-1]) for line in last[k + 1:] if line.strip()])
    assert len(devi) == 108
    assert abs(devi.max() - rows[-1, 4]) <= 1e-6 * rows[-1, 4]
