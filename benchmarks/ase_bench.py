#!/usr/bin/env python3
"""The ASE binding's overhead: time per force call of periodic fcc crystals (100 and 1,000 atoms by
default) through `HydraGNNCalculator` (atoms.get_forces() after a position change) against the
same evaluation through the engine directly: a C program compiled here against hydragnn.h that
calls hgnn_compute in a loop, and hgnn_compute through ctypes without the ASE layer.

    . scripts/env.sh && python benchmarks/ase_bench.py [--model FILE] [--sizes 100 1000] [--threads 1]
        [--path-model FILE] [--mol-model FILE --mol-head NAME] [--molecules 200] [--quick]

Without --model it times a random-weight SchNet model (Cu, 4.5 Å, 2 layers, float64) written by
target/release/examples/random_model. Each timing is the best (and median) of --repeats calls,
the calculator and ctypes calls interleaved and the C program's runs alternating with them, so
that a change of load on a shared machine hits all of them.
The engine computes what the calculator asks for on a periodic cell: energy, per-atom energies,
forces, virial and per-atom virials in one pass ("one-pass"); the forces-only engine time is
printed alongside, for the cost of that choice. That part runs on the calculator's default path
(compress=True).

Then the engine's two evaluation paths, compress=True (fast) and compress=False (exact), through
the calculator: the force call of a rattled 108-atom fcc Cu crystal (--path-model, default
potentials/metals_schnet.model), float64 and float32, interleaved call by call, median ms; and
screening of QM9-sized molecules (18 atoms: C7NOH9, random but chemically spaced geometries,
--molecules of them) with --mol-model (default potentials/joint_schnet.model, branch molecules),
energy + forces, in structures/s: a Python loop of get_forces calls against calc.batch (one
hgnn_compute_batch call per --batch-size structures), median of --path-rounds interleaved rounds.
--quick: fewer calls and molecules (a smoke test)."""

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


def overhead(a, calc, model, lib, tmp):
    """The binding's overhead (on the calculator's default path)."""
    symbol = calc.info.get("species", ["Cu"])[0]
    c_exe = build_c(tmp, lib)
    print(f"model {a.model or 'random SchNet Cu 4.5 Å 2 layers float64'}, {lib}, threads {a.threads}, "
          f"{a.clock} time, best / median of {a.repeats} calls in {a.rounds} rounds, ms per force call")
    print(f"engine path: {calc.path_info.get('description', calc.path_info)}")
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


# --- fast path vs exact path ----------------------------------------------------------------

QM9_LIKE = "C" * 7 + "N" + "O"  # 9 heavy atoms, + 9 H = 18 atoms (QM9's mean size)
VALENCE = {"C": 4, "N": 3, "O": 2}


def qm9_like(rng, n_h=9, heavy=QM9_LIKE):
    """An 18-atom H/C/N/O molecule: a random tree of heavy atoms (bonds 1.40-1.54 Å, non-bonded
    heavy atoms >= 2.3 Å apart), hydrogens at 1.09 Å on heavy atoms with free valence (>= 1.8 Å from
    all other atoms). Chemically spaced, not chemically sensible; the cost depends on the atom and
    neighbour counts only."""
    from ase import Atoms

    def unit():
        v = rng.normal(size=3)
        return v / np.linalg.norm(v)

    while True:
        syms = list(rng.permutation(list(heavy)))
        pos, bonds = [np.zeros(3)], [0]
        ok = True
        for s in syms[1:]:
            for _ in range(500):
                free = [i for i in range(len(pos)) if bonds[i] < VALENCE[syms[i]] - 1]
                i = int(rng.choice(free))
                x = pos[i] + rng.uniform(1.40, 1.54) * unit()
                d = np.linalg.norm(np.array(pos) - x, axis=1)
                d[i] = 9.0
                if d.min() >= 2.3:
                    pos.append(x)
                    bonds[i] += 1
                    bonds.append(1)
                    break
            else:
                ok = False
                break
        if not ok:
            continue
        hpos = []
        for _ in range(n_h):
            for _ in range(500):
                free = [i for i in range(len(pos)) if bonds[i] < VALENCE[syms[i]]]
                if not free:
                    break
                i = int(rng.choice(free))
                x = pos[i] + 1.09 * unit()
                others = np.array(pos + hpos)
                d = np.linalg.norm(others - x, axis=1)
                d[i] = 9.0
                if d.min() >= 1.8:
                    hpos.append(x)
                    bonds[i] += 1
                    break
            else:
                ok = False
                break
        if ok and len(hpos) == n_h:
            atoms = Atoms(syms + ["H"] * n_h, positions=np.array(pos + hpos))
            atoms.center(vacuum=5.0)
            return atoms


def _med_ms(t):
    return 1e3 * statistics.median(t)


def path_force_calls(model, atoms, dtype, repeats, threads):
    """Interleaved get_forces calls (after a position change) on the fast and the exact path;
    wall-clock seconds per call for each."""
    calcs = {c: HydraGNNCalculator(model, dtype=dtype, threads=threads, compress=c) for c in (True, False)}
    images = {}
    for c, calc in calcs.items():
        images[c] = atoms.copy()
        images[c].calc = calc
        for _ in range(2):  # warm-up
            images[c].positions[0, 0] += 1e-6
            images[c].get_forces()
    times = {True: [], False: []}
    for k in range(repeats):
        for c in ((True, False) if k % 2 else (False, True)):
            images[c].positions[0, 0] += 1e-6 if k % 2 else -1e-6
            t0 = time.perf_counter()
            images[c].get_forces()
            times[c].append(time.perf_counter() - t0)
    return times, {c: calc.path_info for c, calc in calcs.items()}


def screening(model, head, molecules, batch_size, rounds, threads):
    """structures/s for energy + forces of `molecules`, loop vs batch, fast vs exact, interleaved.
    Loop and batch use calculators of their own: a model that has evaluated a large batch on the
    fast path stays slower on small structures afterwards (its per-call cost follows the
    largest structure it has seen), which would make the loop look slow."""
    calcs = {(c, how): HydraGNNCalculator(model, head=head, threads=threads, compress=c)
             for c in (True, False) for how in ("loop", "batch")}
    bs = batch_size or len(molecules)

    def loop(calc):
        t0 = time.perf_counter()
        for m in molecules:
            a = m.copy()
            a.calc = calc
            a.get_forces()
        return len(molecules) / (time.perf_counter() - t0)

    def batch(calc):
        t0 = time.perf_counter()
        for i in range(0, len(molecules), bs):
            calc.batch(molecules[i:i + bs], properties=["energy", "forces"])
        return len(molecules) / (time.perf_counter() - t0)

    warm = molecules[:10]
    for (c, how), calc in calcs.items():  # warm-up
        if how == "loop":
            for m in warm:
                x = m.copy()
                x.calc = calc
                x.get_forces()
        else:
            calc.batch(warm, properties=["energy", "forces"])
    rates = {key: [] for key in calcs}
    for r in range(rounds):
        order = list(calcs)
        if r % 2:
            order.reverse()
        for c, how in order:
            rates[(c, how)].append((loop if how == "loop" else batch)(calcs[(c, how)]))
    return rates, {c: calcs[(c, "loop")].path_info for c in (True, False)}


def paths(a, model, tmp):
    print("\n## Fast path (compress=True) vs exact path (compress=False), wall time, "
          f"libtorch threads {a.threads}")
    default = REPO / "potentials" / "metals_schnet.model"
    pmodel = a.path_model or (default if default.exists() else model)
    cu = crystal(108, "Cu")
    print(f"\n108-atom rattled fcc Cu, get_forces after a position change (energy, forces, stress), "
          f"{pmodel}, median of {a.path_repeats} interleaved calls")
    print("| dtype | fast path (ms) | exact path (ms) | speed-up | path reported (compress=True) |")
    print("| --- | --- | --- | --- | --- |")
    out = {}
    for dtype in ("float64", "float32"):
        t, info = path_force_calls(pmodel, cu, dtype, a.path_repeats, a.threads)
        f, e = _med_ms(t[True]), _med_ms(t[False])
        out[dtype] = (f, e)
        print(f"| {dtype} | {f:.2f} | {e:.2f} | {e / f:.2f}× | {info[True]['path']} |")

    default = REPO / "potentials" / "joint_schnet.model"
    mmodel = a.mol_model or (default if default.exists() else None)
    if mmodel is None:
        mmodel = tmp / "random_hcno.model"
        exe = REPO / "target" / "release" / "examples" / "random_model"
        subprocess.run([str(exe), str(mmodel), "SchNet", "H,C,N,O", "5.0", "3", "float64", "5"], check=True)
    head = a.mol_head
    if head is None:
        probe = HydraGNNCalculator(mmodel)
        branches = probe.info.get("branches") or []
        names = [b if isinstance(b, str) else b.get("name") for b in branches]
        head = "molecules" if "molecules" in names else None
    rng = np.random.default_rng(0)
    mols = [qm9_like(rng) for _ in range(a.molecules)]
    bs = a.batch_size or len(mols)
    print(f"\nscreening {len(mols)} QM9-sized molecules ({mols[0].get_chemical_formula()}, 18 atoms), energy + forces, "
          f"{mmodel}{f' (branch {head})' if head else ''}, float64, structures/s, median of {a.path_rounds} rounds; "
          f"batch: calc.batch of {bs} structures per call")
    rates, info = screening(mmodel, head, mols, a.batch_size, a.path_rounds, a.threads)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print("| path | loop (structures/s) | batch (structures/s) | batch / loop |")
    print("| --- | --- | --- | --- |")
    for c, name in ((True, f"fast (compress=True; runs {info[True]['path']})"), (False, "exact (compress=False)")):
        print(f"| {name} | {med[(c, 'loop')]:.1f} | {med[(c, 'batch')]:.1f} | {med[(c, 'batch')] / med[(c, 'loop')]:.2f}× |")
    print(f"| fast / exact | {med[(True, 'loop')] / med[(False, 'loop')]:.2f}× | "
          f"{med[(True, 'batch')] / med[(False, 'batch')]:.2f}× | |")
    return out, med


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model file (default: a random SchNet Cu model)")
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--repeats", type=int, default=40, help="timed calls per size and method")
    p.add_argument("--rounds", type=int, default=4, help="the calls are split into this many alternating rounds")
    p.add_argument("--threads", type=int, default=1, help="libtorch intra-op threads")
    p.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                   help="process CPU time (steady on a loaded machine; = wall time on an idle one with 1 thread) or wall time")
    p.add_argument("--path-model", help="model of the fast/exact comparison (default potentials/metals_schnet.model, "
                   "else the overhead model)")
    p.add_argument("--mol-model", help="model with H, C, N, O for the screening benchmark "
                   "(default potentials/joint_schnet.model)")
    p.add_argument("--mol-head", help="its branch (default: 'molecules' if the model has one)")
    p.add_argument("--molecules", type=int, default=200, help="molecules screened per round")
    p.add_argument("--batch-size", type=int, default=0, help="structures per calc.batch call (0: all)")
    p.add_argument("--path-repeats", type=int, default=20, help="108-atom force calls per path and dtype")
    p.add_argument("--path-rounds", type=int, default=3, help="screening rounds (median reported)")
    p.add_argument("--skip-overhead", action="store_true", help="only the fast/exact comparison")
    p.add_argument("--quick", action="store_true", help="a smoke test: fewer calls, sizes and molecules")
    a = p.parse_args(argv)
    if a.quick:
        a.sizes, a.repeats, a.rounds = [100], 8, 2
        a.molecules, a.path_repeats, a.path_rounds = 20, 4, 1

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = a.model
        if model is None:
            model = tmp / "random_schnet.model"
            exe = REPO / "target" / "release" / "examples" / "random_model"
            subprocess.run([str(exe), str(model), "SchNet", "Cu", "4.5", "2", "float64", "7"], check=True)
        lib = hydragnn_ase.library_path()
        calc = HydraGNNCalculator(model, threads=a.threads)
        rows = [] if a.skip_overhead else overhead(a, calc, model, lib, tmp)
        paths(a, model, tmp)
    return rows


if __name__ == "__main__":
    main()
