"""The same model file and configuration through the ASE calculator and through `pair_style
hydragnn` (1 and 3 ranks): energy, forces and stress agree to 1e-10 relative in float64, for
SchNet and PaiNN, in a triclinic Cu/Ni cell, on both evaluation paths (`compress yes` = the
calculator's compress=True, `compress no` = compress=False)."""

import numpy as np
import pytest

from lammps_util import NKTV2P_METAL, fcc, lammps_cell, read_dump, results, rel_err, run_lammps, write_data

TOL = 1e-10
VOIGT_LMP = [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]


@pytest.mark.parametrize("compress", [True, False], ids=["fast", "exact"])
@pytest.mark.parametrize("name", ["schnet2", "painn3"])
def test_lammps_equals_ase(plugin, models, name, compress, tmp_path):
    from ase import Atoms
    from hydragnn_ase import HydraGNNCalculator

    rng = np.random.default_rng(42)
    pos, z, lengths = fcc(3.6, (3, 3, 3), rng, jitter=0.08)
    tilt = (0.9, -0.5, 0.4)
    cell = lammps_cell(lengths, tilt)
    # fractional coordinates of the orthogonal box mapped into the tilted cell
    pos = (pos / lengths) @ cell
    data = str(tmp_path / "cuni.data")
    write_data(data, pos, z, lengths, tilt=tilt)
    script = "\n".join([
        f"plugin load {plugin}", "units metal", "atom_style atomic", "atom_modify map array", "boundary p p p",
        f"read_data {data}", f"pair_style hydragnn compress {'yes' if compress else 'no'}", f"pair_coeff * * {models[name]} Cu Ni",
        "compute pv all pressure NULL virial", "thermo_style custom step pe c_pv[*] vol",
        "dump d all custom 1 out.dump id fx fy fz", "dump_modify d sort id format float %.17g", "run 0",
        'print "RESULT cuni $(pe:%.17g) $(c_pv[1]:%.17g) $(c_pv[2]:%.17g) $(c_pv[3]:%.17g) '
        '$(c_pv[4]:%.17g) $(c_pv[5]:%.17g) $(c_pv[6]:%.17g) $(vol:%.17g)"']) + "\n"

    atoms = Atoms(numbers=z, positions=pos, cell=cell, pbc=True)
    atoms.calc = HydraGNNCalculator(models[name], dtype="float64", compress=compress)
    path = atoms.calc.path_info["path"]
    e_ase, f_ase = atoms.get_potential_energy(), atoms.get_forces()
    w_ase = -atoms.get_stress(voigt=False) * atoms.get_volume()

    for nprocs in (1, 3):
        cwd = tmp_path / f"np{nprocs}"
        cwd.mkdir()
        _, out = run_lammps(script, str(cwd), nprocs)
        assert f"pair_style hydragnn: {path} path" in out, f"LAMMPS did not run the {path} path:\n{out[-3000:]}"
        pe, *pv, vol = results(out)["cuni"]
        d = read_dump(str(cwd / "out.dump"))
        f = np.stack([d["fx"], d["fy"], d["fz"]], axis=1)
        w = np.array(pv) * vol / NKTV2P_METAL
        assert abs(vol - atoms.get_volume()) <= 1e-9 * vol
        errs = {"energy": rel_err(pe, e_ase), "forces": rel_err(f, f_ase),
                "stress": rel_err(w, [w_ase[a, b] for a, b in VOIGT_LMP])}
        assert all(v <= TOL for v in errs.values()), f"{name} on {nprocs} ranks vs ASE: {errs}"
