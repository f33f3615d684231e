#!/usr/bin/env python3
"""Generates the two reference datasets of hydragnn-rs, and test sets for the metals one, as extended
XYZ (ASE's writer), deterministically from --seed.

1. metals.xyz: ASE EMT fcc Cu, Al and Ni, 2x2x2 conventional supercells (32 atoms), each trajectory
   starting from a randomly strained (each strain component uniform in +-2%) and rattled cell, frames
   sampled from Langevin MD at 300, 600 and 900 K. Per frame: energy, forces, stress (eV, eV/A, eV/A^3,
   ASE sign convention), pbc T T T, config_type="<El>_<T>K".
2. molecules.xyz: closed-shell H/C/N/O molecules of ase.collections.g2 (<= 12 atoms, even electron
   count, no initial magnetic moments), frames from GFN2-xTB (tblite) Langevin MD at 300 and 600 K.
   Per frame: energy, forces, the HOMO-LUMO gap `gap` (eV, from tblite's orbital energies and
   occupations), per-atom GFN2 partial charges (ASE writes them as the column `charge`), pbc F F F.

3. transfer (only with `--only transfer`, so the default run and `--only metals|molecules` are
   unchanged): EMT test sets of structures the metals set never contains (three by default, a
   fourth when named in `--transfer-sets`), one file each,
   made with the same strain/rattle + Langevin MD machinery (300/600/900 K, `--transfer-frames`
   frames per file, 150 by default), the same keys:
   - transfer_vacancies.xyz: fcc Cu, Al, Ni 3x3x3 conventional supercells (108 sites) with one
     vacancy (107 atoms); energy, forces, stress, pbc T T T, config_type="<El>_vac_<T>K".
   - transfer_slabs111.xyz: fcc(111) slabs of Cu, Al, Ni (ase.build.fcc111, 3x3 in-plane, 4 layers,
     36 atoms, 8 A of vacuum on each side), strained only in-plane; energy, forces (no stress: it
     would depend on the vacuum), pbc T T F, config_type="<El>111_<T>K".
   - transfer_alloys.xyz: random Cu/Al/Ni occupation of a 32-atom fcc cell (composition drawn per
     trajectory, Dirichlet(1,1,1)), lattice constant interpolated linearly (Vegard) between the
     elements' fcc lattice constants; energy, forces, stress, pbc T T T,
     config_type="alloy_<formula>_<T>K".
   - transfer_slabs100.xyz (only when named in `--transfer-sets`, not by default): fcc(100) slabs
     of Cu, Al, Ni (ase.build.fcc100, 3x3 in-plane, 4 layers, 36 atoms, 8 A of vacuum on each
     side), strained only in-plane; energy, forces, pbc T T F, config_type="<El>100_<T>K". The
     downstream set of the base model's fine-tuning example (potentials/base_schnet.md).

Every trajectory draws from its own generator seeded with (seed, dataset, trajectory index), so a
run is reproducible frame by frame: the same seed and sizes give byte-identical files.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/generate_data.py --out data/
    # the committed test slices (train/data/):
    OMP_NUM_THREADS=1 .venv/bin/python scripts/generate_data.py --out train/data \
        --metals-frames 240 --molecules-frames 300
    # the molecules at a second level of theory (multi-fidelity): the same geometries as
    # molecules.xyz (same seed and sizes), labelled with GFN1-xTB, in molecules_gfn1.xyz:
    OMP_NUM_THREADS=1 .venv/bin/python scripts/generate_data.py --out data/ --only molecules \
        --fidelity gfn1
    # the transfer test sets (a few seconds):
    OMP_NUM_THREADS=1 .venv/bin/python scripts/generate_data.py --out data/ --only transfer
    # only the alloys, 1300 frames (the fine-tuning learning curve, benchmarks/finetune_curve.sh):
    OMP_NUM_THREADS=1 .venv/bin/python scripts/generate_data.py --out data/ --only transfer \
        --transfer-sets alloys --transfer-frames 1300
"""
import argparse
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # tblite is 10-100x slower with 2 threads on 2 cores

import numpy as np  # noqa: E402
import ase.io  # noqa: E402
from ase import units  # noqa: E402
from ase.build import bulk, fcc100, fcc111  # noqa: E402
from ase.calculators.emt import EMT  # noqa: E402
from ase.calculators.singlepoint import SinglePointCalculator  # noqa: E402
from ase.collections import g2  # noqa: E402
from ase.md.langevin import Langevin  # noqa: E402
from ase import Atoms  # noqa: E402
from ase.constraints import FixCom  # noqa: E402
from ase.md.velocitydistribution import Stationary, thermalize_momenta  # noqa: E402

METALS = ("Cu", "Al", "Ni")
METAL_TEMPERATURES = (300.0, 600.0, 900.0)
MOLECULE_TEMPERATURES = (300.0, 600.0)
ALLOWED = {"H", "C", "N", "O"}


def trajectories(n_frames, per_traj):
    """Yields (trajectory index, number of frames) so that the counts add up to n_frames."""
    i = 0
    while n_frames > 0:
        k = min(per_traj, n_frames)
        yield i, k
        n_frames -= k
        i += 1


def run_md(atoms, rng, temperature, timestep_fs, n_frames, burn, interval, snapshot):
    """Langevin MD from Maxwell-Boltzmann velocities; calls snapshot(atoms) every `interval` steps
    after `burn` steps, n_frames times."""
    thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
    Stationary(atoms)
    atoms.set_constraint(FixCom())
    dyn = Langevin(atoms, timestep_fs * units.fs, temperature_K=temperature, friction=0.01 / units.fs,
                   fixcm=False, rng=rng)
    dyn.run(burn)
    for _ in range(n_frames):
        dyn.run(interval)
        snapshot(atoms)


def bare(a):
    """A copy holding only numbers, positions, cell and pbc (no momenta, constraints or info)."""
    return Atoms(numbers=a.numbers, positions=a.positions, cell=a.cell, pbc=a.pbc)


def generate_metals(path, n_frames, seed, per_traj, burn, interval):
    frames = []
    for t, k in trajectories(n_frames, per_traj):
        el = METALS[t % len(METALS)]
        temp = METAL_TEMPERATURES[(t // len(METALS)) % len(METAL_TEMPERATURES)]
        rng = np.random.default_rng([seed, 1, t])
        atoms = bulk(el, "fcc", cubic=True).repeat((2, 2, 2))
        strain = rng.uniform(-0.02, 0.02, size=(3, 3))
        strain = 0.5 * (strain + strain.T)
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + strain), scale_atoms=True)
        atoms.positions += rng.normal(0.0, 0.05, size=atoms.positions.shape)
        atoms.calc = EMT()

        def snapshot(a, el=el, temp=temp):
            f = bare(a)
            f.calc = SinglePointCalculator(f, energy=a.get_potential_energy(), forces=a.get_forces(),
                                           stress=a.get_stress())
            f.info["config_type"] = f"{el}_{int(temp)}K"
            frames.append(f)

        run_md(atoms, rng, temp, 2.0, k, burn, interval, snapshot)
    ase.io.write(path, frames, format="extxyz")
    return len(frames)


def strain_and_rattle(atoms, rng, in_plane=False):
    """The metals set's starting point: each strain component uniform in +-2% (symmetrised; only the
    in-plane 2x2 block for a slab), atoms scaled with the cell, then rattled by 0.05 A."""
    strain = rng.uniform(-0.02, 0.02, size=(3, 3))
    strain = 0.5 * (strain + strain.T)
    if in_plane:
        strain[2, :] = 0.0
        strain[:, 2] = 0.0
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + strain), scale_atoms=True)
    atoms.positions += rng.normal(0.0, 0.05, size=atoms.positions.shape)


def md_frames(frames, atoms, rng, temp, k, burn, interval, label, stress):
    """EMT Langevin MD (2 fs) appending k labelled single-point frames to `frames`."""
    atoms.calc = EMT()

    def snapshot(a):
        f = bare(a)
        extra = {"stress": a.get_stress()} if stress else {}
        f.calc = SinglePointCalculator(f, energy=a.get_potential_energy(), forces=a.get_forces(),
                                       **extra)
        f.info["config_type"] = label
        frames.append(f)

    run_md(atoms, rng, temp, 2.0, k, burn, interval, snapshot)


def transfer_vacancy(t, rng):
    el = METALS[t % len(METALS)]
    atoms = bulk(el, "fcc", cubic=True).repeat((3, 3, 3))
    del atoms[int(rng.integers(len(atoms)))]  # all sites are equivalent: any one
    strain_and_rattle(atoms, rng)
    return atoms, f"{el}_vac", True


def transfer_slab111(t, rng):
    el = METALS[t % len(METALS)]
    atoms = fcc111(el, size=(3, 3, 4), vacuum=8.0)  # pbc T T F
    strain_and_rattle(atoms, rng, in_plane=True)
    return atoms, f"{el}111", False


def transfer_alloy(t, rng):
    x = rng.dirichlet(np.ones(len(METALS)))
    a0 = float(sum(xi * bulk(el, "fcc", cubic=True).cell[0, 0] for xi, el in zip(x, METALS)))
    atoms = bulk("Cu", "fcc", a=a0, cubic=True).repeat((2, 2, 2))
    atoms.set_chemical_symbols(list(rng.choice(METALS, size=len(atoms), p=x)))
    strain_and_rattle(atoms, rng)
    return atoms, f"alloy_{atoms.get_chemical_formula()}", True


def transfer_slab100(t, rng):
    el = METALS[t % len(METALS)]
    atoms = fcc100(el, size=(3, 3, 4), vacuum=8.0)  # pbc T T F
    strain_and_rattle(atoms, rng, in_plane=True)
    return atoms, f"{el}100", False


# New sets go at the end (the index seeds each set's trajectories) and not into the
# --transfer-sets default, so that earlier invocations write what they always wrote.
TRANSFER = (("transfer_vacancies", transfer_vacancy), ("transfer_slabs111", transfer_slab111),
            ("transfer_alloys", transfer_alloy), ("transfer_slabs100", transfer_slab100))


def generate_transfer(out, n_frames, seed, per_traj, burn, interval, only=None):
    """Writes the three transfer sets (or those named in `only`, e.g. {"transfer_alloys"}: each set
    is the same whichever others are written) into directory `out`; returns {path: frames}."""
    written = {}
    for d, (name, build) in enumerate(TRANSFER):
        if only is not None and name not in only:
            continue
        frames = []
        for t, k in trajectories(n_frames, per_traj):
            temp = METAL_TEMPERATURES[(t // len(METALS)) % len(METAL_TEMPERATURES)]
            rng = np.random.default_rng([seed, 3 + d, t])  # datasets 1, 2 are metals, molecules
            atoms, label, stress = build(t, rng)
            md_frames(frames, atoms, rng, temp, k, burn, interval, f"{label}_{int(temp)}K", stress)
        path = os.path.join(out, f"{name}.xyz")
        tmp = path + ".tmp"
        ase.io.write(tmp, frames, format="extxyz")
        os.replace(tmp, path)
        written[path] = len(frames)
    return written


def g2_molecules():
    """Closed-shell H/C/N/O molecules of g2 with at most 12 atoms, in g2's (deterministic) order."""
    out = []
    for name in g2.names:
        a = g2[name]
        if (set(a.get_chemical_symbols()) <= ALLOWED and len(a) <= 12 and a.numbers.sum() % 2 == 0
                and not np.any(a.get_initial_magnetic_moments())):
            out.append((name, a))
    return out


def homo_lumo_gap(calc):
    """HOMO-LUMO gap in eV from tblite's spin-restricted orbital energies (Hartree) and occupations
    (0..2, Fermi-smeared at the electronic temperature): HOMO is orbital n_el/2 - 1."""
    eps = np.asarray(calc._res.get("orbital-energies")).reshape(-1)
    occ = np.asarray(calc._res.get("orbital-occupations")).reshape(-1)
    n_occ = int(round(occ.sum() / 2.0))
    assert np.all(np.diff(eps) >= 0.0), "orbital energies not sorted"
    assert occ[n_occ - 1] > 1.0 > occ[n_occ], f"not a closed-shell occupation: {occ}"
    return float((eps[n_occ] - eps[n_occ - 1]) * units.Hartree)


def generate_molecules(path, n_frames, seed, per_traj, burn, interval, fidelity="gfn2"):
    """GFN2-xTB Langevin MD of the g2 molecules; frames labelled with GFN2-xTB, or (fidelity
    "gfn1") with a GFN1-xTB single point on the same geometry (the trajectories are GFN2's either
    way, so both files hold the same geometries frame by frame)."""
    from tblite.ase import TBLite

    mols = g2_molecules()
    frames = []
    for t, k in trajectories(n_frames, per_traj):
        name, base = mols[t % len(mols)]
        temp = MOLECULE_TEMPERATURES[t % len(MOLECULE_TEMPERATURES)]  # 57 molecules: odd, so both
        rng = np.random.default_rng([seed, 2, t])
        atoms = base.copy()
        atoms.set_initial_magnetic_moments(None)
        atoms.positions += rng.normal(0.0, 0.02, size=atoms.positions.shape)
        atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)

        def snapshot(a, name=name, temp=temp):
            e = a.get_potential_energy()  # GFN2: drives the MD whatever the labels
            f = bare(a)
            if fidelity == "gfn1":
                lo = bare(a)
                lo.calc = TBLite(method="GFN1-xTB", verbosity=0)
                e, forces, charges = lo.get_potential_energy(), lo.get_forces(), lo.get_charges()
                gap = homo_lumo_gap(lo.calc)
            else:
                forces, charges = a.get_forces(), a.calc.results["charges"].copy()
                gap = homo_lumo_gap(a.calc)
            f.calc = SinglePointCalculator(f, energy=e, forces=forces, charges=charges)
            f.info["gap"] = gap
            f.info["config_type"] = f"{name}_{int(temp)}K"
            frames.append(f)

        run_md(atoms, rng, temp, 0.5, k, burn, interval, snapshot)
    ase.io.write(path, frames, format="extxyz")
    return len(frames)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="data", help="output directory (default: data/)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--metals-frames", type=int, default=1800)
    p.add_argument("--molecules-frames", type=int, default=1800)
    p.add_argument("--frames-per-trajectory", type=int, default=10)
    p.add_argument("--burn", type=int, default=20, help="MD steps before the first frame")
    p.add_argument("--interval", type=int, default=10, help="MD steps between frames")
    p.add_argument("--transfer-frames", type=int, default=150,
                   help="frames per transfer file (--only transfer)")
    p.add_argument("--transfer-sets", default="vacancies,slabs111,alloys",
                   help="with --only transfer: which sets to write, comma-separated (default: "
                        "vacancies,slabs111,alloys; slabs100 only when named; each set is identical "
                        "whichever others are written)")
    p.add_argument("--fidelity", choices=["gfn2", "gfn1"], default="gfn2",
                   help="level of theory of the molecules' labels: gfn2 (default, molecules.xyz) or "
                        "gfn1 (molecules_gfn1.xyz: the same GFN2 trajectories, so the same geometries, "
                        "labelled by GFN1-xTB single points; a second fidelity of the same chemistry)")
    p.add_argument("--only", choices=["metals", "molecules", "transfer"],
                   help="generate one dataset only (transfer: only this way)")
    a = p.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    if a.only == "transfer":
        t0 = time.time()
        known = [name for name, _ in TRANSFER]
        only = {f"transfer_{x.strip()}" for x in a.transfer_sets.split(",") if x.strip()}
        bad = sorted(only - set(known))
        if bad:
            p.error(f"--transfer-sets: unknown set(s) {', '.join(b[len('transfer_'):] for b in bad)}; "
                    f"known: {', '.join(k[len('transfer_'):] for k in known)}")
        for path, got in generate_transfer(a.out, a.transfer_frames, a.seed, a.frames_per_trajectory,
                                           a.burn, a.interval, only).items():
            print(f"{path}: {got} frames", file=sys.stderr)
        print(f"transfer sets in {time.time() - t0:.1f} s", file=sys.stderr)
        return
    for kind, fn, n in (("metals", generate_metals, a.metals_frames),
                        ("molecules", generate_molecules, a.molecules_frames)):
        if a.only and a.only != kind:
            continue
        extra = {}
        if kind == "molecules" and a.fidelity != "gfn2":
            extra = {"fidelity": a.fidelity}
        path = os.path.join(a.out, f"{kind}_{a.fidelity}.xyz" if extra else f"{kind}.xyz")
        tmp = path + ".tmp"
        t0 = time.time()
        got = fn(tmp, n, a.seed, a.frames_per_trajectory, a.burn, a.interval, **extra)
        os.replace(tmp, path)  # never leave a half-written dataset behind
        print(f"{path}: {got} frames in {time.time() - t0:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
