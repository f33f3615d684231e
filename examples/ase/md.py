#!/usr/bin/env python3
"""ASE molecular dynamics with a hydragnn-rs model: Langevin thermalisation, then NVE (velocity
Verlet), printing the energies and the NVE energy drift.

    python examples/ase/md.py [MODEL] [--steps-langevin 200] [--steps-nve 200] ...

MODEL defaults to potentials/metals_schnet.model; any model file works (the crystal is built from the
model's first element, or --element)."""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from ase import units
from ase.build import bulk
from ase.constraints import FixCom
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from ase.md.verlet import VelocityVerlet

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
    p.add_argument("--size", type=int, default=3, help="cubic fcc cells per direction (4 atoms each)")
    p.add_argument("--temperature", type=float, default=300.0, help="Langevin temperature (K)")
    p.add_argument("--timestep", type=float, default=2.0, help="time step (fs)")
    p.add_argument("--friction", type=float, default=0.02, help="Langevin friction (1/fs)")
    p.add_argument("--steps-langevin", type=int, default=200)
    p.add_argument("--steps-nve", type=int, default=200)
    p.add_argument("--interval", type=int, default=20, help="print every this many steps")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="libtorch threads")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    if not Path(a.model).is_file():
        p.error(f"model file {a.model} not found: pass the path of a model file (see docs/ase.md)")

    calc = HydraGNNCalculator(a.model, device=a.device, threads=a.threads)
    symbol = a.element or calc.info.get("species", ["Cu"])[0]
    atoms = bulk(symbol, "fcc", cubic=True).repeat(a.size)
    atoms.calc = calc
    rng = np.random.default_rng(a.seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=a.temperature, rng=rng)
    Stationary(atoms)
    atoms.set_constraint(FixCom())  # no drift of the centre of mass under the Langevin noise
    n = len(atoms)
    print(f"{n} {symbol} atoms, model {a.model} (cutoff {calc.cutoff} Å)")

    def report(dyn, stage):
        epot, ekin = atoms.get_potential_energy() / n, atoms.get_kinetic_energy() / n
        t = ekin / (1.5 * units.kB)
        print(f"{stage:8s} step {dyn.nsteps:6d}  Epot {epot:12.6f}  Ekin {ekin:9.6f}  Etot {epot + ekin:12.6f} eV/atom  T {t:7.1f} K")

    dt = a.timestep * units.fs
    start = time.perf_counter()
    langevin = Langevin(
        atoms, dt, temperature_K=a.temperature, friction=a.friction / units.fs, fixcm=False, rng=rng
    )
    langevin.attach(report, interval=a.interval, dyn=langevin, stage="Langevin")
    langevin.run(a.steps_langevin)

    nve = VelocityVerlet(atoms, dt)
    etot = []
    nve.attach(lambda: etot.append(atoms.get_total_energy() / n), interval=1)
    nve.attach(report, interval=a.interval, dyn=nve, stage="NVE")
    nve.run(a.steps_nve)
    elapsed = time.perf_counter() - start
    steps = a.steps_langevin + a.steps_nve
    drift = max(abs(e - etot[0]) for e in etot)
    print(f"NVE: max |Etot - Etot(0)| = {drift:.3e} eV/atom over {a.steps_nve} steps")
    print(f"{steps} steps in {elapsed:.2f} s ({1e3 * elapsed / max(steps, 1):.2f} ms/step)")
    return drift


if __name__ == "__main__":
    main()
