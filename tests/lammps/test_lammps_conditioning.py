"""Charge/spin conditioning modes `film` and `fuse_pool` in `pair_style hydragnn ... charge Q spin S`:
the GFM PaiNN with a graph-level energy head and two branches, conditioned by each mode, imported
through the CLI (`hydragnn import-hydragnn CONFIG STATE_DICT.npz -o MODEL`). `film` scales and
shifts every atom's features after every layer (each rank for its own atoms, ghosts exchanged);
`fuse_pool` maps the pooled feature vector, which under spatial decomposition is the vector
all-reduced over the ranks. On 1 and 2 ranks LAMMPS's energy, forces and virial equal the ASE
calculator's (the engine's whole-structure path, charge and spin from atoms.info) to 1e-10, for
each branch, on the periodic Al5Cu7 x 4 cell (48 atoms). The same for HydraGNN's MACE conditioned
by concat_node and film (the goldens GFM_MACE_graph2_concat / _film): MACE conditions every atom's
scalar features after the embedding and after each layer.

The checkpoint is HydraGNN's own when the goldens GFM_PAINN_graph2_film / _fuse_pool are in
tests/hydragnn_golden_extra; until then the GFM_PAINN_graph2 state dict of ../shared with
conditioning weights drawn at random (written as a .npz, the CLI's NumPy input). Agreement with
HydraGNN itself: mlip/tests/hydragnn_conditioning.rs, mlip/capi/tests/hydragnn_conditioning.rs."""

import json
import os
import subprocess

import numpy as np
import pytest

from lammps_util import NKTV2P_METAL, ROOT, env, golden_dir, read_dump, rel_err, results, run_lammps, write_data
from test_lammps_gfm import BRANCHES, TOL, VOIGT, _script, _system

EXTRA = os.path.join(ROOT, "tests", "hydragnn_golden_extra")
CHARGE, SPIN = -1.0, 2.0
SHAPES = {"film": ("graph_conditioner", [(16, 2), (32, 16)]),
          "fuse_pool": ("graph_pool_projector", [(16, 18), (16, 16)])}
# HydraGNN's conditioned MACE goldens (graph head, two branches): golden key -> mode
MACE_MODES = {"concat": "concat_node", "film": "film"}


def _checkpoint(mode, d):
    """(config, state dict .npz) of the film / fuse_pool GFM PaiNN: HydraGNN's golden when there
    is one, else GFM_PAINN_graph2 with random conditioning weights."""
    name = f"GFM_PAINN_graph2_{mode}"
    cfg, sd = os.path.join(EXTRA, f"{name}_config.json"), os.path.join(EXTRA, f"{name}_state_dict.npz")
    if os.path.exists(cfg) and os.path.exists(sd):
        return cfg, sd
    g = golden_dir()
    with open(os.path.join(g, "GFM_PAINN_graph2_config.json")) as f:
        config = json.load(f)
    arch = config["NeuralNetwork"]["Architecture"]
    arch["use_graph_attr_conditioning"] = True
    arch["graph_attr_conditioning_mode"] = mode
    state = dict(np.load(os.path.join(g, "GFM_PAINN_graph2_state_dict.npz")))
    key, shapes = SHAPES[mode]
    rng = np.random.default_rng(5)
    for k, shape in zip((0, 2), shapes):
        state[f"model.{key}.{k}.weight"] = 0.3 * rng.standard_normal(shape)
        state[f"model.{key}.{k}.bias"] = 0.3 * rng.standard_normal(shape[0])
    cfg, sd = str(d / f"{name}_config.json"), str(d / f"{name}_state_dict.npz")
    with open(cfg, "w") as f:
        json.dump(config, f)
    np.savez(sd, **state)
    return cfg, sd


@pytest.fixture(scope="module")
def cond_models(plugin, tmp_path_factory):
    """The film and fuse_pool models through the CLI."""
    if not os.environ.get("HYDRAGNN_LAMMPS_NO_BUILD"):
        subprocess.run(["cargo", "build", "--release", "-p", "hydragnn-train", "--bin", "hydragnn"], cwd=ROOT,
                       check=True, env={**env(), "LIBTORCH_USE_PYTORCH": "1"})
    d = tmp_path_factory.mktemp("cond")
    out = {}
    for mode in SHAPES:
        cfg, sd = _checkpoint(mode, d)
        path = str(d / f"gfm_painn_graph2_{mode}.hgnn")
        p = subprocess.run([os.path.join(ROOT, "target", "release", "hydragnn"), "import-hydragnn", cfg, sd,
                            "-o", path], env=env(), capture_output=True, text=True)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "[charge, spin]" in p.stderr and mode in p.stderr, p.stderr
        out[mode] = path
    return out


@pytest.fixture(scope="module")
def mace_models(plugin, cond_models, tmp_path_factory):
    """HydraGNN's conditioned MACE goldens (concat_node, film) through the CLI (cond_models built
    the binary)."""
    d = tmp_path_factory.mktemp("mace_cond")
    out = {}
    for key, mode in MACE_MODES.items():
        name = f"GFM_MACE_graph2_{key}"
        cfg, sd = os.path.join(EXTRA, f"{name}_config.json"), os.path.join(EXTRA, f"{name}_state_dict.npz")
        path = str(d / f"{name}.hgnn")
        p = subprocess.run([os.path.join(ROOT, "target", "release", "hydragnn"), "import-hydragnn", cfg, sd,
                            "-o", path], env=env(), capture_output=True, text=True)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "[charge, spin]" in p.stderr and mode in p.stderr, p.stderr
        out[key] = path
    return out


@pytest.mark.parametrize("mode", list(SHAPES))
def test_film_and_fuse_pool_in_lammps_equal_ase_on_1_and_2_ranks(plugin, cond_models, mode, tmp_path):
    _lammps_equals_ase(plugin, cond_models[mode], mode, tmp_path)


@pytest.mark.parametrize("key", list(MACE_MODES))
def test_mace_conditioning_in_lammps_equals_ase_on_1_and_2_ranks(plugin, mace_models, key, tmp_path):
    """MACE conditions every atom's scalars after the embedding and after each layer (ghost rows
    conditioned by each rank as its own)."""
    _lammps_equals_ase(plugin, mace_models[key], f"MACE {key}", tmp_path)


def _lammps_equals_ase(plugin, model, mode, tmp_path):
    from ase import Atoms
    from hydragnn_ase import HydraGNNCalculator

    pos, z, lengths = _system()
    data = str(tmp_path / "bulk.data")
    write_data(data, pos, z, lengths, species=(29, 13))
    atoms = Atoms(numbers=z, positions=pos, cell=np.diag(lengths), pbc=True)
    energies = []
    for b in BRANCHES:
        atoms.calc = HydraGNNCalculator(model, head=b)
        atoms.info.update(charge=CHARGE, spin=SPIN)
        e_ref, f_ref = atoms.get_potential_energy(), atoms.get_forces()
        w = -atoms.get_stress(voigt=False) * atoms.get_volume()
        w_ref = [w[i, j] for i, j in VOIGT]
        atoms.info.update(charge=0.0, spin=1.0)    # other values, another energy
        assert abs(atoms.get_potential_energy() - e_ref) > 1e-6 * abs(e_ref), f"{mode}: charge/spin change nothing"
        energies.append(e_ref)
        for nprocs in (1, 2):
            cwd = tmp_path / f"{b}_np{nprocs}"
            cwd.mkdir()
            # `_script` writes "pair_style hydragnn branch <b>": the keywords follow the branch
            script = _script(plugin, data, model, f"{b} charge {CHARGE:g} spin {SPIN:g}", "brick")
            _, out = run_lammps(script, str(cwd), nprocs)
            assert f"conditioned on the system's charge = {CHARGE:g} spin = {SPIN:g}" in out, out[-2000:]
            pe, *pv, vol = results(out)["gfm"]
            d = read_dump(str(cwd / "out.dump"))
            f = np.stack([d["fx"], d["fy"], d["fz"]], axis=1)
            wl = np.array(pv) * vol / NKTV2P_METAL
            errs = {"energy": rel_err(pe, e_ref), "forces": rel_err(f, f_ref), "virial": rel_err(wl, w_ref)}
            print(f"{mode} {b} on {nprocs} ranks: {errs}")
            assert all(v <= TOL for v in errs.values()), f"{mode} {b} on {nprocs} ranks: {errs}"
    assert abs(energies[0] - energies[1]) > 1e-6, "the two branches give one energy"
