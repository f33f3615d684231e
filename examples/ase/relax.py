#!/usr/bin/env python3
"""Relaxation of positions and cell with a hydragnn-rs model: a strained, rattled fcc crystal
relaxed by BFGS through ASE's FrechetCellFilter, printing energy, stress and lattice constant.

    python examples/ase/relax.py [MODEL] [--fmax 0.01] [--steps 200] ...

MODEL defaults to potentials/metals_schnet.model; any model file works (the crystal is built from the
model's first element, or --element)."""

import argparse
import sys
from pathlib import Path

import numpy as np
from ase.build import bulk
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS
from ase.units import GPa

REPO = Path(__file__).resolve().parents[2]
try:
    from hydragnn_ase import HydraGNNCalculator
except ImportError:  # running from a checkout without `pip install ./ase-bridge`
    sys.path.insert(0, str(REPO / "ase-bridge"))
    from hydragnn_ase import HydraGNNCalculator


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", nargs="?", default=str(REPO / "potentials" / "metals_schnet.model"), help="model file")
    p.add_argument("--element", help="element of the fcc crystal (default: the model's first species)")
    p.add_argument("--size", type=int, default=2, help="cubic fcc cells per direction (4 atoms each)")
    p.add_argument("--strain", type=float, default=0.02, help="initial random strain amplitude")
    p.add_argument("--rattle", type=float, default=0.05, help="initial random displacement (Å)")
    p.add_argument("--pressure", type=float, default=0.0, help="external pressure (GPa)")
    p.add_argument("--fmax", type=float, default=0.01, help="convergence on forces and stress (eV/Å)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="libtorch threads")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    if not Path(a.model).is_file():
        p.error(f"model file {a.model} not found: pass the path of a model file (see docs/ase.md)")

    calc = HydraGNNCalculator(a.model, device=a.device, threads=a.threads)
    symbol = a.element or calc.info.get("species", ["Cu"])[0]
    atoms = bulk(symbol, "fcc", cubic=True).repeat(a.size)
    rng = np.random.default_rng(a.seed)
    strain = np.eye(3) + a.strain * (rng.random((3, 3)) - 0.5)
    atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
    atoms.rattle(a.rattle, seed=a.seed)
    atoms.calc = calc
    n = len(atoms)

    def show(stage):
        s = atoms.get_stress() / GPa
        lengths = atoms.cell.cellpar()[:3] / a.size
        print(f"{stage}: E = {atoms.get_potential_energy() / n:.6f} eV/atom, V = {atoms.get_volume() / n:.4f} Å^3/atom")
        print(f"  stress (GPa, xx yy zz yz xz xy) = {np.array2string(s, precision=4)}")
        print(f"  cubic-cell lengths (Å) = {np.array2string(lengths, precision=5)}, max |F| = {np.abs(atoms.get_forces()).max():.4g} eV/Å")

    print(f"{n} {symbol} atoms, model {a.model}")
    show("initial")
    opt = BFGS(FrechetCellFilter(atoms, scalar_pressure=a.pressure * GPa), logfile="-")
    converged = opt.run(fmax=a.fmax, steps=a.steps)
    show("final")
    print(f"converged: {bool(converged)} after {opt.nsteps} steps")
    return atoms, converged


if __name__ == "__main__":
    main()
