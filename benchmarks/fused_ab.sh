#!/usr/bin/env bash
# The fused kernels (mlip/csrc, HYDRAGNN_FUSED) against libtorch's own operations, in the same run:
# benchmarks/train_breakdown.sh on 1 thread with HYDRAGNN_FUSED=1 and =0 alternately, ROUNDS
# times each, then the median atoms per CPU-second of each and their ratio per backbone.
#   benchmarks/fused_ab.sh [ROUNDS (default 3)] [--models schnet,painn,egnn,egnn-hydragnn] [--steps 20]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3
if [ $# -gt 0 ] && [[ "$1" =~ ^[0-9]+$ ]]; then rounds="$1"; shift; fi
models=schnet,painn,egnn
steps=20
while [ $# -gt 0 ]; do
  case "$1" in
    --models) models="$2"; shift ;;
    --steps) steps="$2"; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
for r in $(seq 1 "$rounds"); do
  for v in 1 0; do
    HYDRAGNN_FUSED=$v benchmarks/train_breakdown.sh --steps "$steps" --threads 1 --models "$models" \
      | awk -v v="$v" -F'|' '/^\| [a-z-]+ \| 1 \|/ { gsub(/ /, "", $2); gsub(/ /, "", $5); print v, $2, $5 }' >> "$out"
  done
  echo "round $r of $rounds done ($(uptime | sed 's/.*load/load/'))" >&2
done
python3 - "$out" <<'PY'
import statistics, sys
ORDER = ["schnet", "painn", "egnn", "egnn-hydragnn"]
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
models = sorted({m for _, m, _ in rows}, key=lambda m: ORDER.index(m) if m in ORDER else 9)
print("| backbone | fused: atoms/CPU-s (median; all) | libtorch ops: atoms/CPU-s (median; all) | ratio of medians |")
print("| --- | --- | --- | --- |")
for m in models:
    on = [float(r[2]) for r in rows if r[1] == m and r[0] == "1"]
    off = [float(r[2]) for r in rows if r[1] == m and r[0] == "0"]
    a, b = statistics.median(on), statistics.median(off)
    fmt = lambda xs: ", ".join(f"{x:.0f}" for x in xs)
    print(f"| {m} | {a:.0f} ({fmt(on)}) | {b:.0f} ({fmt(off)}) | {a / b:.2f} |")
PY
