#!/usr/bin/env bash
# A 6-trial hyperparameter search on the metals set (`hydragnn hpo`, 2 trials at a time, 1 thread
# each, 180 s per trial), against the default config (benchmarks/metals_accuracy.json) trained
# alone for the same 180 s on 1 thread; meant to finish in about 15 minutes on a 2-core machine.
# The space (benchmarks/hpo_metals_space.json) leaves out force_weight and the loss type: they
# change what the validation loss measures, so losses would not be comparable across trials.
#
#   benchmarks/hpo_metals.sh                  # outputs in runs/hpo_metals
#   HYDRAGNN_BENCH_DIR=/tmp/hpo benchmarks/hpo_metals.sh
#
# Data: the generator's metals set (1800 EMT frames of Cu/Al/Ni, seed 0, random 80/10/10 split),
# the same as benchmarks/deepmd_compare.sh (reused from runs/deepmd_compare when present).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. scripts/env.sh
HYDRAGNN="$ROOT/target/release/hydragnn"
[ -x "$HYDRAGNN" ] || { echo "error: $HYDRAGNN missing: cargo build --release -p hydragnn-train" >&2; exit 1; }
DIR="${HYDRAGNN_BENCH_DIR:-runs/hpo_metals}"
BUDGET="${HYDRAGNN_BENCH_BUDGET:-180}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
if [ -f runs/deepmd_compare/metals.bp/md.idx ] || [ -d runs/deepmd_compare/metals.bp ]; then
  DATA="$ROOT/runs/deepmd_compare/metals.bp"
else
  [ -f "$DIR/metals.xyz" ] || python scripts/generate_data.py --out "$DIR" --seed 0 --only metals --metals-frames 1800
  [ -e "$DIR/metals.bp" ] || "$HYDRAGNN" ingest -o "$DIR/metals.bp" -n metals "$DIR/metals.xyz" \
    --fractions 0.8 0.1 0.1 --seed 0
  DATA="$DIR/metals.bp"
fi
python - benchmarks/metals_accuracy.json "$DIR/base.json" "$DATA" "$BUDGET" <<'PY'
import json, sys
src, dst, data, budget = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
c = json.load(open(src))
c["Verbosity"]["level"] = 1
c["Dataset"]["datasets"][0]["path"] = data
c["NeuralNetwork"]["Training"]["max_time"] = budget
json.dump(c, open(dst, "w"), indent=2)
PY
export HYDRAGNN_NUM_THREADS=1
start=$(date +%s)
echo "== default config, ${BUDGET} s, 1 thread"
rm -rf "$DIR/default"
"$HYDRAGNN" train "$DIR/base.json" --out "$DIR/default" > "$DIR/default.log" 2>&1
default=$(python -c 'import csv,sys; print(min(float(r["val_loss"]) for r in csv.DictReader(open(sys.argv[1]))))' "$DIR/default/metrics.csv")
echo "default best val loss: $default"
echo "== hydragnn hpo: 6 trials, 2 at a time, ${BUDGET} s each"
rm -rf "$DIR/search"
"$HYDRAGNN" hpo "$DIR/base.json" benchmarks/hpo_metals_space.json --trials 6 --parallel 2 \
  --startup 3 --grace 2 --out "$DIR/search"
best=$(python -c 'import csv,sys; print(min(float(r["val_loss"]) for r in csv.DictReader(open(sys.argv[1]))))' "$DIR/search/hpo.csv")
echo "search best val loss: $best (default $default); wall $(( $(date +%s) - start )) s"
python -c 'import sys; b, d = map(float, sys.argv[1:]); print("the search beat the default config" if b < d else "the search did NOT beat the default config")' "$best" "$default"
echo "table: $DIR/search/hpo.csv  plot: $DIR/search/hpo.png"
