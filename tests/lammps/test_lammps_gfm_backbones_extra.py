"""HydraGNN's CGCNN, GAT, GIN, SAGE and MFC as drop-in potentials in `pair_style hydragnn`: the
upstream goldens' state dicts (tests/hydragnn_golden_extra/GFM_<NAME>_node_state_dict.npz), imported
with `hydragnn import-hydragnn CONFIG STATE_DICT.npz`, run in LAMMPS on 1, 2 (brick) and 3 (tiled) ranks and give the energy,
forces and virial of the ASE calculator (the engine's whole-structure path) to 1e-10 relative in
float64, on the golden Al5Cu7 cell repeated 2 x 2 x 1 (its lattice vectors are longer than the
cutoff: GAT's dropping of an atom's edges to its own images does not arise) and on ethanol in an
open box. GIN, SAGE and MFC read only who is within the cutoff: their forces and virial are
exactly zero in both. (Agreement with HydraGNN itself: mlip/tests/hydragnn_backbones.rs.)
The system helpers and the LAMMPS script are those of test_lammps_gfm_backbones.py."""

import os
import subprocess

import numpy as np
import pytest

from lammps_util import NKTV2P_METAL, ROOT, env, read_dump, rel_err, results, run_lammps, write_data
from test_lammps_gfm_backbones import TOL, VOIGT, _cual, _ethanol, _ethanol_data, _script

EXTRA = os.path.join(ROOT, "tests", "hydragnn_golden_extra")
NAMES = ["CGCNN_node", "GAT_node", "GIN_node", "SAGE_node", "MFC_node"]
ZERO_FORCES = {"GIN_node", "SAGE_node", "MFC_node"}


@pytest.fixture(scope="module")
def imported(plugin, tmp_path_factory):
    """name -> (model file, the importer's output), every backbone imported through the CLI."""
    if not os.environ.get("HYDRAGNN_LAMMPS_NO_BUILD"):
        subprocess.run(["cargo", "build", "--release", "-p", "hydragnn-train", "--bin", "hydragnn"], cwd=ROOT,
                       check=True, env={**env(), "LIBTORCH_USE_PYTORCH": "1"})
    d = tmp_path_factory.mktemp("gfm_backbones_extra")
    out = {}
    for name in NAMES:
        path = str(d / f"{name}.hgnn")
        p = subprocess.run([os.path.join(ROOT, "target", "release", "hydragnn"), "import-hydragnn",
                            os.path.join(EXTRA, f"GFM_{name}_config.json"),
                            os.path.join(EXTRA, f"GFM_{name}_state_dict.npz"), "-o", path],
                           env=env(), capture_output=True, text=True)
        assert p.returncode == 0, f"{name}: {p.stdout}{p.stderr}"
        out[name] = (path, p.stdout + p.stderr)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_non_edge_backbones_are_imported_with_a_zero_force_warning(imported, name):
    said = "forces and the virial are identically zero" in imported[name][1]
    assert said == (name in ZERO_FORCES), imported[name][1]


@pytest.mark.parametrize("system", ["cual", "ethanol"])
@pytest.mark.parametrize("name", NAMES)
def test_imported_backbone_in_lammps_equals_ase_on_1_to_3_ranks(plugin, imported, name, system, tmp_path):
    from ase import Atoms
    from hydragnn_ase import HydraGNNCalculator

    model = imported[name][0]
    data = str(tmp_path / f"{system}.data")
    if system == "cual":
        pos, z, lengths = _cual()
        write_data(data, pos, z, lengths, species=(29, 13))
        atoms = Atoms(numbers=z, positions=pos, cell=np.diag(lengths), pbc=True)
    else:
        pos, z = _ethanol()
        _ethanol_data(data, pos, z)
        atoms = Atoms(numbers=z, positions=pos, pbc=False)
    atoms.calc = HydraGNNCalculator(model)
    e_ref, f_ref = atoms.get_potential_energy(), atoms.get_forces()
    if name in ZERO_FORCES:
        assert np.abs(f_ref).max() == 0.0, f"{name}: forces must be exactly zero"
    else:
        assert np.abs(f_ref).max() > 1e-6, f"{name}: forces vanish"
    w_ref = None
    if system == "cual":
        w = -atoms.get_stress(voigt=False) * atoms.get_volume()
        w_ref = [w[i, j] for i, j in VOIGT]
    for nprocs, comm_style in ((1, "brick"), (2, "brick"), (3, "tiled")):
        cwd = tmp_path / f"{nprocs}_{comm_style}"
        cwd.mkdir()
        _, out = run_lammps(_script(plugin, data, model, system, None, comm_style), str(cwd), nprocs)
        pe, *pv, vol = results(out)["gfm"]
        d = read_dump(str(cwd / "out.dump"))
        f = np.stack([d["fx"], d["fy"], d["fz"]], axis=1)
        errs = {"energy": rel_err(pe, e_ref), "forces": rel_err(f, f_ref)}
        if w_ref is not None:
            errs["virial"] = rel_err(np.array(pv) * vol / NKTV2P_METAL, w_ref)
        print(f"{name} {system} {nprocs} ranks ({comm_style}): " + ", ".join(f"{k} {v:.1e}" for k, v in errs.items()))
        assert all(v <= TOL for v in errs.values()), f"{name} on {nprocs} ranks ({comm_style}): {errs}"
        if name in ZERO_FORCES:
            assert np.abs(f).max() == 0.0, f"{name}: LAMMPS forces must be exactly zero"
