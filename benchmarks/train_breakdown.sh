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
rank_steps=60
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

# --ranks: the trainer itself. Time per step from the wall clock of the whole command minus
# nothing: both runs do the same start-up (load, neighbour lists), so the comparison is on
# (steps) / (elapsed), and the CPU time of all ranks comes from /usr/bin/time-like accounting
# (bash's `times` after the run).
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
for m in ${models//,/ }; do
  # The example config with the dataset path, a fixed number of steps and no time cap.
  python - "$(cfg_of "$m")" "$tmp/metals.bp" "$rank_steps" "$tmp/$m.json" <<'PY'
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
  for np in 1 2; do
    out="$tmp/$m.np$np"
    start=$(date +%s.%N)
    HYDRAGNN_NUM_THREADS=1 mpirun -np "$np" hydragnn train "$tmp/$m.json" --out "$out" >/dev/null
    end=$(date +%s.%N)
    # steps.csv: step,epoch,dataset,graphs,atoms,loss,lr (rank 0 writes it; atoms of the global batch).
    atoms=$(awk -F, 'NR>1 {a+=$5} END {print a}' "$out/steps.csv")
    steps=$(awk -F, 'NR>1 {n++} END {print n}' "$out/steps.csv")
    echo "$m -np $np (1 thread per rank): $steps steps, $atoms atoms in $(echo "$end - $start" | bc) s wall (start-up included)" \
      | tee -a "$tmp/summary"
  done
done
