#!/usr/bin/env python3
"""The ASE binding's overhead: time per force call of periodic fcc crystals (100 and 1,000 atoms by
default) through `HydraGNNCalculator` (atoms.get_forces() after a position change) against the
same evaluation through the engine directly: a C program compiled here against hydragnn.h that
calls hgnn_compute in a loop, and hgnn_compute through ctypes without the ASE layer.

    . scripts/env.sh && python benchmarks/ase_bench.py [--model FILE] [--sizes 100 1000] [--threads 1]

Without --model it times a random-weight SchNet model (Cu, 4.5 Å, 2 layers, float64) written by
target/release/examples/random_model. Each timing is the best (and median) of --repeats calls,
the calculator and ctypes calls interleaved and the C program's runs alternating with them, so
that a change of load on a shared machine hits all of them.
The engine computes what the calculator asks for on a periodic cell: energy, per-atom energies,
forces, virial and per-atom virials in one pass ("one-pass"); the forces-only engine time is
printed alongside, for the cost of that choice."""

import argparse
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from ctypes import byref
from pathlib import Path

import numpy as np
from ase.build import bulk

REPO = Path(__file__).resolve().parents[1]
try:
    import hydragnn_ase
except ImportError:  # running from a checkout without `pip install ./ase-bridge`
    sys.path.insert(0, str(REPO / "ase-bridge"))
    import hydragnn_ase
from hydragnn_ase import HydraGNNCalculator
from hydragnn_ase.calculator import _Job

C_SOURCE = r"""
/* engine_bench.c: times hgnn_compute on one structure read from a binary file. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "hydragnn.h"

static void check(hgnn_status_t s, const char *what) {
  if (s != HGNN_SUCCESS) { fprintf(stderr, "%s: %s\n", what, hgnn_last_error()); exit(1); }
}

int main(int argc, char **argv) {
  if (argc != 7) { fprintf(stderr, "usage: engine_bench MODEL STRUCTURE REPEATS THREADS all|forces cpu|wall\n"); return 2; }
  clockid_t clock = argv[6][0] == 'c' ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC;
  FILE *f = fopen(argv[2], "rb");
  if (!f) { perror(argv[2]); return 1; }
  int64_t n; hgnn_structure_t s;
  if (fread(&n, 8, 1, f) != 1 || fread(s.cell, 8, 9, f) != 9 || fread(s.pbc, 4, 3, f) != 3) return 1;
  double *pos = malloc(24 * n); int32_t *z = malloc(4 * n);
  if (fread(pos, 8, 3 * n, f) != (size_t)(3 * n) || fread(z, 4, n, f) != (size_t)n) return 1;
  fclose(f);
  s.n_atoms = n; s.positions = pos; s.atomic_numbers = z;
  hgnn_options_t o = hgnn_options_default();
  o.num_threads = atoi(argv[4]);
  hgnn_model_t *m = NULL;
  check(hgnn_model_load(argv[1], &o, &m), "hgnn_model_load");
  double *forces = malloc(24 * n), *energies = malloc(8 * n), *virials = malloc(72 * n), virial[9];
  hgnn_results_t r = {0};
  r.forces = forces;
  if (argv[5][0] == 'a') { r.energies = energies; r.virial = virial; r.virials = virials; }
  int reps = atoi(argv[3]);
  for (int k = 0; k < 3; k++) check(hgnn_compute(m, &s, &r), "hgnn_compute"); /* warm-up */
  for (int k = 0; k < reps; k++) {
    struct timespec t0, t1;
    clock_gettime(clock, &t0);
    check(hgnn_compute(m, &s, &r), "hgnn_compute");
    clock_gettime(clock, &t1);
    printf("%.9f\n", (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec));
  }
  hgnn_model_free(m);
  return 0;
}
"""


def crystal(n_atoms, symbol):
    """A rattled fcc crystal of n_atoms (a multiple of 4) from the most compact box of cubic cells."""
    cells = n_atoms // 4
    if 4 * cells != n_atoms:
        raise ValueError(f"{n_atoms} is not a multiple of 4")
    boxes = [(x, y, cells // (x * y)) for x in range(1, cells + 1) for y in range(1, cells + 1) if cells % (x * y) == 0]
    box = min(boxes, key=lambda b: (max(b) / min(b), b))
    atoms = bulk(symbol, "fcc", cubic=True).repeat(box)
    atoms.rattle(0.02, seed=1)
    return atoms


def build_c(workdir, lib):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    src = workdir / "engine_bench.c"
    src.write_text(C_SOURCE)
    exe = workdir / "engine_bench"
    cmd = [cc, "-O2", "-o", str(exe), str(src), f"-I{REPO / 'mlip' / 'capi' / 'include'}",
           f"-L{lib.parent}", "-lhydragnn", f"-Wl,-rpath,{lib.parent}"]
    subprocess.run(cmd, check=True)
    return exe


def time_c(exe, model, atoms, workdir, repeats, threads, request, clock):
    path = workdir / f"structure_{len(atoms)}.bin"
    with open(path, "wb") as f:
        f.write(struct.pack("<q", len(atoms)))
        f.write(np.asarray(atoms.cell.array, dtype="<f8").tobytes())
        f.write(np.asarray(atoms.pbc, dtype="<i4").tobytes())
        f.write(np.ascontiguousarray(atoms.positions, dtype="<f8").tobytes())
        f.write(np.asarray(atoms.numbers, dtype="<i4").tobytes())
    out = subprocess.run([str(exe), str(model), str(path), str(repeats), str(threads), request, clock],
                         check=True, capture_output=True, text=True)
    return [float(x) for x in out.stdout.split()]


def time_python(calc, atoms, repeats, clock):
    """Interleaved: (calculator get_forces after a position change, raw ctypes hgnn_compute)."""
    now = time.process_time if clock == "cpu" else time.perf_counter
    atoms = atoms.copy()
    atoms.calc = calc
    lib, model = calc._model.lib, calc._model.handle
    job = _Job(atoms, ("stress",))
    for _ in range(3):  # warm-up
        atoms.positions[0, 0] += 1e-6
        atoms.get_forces()
        lib.hgnn_compute(model, byref(job.structure), byref(job.raw))
    t_calc, t_raw = [], []
    for k in range(repeats):
        atoms.positions[0, 0] += 1e-6 if k % 2 else -1e-6
        # Alternate which goes first: the second one finds the caches warm from the first.
        if k % 2:
            t0 = now()
            atoms.get_forces()
            t1 = now()
            lib.hgnn_compute(model, byref(job.structure), byref(job.raw))
            t2 = now()
            t_calc.append(t1 - t0)
            t_raw.append(t2 - t1)
        else:
            t0 = now()
            lib.hgnn_compute(model, byref(job.structure), byref(job.raw))
            t1 = now()
            atoms.get_forces()
            t2 = now()
            t_raw.append(t1 - t0)
            t_calc.append(t2 - t1)
    return t_calc, t_raw


def time_layer(calc, atoms, repeats, clock):
    """The ASE layer alone: get_forces after a position change with hgnn_compute stubbed out."""
    now = time.process_time if clock == "cpu" else time.perf_counter
    atoms = atoms.copy()
    atoms.calc = calc
    lib = calc._model.lib
    real = lib.hgnn_compute
    lib.hgnn_compute = lambda *args: 0
    try:
        out = []
        for k in range(repeats):
            atoms.positions[0, 0] += 1e-6 if k % 2 else -1e-6
            t0 = now()
            atoms.get_forces()
            out.append(now() - t0)
    finally:
        lib.hgnn_compute = real
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model file (default: a random SchNet Cu model)")
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--repeats", type=int, default=40, help="timed calls per size and method")
    p.add_argument("--rounds", type=int, default=4, help="the calls are split into this many alternating rounds")
    p.add_argument("--threads", type=int, default=1, help="libtorch intra-op threads")
    p.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                   help="process CPU time (steady on a loaded machine; = wall time on an idle one with 1 thread) or wall time")
    a = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = a.model
        if model is None:
            model = tmp / "random_schnet.model"
            exe = REPO / "target" / "release" / "examples" / "random_model"
            subprocess.run([str(exe), str(model), "SchNet", "Cu", "4.5", "2", "float64", "7"], check=True)
        lib = hydragnn_ase.library_path()
        calc = HydraGNNCalculator(model, threads=a.threads)
        symbol = calc.info.get("species", ["Cu"])[0]
        c_exe = build_c(tmp, lib)
        print(f"model {a.model or 'random SchNet Cu 4.5 Å 2 layers float64'}, {lib}, threads {a.threads}, "
              f"{a.clock} time, best / median of {a.repeats} calls in {a.rounds} rounds, ms per force call")
        head = (f"{'atoms':>6} {'ASE calc':>17} {'ctypes direct':>17} {'C direct':>17} {'C forces-only':>17}"
                f" {'layer alone':>11} {'calc/ctypes':>11} {'calc/C':>7} {'(C+layer)/C':>11}")
        print(head)
        rows = []
        for n in a.sizes:
            atoms = crystal(n, symbol)
            t_calc, t_raw, t_c, t_f = [], [], [], []
            t_layer = time_layer(calc, atoms, 10 * a.repeats, a.clock)
            # Rounds alternate the in-process timings with the C program's, so that a change of
            # load on a shared machine reaches all of them.
            per_round = max(1, a.repeats // a.rounds)
            for _ in range(a.rounds):
                tc, tr = time_python(calc, atoms, per_round, a.clock)
                t_calc += tc
                t_raw += tr
                if c_exe:
                    t_c += time_c(c_exe, model, atoms, tmp, per_round, a.threads, "all", a.clock)
                    t_f += time_c(c_exe, model, atoms, tmp, per_round, a.threads, "forces", a.clock)
            cell = lambda t: f"{1e3 * min(t):7.2f} / {1e3 * statistics.median(t):7.2f}" if t else f"{'n/a':>17}"
            r_raw = min(t_calc) / min(t_raw)
            r_c = min(t_calc) / min(t_c) if t_c else float("nan")
            engine = min(t_c) if t_c else min(t_raw)
            r_layer = (engine + min(t_layer)) / engine
            rows.append((n, min(t_calc), min(t_raw), min(t_c) if t_c else None, min(t_layer), r_raw, r_c, r_layer))
            print(f"{len(atoms):>6} {cell(t_calc)} {cell(t_raw)} {cell(t_c)} {cell(t_f)} {1e3 * min(t_layer):8.3f} ms"
                  f" {r_raw:11.3f} {r_c:7.3f} {r_layer:11.3f}")
        print("layer alone: get_forces with hgnn_compute stubbed out (best of 10x as many calls)")
        print("ratios: best ASE-calculator time / best direct engine time (ctypes in the same process; C program);")
        print("        (best C time + layer alone) / best C time, the overhead free of the engine's run-to-run noise")
    return rows


if __name__ == "__main__":
    main()
