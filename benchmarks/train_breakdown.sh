#!/usr/bin/env bash
# Training throughput by backbone (SchNet, PaiNN, EGNN: the architectures of
# examples/train/metals*.json) with where the time of a step goes (data, forward, force autograd,
# loss, backward, gradient sync, optimizer), on 1 and 2 libtorch threads; then, with --ranks, the
# real trainer under `mpirun -np 1` and `-np 2` (one thread per rank) on the same config for a
# fixed number of steps, and the parallel efficiency.
#   benchmarks/train_breakdown.sh                          # committed slice train/data/metals.xyz
#   benchmarks/train_breakdown.sh data/metals.bp --steps 50 --threads 1,2 --models schnet,painn
#   benchmarks/train_breakdown.sh --ranks [--rank-steps 60] [--models schnet,painn,egnn]
#                                                          # trainer: -np 1 vs -np 2 only
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
ranks=0
rank_steps=24
models=schnet,painn,egnn
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --ranks) ranks=1 ;;
    --rank-steps) rank_steps="$2"; shift ;;
    --models) models="$2"; args+=("$1" "$2"); shift ;;
    *) args+=("$1") ;;
  esac
  shift
done
echo "load: $(uptime)"
if [ "$ranks" = 0 ]; then
  exec cargo bench -q -p hydragnn-train --bench train_breakdown -- "${args[@]}"
fi

# --ranks: the real trainer, `mpirun -np 1` and `-np 2` with one libtorch thread per rank, on the
# same global batch (8: 4 graphs per rank with 2 ranks). Start-up (MPI, loading, neighbour lists,
# model construction) is cancelled by a difference: each config runs twice, for $short and for
# $rank_steps steps, and a step costs (T_long - T_short) / ($rank_steps - $short). Both counts
# stay within the first epoch (192 training graphs / 8 = 24 steps), so no validation pass is
# timed. The same difference of the CPU time of all ranks (GNU time, user + system, of the
# mpirun process tree) gives atoms per CPU-second, which the load of a shared machine distorts
# less than the wall time. The trainer does not time its allreduce (train/src/trainer/run.rs).
short=4
cargo build --release -q -p hydragnn-train
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
hydragnn ingest train/data/metals.xyz --out "$tmp/metals.bp" --name metals >/dev/null
cfg_of() {
  case "$1" in
    schnet) echo examples/train/metals.json ;;
    painn) echo examples/train/metals_painn.json ;;
    egnn) echo examples/train/metals_egnn.json ;;
  esac
}
# run NAME NP STEPS: prints "wall cpu atoms" of one trainer run.
run() {
  local m=$1 np=$2 steps=$3 out="$tmp/$1.np$2.s$3"
  python - "$(cfg_of "$m")" "$tmp/metals.bp" "$steps" "$tmp/$m.$steps.json" <<'PY'
import json, sys
src, data, steps, out = sys.argv[1:]
c = json.load(open(src))
c["Verbosity"]["level"] = 0
c["Dataset"]["datasets"][0]["path"] = data
t = c["NeuralNetwork"]["Training"]
t["max_steps"] = int(steps)
t.pop("max_time", None)
json.dump(c, open(out, "w"))
PY
  HYDRAGNN_NUM_THREADS=1 /usr/bin/time -f "%e %U %S" -o "$out.time" \
    mpirun -np "$np" hydragnn train "$tmp/$m.$steps.json" --out "$out" >/dev/null
  # steps.csv: step,epoch,dataset,graphs,atoms,loss,lr (rank 0 writes it; atoms of the global batch).
  local atoms
  atoms=$(awk -F, 'NR>1 {a+=$5} END {print a}' "$out/steps.csv")
  awk -v a="$atoms" '{print $1, $2 + $3, a}' "$out.time"
}
printf '%-8s %4s %14s %16s %12s\n' backbone ranks atoms/s_wall atoms/CPU-s s/step
for m in ${models//,/ }; do
  declare -A rate=()
  for np in 1 2; do
    read -r w0 c0 a0 < <(run "$m" "$np" "$short")
    read -r w1 c1 a1 < <(run "$m" "$np" "$rank_steps")
    r=$(awk -v w0="$w0" -v w1="$w1" -v c0="$c0" -v c1="$c1" -v a0="$a0" -v a1="$a1" -v n=$((rank_steps - short)) \
      'BEGIN {printf "%.0f %.0f %.4f", (a1 - a0) / (w1 - w0), (a1 - a0) / (c1 - c0), (w1 - w0) / n}')
    read -r aw ac sps <<<"$r"
    rate[$np]=$aw
    printf '%-8s %4s %14s %16s %12s\n' "$m" "$np" "$aw" "$ac" "$sps"
  done
  awk -v r1="${rate[1]}" -v r2="${rate[2]}" -v m="$m" \
    'BEGIN {printf "%-8s parallel efficiency (2 ranks vs 1, wall): %.0f%%\n", m, 100 * r2 / (2 * r1)}'
done
echo "load: $(uptime)"
