#!/usr/bin/env bash
# Screening throughput of `hydragnn screen` (docs/screening.md): structures/s and atoms/s for N
# QM9-sized molecules (9-29 atoms of H, C, N, O; potentials/joint_schnet.model, branch molecules:
# energy, forces and gap) and N 32-atom fcc crystals (Cu/Al/Ni, potentials/metals_schnet.model:
# energy and forces), float64 on the fast path, and the molecules again in float32; each on 1 and
# 2 MPI ranks (one thread each), with the busy time of each stage (read, graph, evaluate, write;
# from PREFIX.summary.json) and the CPU seconds of the whole run.
#
#   benchmarks/screen_bench.sh [N=100000] [WORKDIR=/tmp/hgnn_screen_bench] [CASES]
#
# CASES (default all): molecules (float64), crystals (float64), molecules_fp32 (float32).
#
# The inputs (random, seeded) are written to WORKDIR as extended XYZ once and reused; remove
# WORKDIR afterwards (N = 100,000: 62 MB of molecules, 109 MB of crystals).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
N=${1:-100000}
WORK=${2:-/tmp/hgnn_screen_bench}
CASES=${3:-molecules crystals molecules_fp32}
mkdir -p "$WORK"
cargo build --release -q -p hydragnn-train --bin hydragnn
BIN=target/release/hydragnn

python - "$N" "$WORK" <<'EOF'
import os, sys
import numpy as np
n, work = int(sys.argv[1]), sys.argv[2]
mol = os.path.join(work, f"molecules_{n}.xyz")
if not os.path.exists(mol):
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        na = int(rng.integers(9, 30))
        heavy = max(1, min(9, na // 2))
        sym = list(rng.choice(["C", "C", "C", "N", "O"], heavy)) + ["H"] * (na - heavy)
        pos = [np.zeros(3)]
        while len(pos) < na:
            # Bonded to a random earlier atom, 1.0-1.6 A away, no closer than 0.95 A to any.
            d = rng.normal(size=3)
            p = pos[int(rng.integers(len(pos)))] + d / np.linalg.norm(d) * rng.uniform(1.0, 1.6)
            if min(np.linalg.norm(p - q) for q in pos) > 0.95:
                pos.append(p)
        out.append(f"{na}\nProperties=species:S:1:pos:R:3 pbc=\"F F F\"\n")
        out.extend(f"{s} {x:.6f} {y:.6f} {z:.6f}\n" for s, (x, y, z) in zip(sym, pos))
    open(mol + ".tmp", "w").write("".join(out))
    os.rename(mol + ".tmp", mol)
cry = os.path.join(work, f"crystals_{n}.xyz")
if not os.path.exists(cry):
    rng = np.random.default_rng(1)
    base = np.array([[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]])
    frac = np.array([b + [i, j, k] for i in range(2) for j in range(2) for k in range(2) for b in base]) / 2
    out = []
    for k in range(n):
        a = 2 * rng.uniform(3.55, 3.65)
        sym = rng.choice(["Cu", "Al", "Ni"], 32)
        pos = frac * a + rng.normal(scale=0.05, size=(32, 3))
        out.append(f"32\nLattice=\"{a} 0 0 0 {a} 0 0 0 {a}\" Properties=species:S:1:pos:R:3 pbc=\"T T T\"\n")
        out.extend(f"{s} {x:.6f} {y:.6f} {z:.6f}\n" for s, (x, y, z) in zip(sym, pos))
    open(cry + ".tmp", "w").write("".join(out))
    os.rename(cry + ".tmp", cry)
EOF

run() { # name model input np extra-args...
  local name=$1 model=$2 input=$3 np=$4; shift 4
  local out="$WORK/out_${name}_np${np}"
  rm -rf "$out".*
  # CPU seconds of every process of the run too: on a shared machine the wall time alone would
  # understate what a core does.
  HYDRAGNN_NUM_THREADS=1 python - "$out.cpu" mpirun -np "$np" "$BIN" screen "$model" "$input" \
    -o "$out" --threads 1 --quiet "$@" > "$out.log" <<'PY'
import resource, subprocess, sys
subprocess.run(sys.argv[2:], check=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write(str(r.ru_utime + r.ru_stime))
PY
  python - "$out.summary.json" "$name" "$np" "$(cat "$out.cpu")" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1])); t = s["timings"]; np_ = int(sys.argv[3]); cpu = float(sys.argv[4])
n, atoms, wall = s["n_structures"], s["n_atoms"], s["wall_s"]
print(f"{sys.argv[2]:9s} np={np_} {n} structures, {atoms} atoms: wall {wall:.1f} s, "
      f"{n / wall:,.0f} structures/s, {atoms / wall:,.0f} atoms/s "
      f"({n / wall / np_:,.0f} structures/s per core); busy per rank: read {t['read_s'] / np_:.1f} s, "
      f"graph {t['graph_s'] / np_:.1f} s, evaluate {t['evaluate_s'] / np_:.1f} s, "
      f"write {t['write_s'] / np_:.1f} s; merge {t['merge_s']:.1f} s; failed {s['n_failed']}; "
      f"CPU {cpu:.1f} s = {n / cpu:,.0f} structures per CPU-second")
EOF
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(getconf _NPROCESSORS_ONLN) cores"
for np in 1 2; do
  for case in $CASES; do
    case $case in
      molecules) run molecules potentials/joint_schnet.model "$WORK/molecules_$N.xyz" "$np" --branch molecules ;;
      molecules_fp32) run mol_fp32 potentials/joint_schnet.model "$WORK/molecules_$N.xyz" "$np" --branch molecules --fp32 ;;
      crystals) run crystals potentials/metals_schnet.model "$WORK/crystals_$N.xyz" "$np" ;;
      *) echo "unknown case $case (molecules, molecules_fp32, crystals)" >&2; exit 2 ;;
    esac
  done
done
