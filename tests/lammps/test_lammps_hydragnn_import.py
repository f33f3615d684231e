"""Models trained by HydraGNN, imported with `hydragnn import-hydragnn` (../shared/hydragnn_golden:
a PaiNN and an EGNN trained on Lennard-Jones argon), in `pair_style hydragnn` on their own radius
graphs: LAMMPS on 2 ranks gives the same energy, forces and virial as on 1, and as the ASE
calculator, to 1e-10 relative in float64. (Their agreement with HydraGNN itself on its graph is
the Rust golden tests' job: mlip/capi/tests/hydragnn_golden.rs.)"""

import os
import subprocess

import numpy as np
import pytest

from lammps_util import NKTV2P_METAL, ROOT, env, read_dump, results, rel_err, run_lammps, write_data, golden_dir

TOL = 1e-10
VOIGT = [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]


@pytest.fixture(scope="module")
def imported(plugin, tmp_path_factory):
    """The golden checkpoints imported through the CLI, argon = HydraGNN's x = 1.0."""
    if not os.environ.get("HYDRAGNN_LAMMPS_NO_BUILD"):
        subprocess.run(["cargo", "build", "--release", "-p", "hydragnn-train", "--bin", "hydragnn"], cwd=ROOT,
                       check=True, env={**env(), "LIBTORCH_USE_PYTORCH": "1"})
    g, d = golden_dir(), tmp_path_factory.mktemp("imported")
    out = {}
    for m in ("PAINN", "EGNN"):
        path = str(d / f"{m}.hgnn")
        p = subprocess.run([os.path.join(ROOT, "target", "release", "hydragnn"), "import-hydragnn",
                            os.path.join(g, f"LJ_{m}_config.json"), os.path.join(g, f"LJ_{m}_checkpoint.pk"),
                            "-o", path, "--species", "Ar=1.0"], env=env(), capture_output=True, text=True)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "max_neighbours = 5" in p.stderr, p.stderr  # the truncation warning
        out[m] = path
    return out


def _system():
    """The golden 27-atom argon cell doubled along x (54 atoms, 22.8 x 11.4 x 11.4 Å), moved a little."""
    z = np.load(os.path.join(golden_dir(), "LJ_PAINN_golden.npz"))
    pos, cell = z["pos"], z["cell"]
    pos = np.concatenate([pos, pos + cell[0]])
    rng = np.random.default_rng(6)
    pos = pos + rng.uniform(-0.05, 0.05, size=pos.shape)
    lengths = np.array([2 * cell[0, 0], cell[1, 1], cell[2, 2]])
    return np.mod(pos, lengths), lengths


@pytest.mark.parametrize("model", ["PAINN", "EGNN"])
def test_imported_model_in_lammps_1_and_2_ranks_equals_ase(plugin, imported, model, tmp_path):
    from ase import Atoms
    from hydragnn_ase import HydraGNNCalculator

    pos, lengths = _system()
    data = str(tmp_path / "ar.data")
    write_data(data, pos, np.full(len(pos), 18), lengths, species=(18,))
    script = "\n".join([
        f"plugin load {plugin}", "units metal", "atom_style atomic", "atom_modify map array", "boundary p p p",
        f"read_data {data}", "mass 1 39.948", "pair_style hydragnn", f"pair_coeff * * {imported[model]} Ar",
        "compute pv all pressure NULL virial", "thermo_style custom step pe c_pv[*] vol",
        "dump d all custom 1 out.dump id x y z fx fy fz", "dump_modify d sort id format float %.17g",
        "run 0",
        'print "RESULT ar $(pe:%.17g) $(c_pv[1]:%.17g) $(c_pv[2]:%.17g) $(c_pv[3]:%.17g) '
        '$(c_pv[4]:%.17g) $(c_pv[5]:%.17g) $(c_pv[6]:%.17g) $(vol:%.17g)"']) + "\n"

    atoms = Atoms(numbers=np.full(len(pos), 18), positions=pos, cell=np.diag(lengths), pbc=True)
    atoms.calc = HydraGNNCalculator(imported[model])
    e_ase, f_ase, s_ase = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress(voigt=False)
    w_ase = -s_ase * atoms.get_volume()

    runs = {}
    for nprocs in (1, 2):
        cwd = tmp_path / f"np{nprocs}"
        cwd.mkdir()
        _, out = run_lammps(script, str(cwd), nprocs)
        pe, *pv, vol = results(out)["ar"]
        d = read_dump(str(cwd / "out.dump"))
        f = np.stack([d["fx"], d["fy"], d["fz"]], axis=1)
        w = np.array(pv) * vol / NKTV2P_METAL
        errs = {"energy": rel_err(pe, e_ase), "forces": rel_err(f, f_ase),
                "virial": rel_err(w, [w_ase[a, b] for a, b in VOIGT])}
        assert all(v <= TOL for v in errs.values()), f"{model} on {nprocs} ranks vs ASE: {errs}"
        runs[nprocs] = (pe, f)
    assert rel_err(runs[2][0], runs[1][0]) <= TOL and rel_err(runs[2][1], runs[1][1]) <= TOL
