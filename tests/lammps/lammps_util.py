"""Helpers for the LAMMPS tests: build paths, configurations written as LAMMPS data files, runs of
the real `lmp` under the real `mpirun`, and reading sorted per-atom dumps back."""

import os
import re
import subprocess

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV = os.path.join(ROOT, ".venv")
PLUGIN = os.environ.get("HYDRAGNN_LAMMPS_PLUGIN", os.path.join(ROOT, "target", "lammps-plugin", "libhydragnn_lammps.so"))
RANDOM_MODEL = os.path.join(ROOT, "target", "release", "examples", "random_model")
NKTV2P_METAL = 1.6021765e6  # LAMMPS force->nktv2p for units metal: eV/Å^3 -> bar
MASS = {29: 63.546, 28: 58.6934, 1: 1.008, 6: 12.011, 8: 15.999}


def env():
    """The environment of scripts/env.sh: the venv first on PATH, one thread per rank."""
    e = dict(os.environ)
    e["PATH"] = os.path.join(VENV, "bin") + os.pathsep + e.get("PATH", "")
    e["VIRTUAL_ENV"] = VENV
    e["OMP_NUM_THREADS"] = "1"
    e.pop("HYDRAGNN_NUM_THREADS", None)
    return e


def lmp_command(nprocs):
    lmp = os.path.join(VENV, "bin", "lmp")
    if nprocs == 1:
        return [lmp]
    return [os.path.join(VENV, "bin", "mpirun"), "-np", str(nprocs), lmp]


def run_lammps(script, cwd, nprocs=1, timeout=600, check=True, name="in.test", env_extra=None, args=()):
    """Writes `script` to cwd/name and runs it; returns (returncode, screen output)."""
    path = os.path.join(cwd, name)
    with open(path, "w") as f:
        f.write(script)
    cmd = lmp_command(nprocs) + ["-in", name, "-log", name + ".log", "-nocite", *args]
    p = subprocess.run(cmd, cwd=cwd, env={**env(), **(env_extra or {})}, capture_output=True, text=True,
                       timeout=timeout)
    out = p.stdout + p.stderr
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{out[-6000:]}")
    return p.returncode, out


def make_random_model(path, mpnn="SchNet", elements="Cu,Ni", radius=4.5, layers=2, dtype="float64", seed=7):
    subprocess.run([RANDOM_MODEL, path, mpnn, elements, str(radius), str(layers), dtype, str(seed)],
                   check=True, env=env())
    return path


def fcc(a, reps, rng, jitter=0.1, ni_fraction=0.3):
    """fcc supercell (orthogonal), atoms displaced at random, a fraction made Ni.
    Returns positions (N,3), atomic numbers (N,), box lengths (3,)."""
    base = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    nx, ny, nz = reps
    cells = np.array([[i, j, k] for i in range(nx) for j in range(ny) for k in range(nz)])
    frac = (cells[:, None, :] + base[None, :, :]).reshape(-1, 3)
    pos = frac * a + rng.uniform(-jitter, jitter, size=frac.shape)
    lengths = np.array([nx, ny, nz], dtype=float) * a
    pos = np.mod(pos, lengths)
    z = np.where(rng.random(len(pos)) < ni_fraction, 28, 29).astype(np.int32)
    return pos, z, lengths


def write_data(path, pos, z, lengths, tilt=(0.0, 0.0, 0.0), species=(29, 28)):
    """LAMMPS data file: box (0,0,0)-(lengths) with tilts xy xz yz; type k = species[k-1]."""
    types = {s: k + 1 for k, s in enumerate(species)}
    with open(path, "w") as f:
        f.write("hydragnn test configuration\n\n")
        f.write(f"{len(pos)} atoms\n{len(species)} atom types\n\n")
        for d, name in enumerate("xyz"):
            f.write(f"0.0 {lengths[d]:.17g} {name}lo {name}hi\n")
        if any(t != 0.0 for t in tilt):
            f.write(f"{tilt[0]:.17g} {tilt[1]:.17g} {tilt[2]:.17g} xy xz yz\n")
        f.write("\nMasses\n\n")
        for s in species:
            f.write(f"{types[s]} {MASS.get(s, 1.0)}\n")
        f.write("\nAtoms # atomic\n\n")
        for i, (p, zi) in enumerate(zip(pos, z)):
            f.write(f"{i + 1} {types[int(zi)]} {p[0]:.17g} {p[1]:.17g} {p[2]:.17g}\n")


def lammps_cell(lengths, tilt=(0.0, 0.0, 0.0)):
    """Lattice vectors as rows for a LAMMPS box with origin 0."""
    lx, ly, lz = lengths
    xy, xz, yz = tilt
    return np.array([[lx, 0, 0], [xy, ly, 0], [xz, yz, lz]], dtype=float)


def read_dump(path):
    """A `write_dump ... custom` file (one snapshot) as a dict column -> array, sorted by id."""
    with open(path) as f:
        lines = f.read().splitlines()
    k = next(i for i, l in enumerate(lines) if l.startswith("ITEM: ATOMS"))
    cols = lines[k].split()[2:]
    data = np.array([[float(v) for v in l.split()] for l in lines[k + 1:] if l.strip()])
    data = data[np.argsort(data[:, cols.index("id")])]
    return {c: data[:, i] for i, c in enumerate(cols)}


def results(out, tag="RESULT"):
    """Lines 'RESULT name v1 v2 ...' printed by the input, as name -> list of floats."""
    r = {}
    for line in out.splitlines():
        if line.startswith(tag + " "):
            parts = line.split()
            r[parts[1]] = [float(v) for v in parts[2:]]
    return r


def ghost_stats(out):
    """(ave, max, min) of 'Nghost:' lines of the run summaries, one tuple per run."""
    return [tuple(float(v) for v in m.groups())
            for m in re.finditer(r"Nghost:\s+(\S+) ave\s+(\S+) max\s+(\S+) min", out)]


def rel_err(a, b):
    """max |a - b| / max |b| (absolute when b is all zero)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = np.max(np.abs(b)) if np.any(b) else 1.0
    return float(np.max(np.abs(a - b)) / scale)


def golden_dir():
    """Upstream HydraGNN's reference outputs (../shared/hydragnn_golden beside the repository, or
    $HYDRAGNN_GOLDEN); skips the calling test when they are absent (a user's clone has none)."""
    import pytest

    for d in (os.environ.get("HYDRAGNN_GOLDEN"), os.path.join(ROOT, "..", "shared", "hydragnn_golden"),
              os.path.join(ROOT, "shared", "hydragnn_golden")):
        if d and os.path.exists(os.path.join(d, "README.md")):
            return d
    pytest.skip("upstream HydraGNN golden data not found (expected ../shared/hydragnn_golden beside the repository, or set HYDRAGNN_GOLDEN)")
