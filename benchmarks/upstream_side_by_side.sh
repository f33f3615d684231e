#!/usr/bin/env bash
# Our training step against upstream HydraGNN's, side by side in one run: ROUNDS times
# benchmarks/train_breakdown.sh (1 thread; PaiNN, EGNN as HydraGNN builds it, and the trainer's
# own EGNN) then benchmarks/upstream_train_bench.sh (PaiNN, EGNN), alternately; prints every
# round's atoms per CPU-second, the ratios, and the ratio of the medians. Needs the upstream
# environment of benchmarks/upstream_train_bench.sh. Not part of the tests.
#   benchmarks/upstream_side_by_side.sh [ROUNDS (default 3)] [--steps 20]
#
# Architectures: upstream's PaiNN is ours (SiLU in the blocks); upstream's EGNN (E_GCL) has ReLU
# inside its MLPs, no envelope and the distance as its only edge input, which is what
# `--models egnn-hydragnn` builds; the trainer's EGNN (`egnn`: SiLU, cosine envelope, the radial
# basis as extra edge input) is printed against the same upstream figure for reference only.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3
if [ $# -gt 0 ] && [[ "$1" =~ ^[0-9]+$ ]]; then rounds="$1"; shift; fi
steps=20
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) steps="$2"; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
for r in $(seq 1 "$rounds"); do
  benchmarks/train_breakdown.sh --steps "$steps" --threads 1 --models painn,egnn-hydragnn,egnn \
    | awk -v r="$r" -F'|' '/^\| [a-z-]+ \| 1 \|/ { gsub(/ /, "", $2); gsub(/ /, "", $5); print r, "ours", $2, $5 }' >> "$out"
  benchmarks/upstream_train_bench.sh --models painn,egnn --steps "$steps" \
    | awk -v r="$r" '/^upstream [a-z]+:/ { m = $2; sub(/:$/, "", m); for (i = 1; i < NF; i++) if ($(i + 1) == "atoms/CPU-s") print r, "upstream", m, $i }' >> "$out"
  echo "round $r of $rounds done ($(uptime | sed 's/.*load/load/'))" >&2
done
python3 - "$out" "$rounds" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
rounds = int(sys.argv[2])
rate = {(int(r), who, m): float(x) for r, who, m, x in rows}
pairs = [("painn", "painn"), ("egnn-hydragnn", "egnn"), ("egnn", "egnn")]
print("| ours | upstream | " + " | ".join(f"round {r}: ours / upstream (ratio)" for r in range(1, rounds + 1)) + " | ratio of medians |")
print("| --- | --- | " + " | ".join("---" for _ in range(rounds)) + " | --- |")
for ours, up in pairs:
    a = [rate.get((r, "ours", ours)) for r in range(1, rounds + 1)]
    b = [rate.get((r, "upstream", up)) for r in range(1, rounds + 1)]
    if None in a or None in b:
        print(f"| {ours} | {up} | missing runs: ours {a}, upstream {b} |")
        continue
    cells = [f"{x:.0f} / {y:.0f} ({x / y:.2f})" for x, y in zip(a, b)]
    med = statistics.median(a) / statistics.median(b)
    print(f"| {ours} | {up} | " + " | ".join(cells) + f" | {med:.2f} |")
PY
