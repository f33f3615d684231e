#!/usr/bin/env python3
"""Active learning with an ensemble: Langevin MD of an fcc crystal driven by the committee mean;
every --interval steps the largest per-atom force deviation (max_devi_f, DeePMD-kit's criterion)
is checked, and frames above --threshold are collected into an extended XYZ file for labelling
and retraining. Stops after --max-frames frames or --steps steps.

    hydragnn ensemble m0.model m1.model m2.model m3.model -o ens.model
    python examples/ase/active_learning.py ens.model --temperature 1500 --threshold 0.3 --out new.xyz

Each collected frame carries `max_devi_f`, `energy_std` and the step in its info, and the per-atom
force deviation as the array `forces_std`; it has no energy or forces (the reference method
labels it)."""

import argparse
import sys
from pathlib import Path

import numpy as np
from ase import units
from ase.build import bulk
from ase.io import write
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

REPO = Path(__file__).resolve().parents[2]
try:
    from hydragnn_ase import HydraGNNCalculator
except ImportError:  # running from a checkout without `pip install ./ase-bridge`
    sys.path.insert(0, str(REPO / "ase-bridge"))
    from hydragnn_ase import HydraGNNCalculator


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="ensemble file (hydragnn ensemble ...)")
    p.add_argument("--element", help="element of the fcc crystal (default: the model's first species)")
    p.add_argument("--size", type=int, default=2, help="cubic fcc cells per direction (4 atoms each)")
    p.add_argument("--temperature", type=float, default=1500.0, help="Langevin temperature (K)")
    p.add_argument("--timestep", type=float, default=2.0, help="time step (fs)")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--interval", type=int, default=10, help="steps between deviation checks")
    p.add_argument("--threshold", type=float, default=0.3, help="max_devi_f above which a frame is kept (eV/Å)")
    p.add_argument("--max-frames", type=int, default=50)
    p.add_argument("--out", default="candidates.xyz", help="extended XYZ file of the collected frames")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if not Path(a.model).exists():
        p.exit(2, f"error: {a.model} not found\n")
    calc = HydraGNNCalculator(a.model)
    if "max_devi_f" not in calc.implemented_properties:
        p.exit(2, f"error: {a.model} is a single model, not an ensemble (build one with hydragnn ensemble)\n")
    from ase.data import chemical_symbols

    element = a.element or chemical_symbols[calc.species[0]]
    atoms = bulk(element, "fcc", cubic=True).repeat(a.size)
    atoms.calc = calc
    MaxwellBoltzmannDistribution(atoms, temperature_K=a.temperature, rng=np.random.default_rng(a.seed))
    dyn = Langevin(atoms, a.timestep * units.fs, temperature_K=a.temperature, friction=0.02,
                   rng=np.random.default_rng(a.seed + 1))
    frames = []
    for step in range(a.interval, a.steps + 1, a.interval):
        dyn.run(a.interval)
        atoms.get_forces()
        r = calc.results
        dev = r["max_devi_f"]
        print(f"step {step:6d}  max_devi_f {dev:.4f} eV/Å  energy_std {r['energy_std']:.4f} eV")
        if dev > a.threshold:
            f = atoms.copy()
            f.calc = None
            f.info.update(step=step, max_devi_f=dev, energy_std=r["energy_std"])
            f.new_array("forces_std", np.array(r["forces_std"]))
            frames.append(f)
            if len(frames) >= a.max_frames:
                break
    if frames:
        write(a.out, frames, format="extxyz")
    print(f"collected {len(frames)} frames above max_devi_f {a.threshold} eV/Å" + (f" -> {a.out}" if frames else ""))


if __name__ == "__main__":
    main()
