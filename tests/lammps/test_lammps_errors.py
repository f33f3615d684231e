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
    ("pair_style hydragnn threads 0", "threads 0: out of range: it must be in 1..=1024"),
    # issue 13: >= 2048 crashed after success, 10^6 ran out of memory, 2^40 was truncated
    ("pair_style hydragnn threads 1025", "number of threads 1025 is out of range: it must be in 1..=1024"),
    ("pair_style hydragnn threads 5000", "threads 5000: invalid input: number of threads 5000 is out of range"),
    ("pair_style hydragnn threads 1000000", "number of threads 1000000 is out of range"),
    ("pair_style hydragnn threads 1099511627776", "threads 1099511627776: out of range: it must be in 1..=1024"),
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


@pytest.mark.parametrize("nprocs", [1, 2])
def test_overlapping_atoms_are_named_by_lammps_atom_ids(plugin, models, tmp_path, nprocs):
    """Issue 13: two atoms at the same position were reported by engine graph rows ("atoms 0
    and 14"), not by the atom IDs the user knows. Atom 109 is placed on atom 37."""
    import numpy as np

    from lammps_util import fcc, write_data

    pos, z, lengths = fcc(3.61, (3, 3, 3), np.random.default_rng(5), jitter=0.05)
    pos = np.vstack([pos, pos[36]])
    z = np.append(z, 29)
    write_data(str(tmp_path / "overlap.data"), pos, z, lengths)
    script = (f"plugin load {plugin}\nunits metal\natom_style atomic\n"
              + ("processors 2 1 1\n" if nprocs == 2 else "")
              + "read_data overlap.data\n"
              f"pair_style hydragnn\npair_coeff * * {models['schnet2']} Cu Ni\nrun 0\n")
    out = _fails(script, tmp_path, nprocs, timeout=60)
    assert "atoms 37 and 109 (atom IDs) are at the same position" in out, out[-3000:]


# Ethanol (ASE's CH3CH2OH geometry, Å) and its bonds (pairs closer than 1.6 Å).
def _ethanol():
    from ase.build import molecule

    m = molecule("CH3CH2OH")
    m.positions += 10.0
    d = m.get_all_distances()
    bonds = [(i, j) for i in range(len(m)) for j in range(i + 1, len(m)) if d[i, j] < 1.6]
    return m, bonds


def _ethanol_data(path, molecular):
    m, bonds = _ethanol()
    types = {1: 1, 6: 2, 8: 3}
    with open(path, "w") as f:
        f.write(f"ethanol\n\n{len(m)} atoms\n3 atom types\n")
        if molecular:
            f.write(f"{len(bonds)} bonds\n1 bond types\n")
        f.write("\n0 20 xlo xhi\n0 20 ylo yhi\n0 20 zlo zhi\n\nMasses\n\n1 1.008\n2 12.011\n3 15.999\n")
        f.write(f"\nAtoms # {'molecular' if molecular else 'atomic'}\n\n")
        for i, (p, zi) in enumerate(zip(m.positions, m.numbers)):
            mol = "1 " if molecular else ""
            f.write(f"{i + 1} {mol}{types[int(zi)]} {p[0]:.12f} {p[1]:.12f} {p[2]:.12f}\n")
        if molecular:
            f.write("\nBonds\n\n")
            for k, (i, j) in enumerate(bonds):
                f.write(f"{k + 1} 1 {i + 1} {j + 1}\n")
    return len(bonds)


def _ethanol_script(plugin, model, molecular, special=""):
    style = "molecular" if molecular else "atomic"
    bond = "bond_style zero\nbond_coeff *\n" if molecular else ""
    data = "ethanol_mol.data" if molecular else "ethanol_atomic.data"
    return (f"plugin load {plugin}\nunits metal\natom_style {style}\n{special}\nread_data {data}\n{bond}"
            f"pair_style hydragnn\npair_coeff * * {model} H C O\nthermo_style custom step pe\nrun 0\n"
            'print "RESULT pe $(pe:%.12f)"\n')


def test_molecular_atom_style_with_default_special_bonds_is_refused(plugin, models, tmp_path):
    """Issue 13: with bonds and the default special_bonds (lj/coul 0 0 0) LAMMPS leaves bonded
    pairs out of the neighbour list, and ethanol's energy was wrong (-300.08 instead of
    -310.01 eV with the probe's model). Refused with the fix; with special_bonds lj/coul 1 1 1
    (or any factors not both 0) the energy is the atomic-style one."""
    from lammps_util import results

    assert _ethanol_data(str(tmp_path / "ethanol_mol.data"), True) == 8
    _ethanol_data(str(tmp_path / "ethanol_atomic.data"), False)
    _, out = run_lammps(_ethanol_script(plugin, models["mol3"], False), str(tmp_path), name="in.atomic")
    ref = results(out)["pe"][0]
    for special in ("", "special_bonds lj/coul 0.0 0.0 0.5", "special_bonds lj 0.0 1.0 1.0 coul 0.0 1.0 1.0"):
        out = _fails(_ethanol_script(plugin, models["mol3"], True, special), tmp_path, timeout=60)
        assert "use 'special_bonds lj/coul 1.0 1.0 1.0'" in out and "removes bonded" in out, out[-3000:]
    for special in ("special_bonds lj/coul 1.0 1.0 1.0", "special_bonds lj 0.0 0.5 1.0 coul 1.0 1.0 1.0"):
        _, out = run_lammps(_ethanol_script(plugin, models["mol3"], True, special), str(tmp_path), name="in.mol")
        pe = results(out)["pe"][0]
        assert abs(pe - ref) < 1e-9 * max(1.0, abs(ref)), (special, pe, ref)
