#!/usr/bin/env bash
# Training precision (issue 15): the same short run on the committed metals slice
# (train/data/metals.xyz, 240 EMT frames, random 80/10/10 split, seed 0) with
# examples/train/metals.json's architecture in bf16, fp32 and fp64: NUM_EPOCH epochs of batch 8
# (24 steps each), no early stopping, 1 rank, 1 libtorch thread. Prints seconds per optimiser
# step, as wall time (the trainer's training time, validation included, over its steps) and as
# CPU time (user + system of the whole command over its steps: on a shared, loaded machine the
# steadier of the two), and the last epoch's validation energy and force MAE (computed by the
# trainer in the master precision: float32 for bf16 and fp32).
#
#   benchmarks/precision_bench.sh            # 12 epochs = 288 steps per precision
#   HYDRAGNN_BENCH_SMOKE=1 benchmarks/precision_bench.sh   # 2 epochs
#
# Outputs under runs/precision/ (smoke: runs/precision_smoke/): metals.bp, <precision>.json,
# <precision>/ (the trainer's files), precision.json (the table's data). Always retrains.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. scripts/env.sh
HYDRAGNN="$ROOT/target/release/hydragnn"
[ -x "$HYDRAGNN" ] || { echo "error: $HYDRAGNN missing: cargo build --release -p hydragnn-train" >&2; exit 1; }
if [ "${HYDRAGNN_BENCH_SMOKE:-0}" = 1 ]; then
  DIR=runs/precision_smoke NUM_EPOCH=2
else
  DIR=runs/precision NUM_EPOCH=12
fi
PRECISIONS="${HYDRAGNN_BENCH_PRECISIONS:-bf16 fp32 fp64}"
mkdir -p "$DIR"
"$HYDRAGNN" ingest -o "$DIR/metals.bp" -n metals train/data/metals.xyz --overwrite >/dev/null
for P in $PRECISIONS; do
  python - examples/train/metals.json "$DIR/$P.json" "$ROOT/$DIR/metals.bp" "$P" "$NUM_EPOCH" <<'EOF'
import json, sys
src, dst, data, p, epochs = sys.argv[1:6]
c = json.load(open(src))
c["Verbosity"] = {"level": 1}
c["Dataset"]["datasets"] = [{"name": "metals", "path": data}]
t = c["NeuralNetwork"]["Training"]
t.update({"precision": p, "num_epoch": int(epochs), "EarlyStopping": False})
t.pop("max_time", None)
c["Visualization"] = {"create_plots": False}
json.dump(c, open(dst, "w"), indent=2)
EOF
  rm -rf "${DIR:?}/$P"
  echo "== hydragnn train $DIR/$P.json --out $DIR/$P"
  tfile="$(mktemp)"
  /usr/bin/time -f '%e %U %S' -o "$tfile" "$HYDRAGNN" train "$DIR/$P.json" --out "$DIR/$P" 2>&1 \
    | grep -E "^precision|^epoch $NUM_EPOCH/" || true
  mv "$tfile" "$DIR/$P/bench_time.txt"
done
python - "$DIR" $PRECISIONS <<'EOF'
import json, os, sys
d, ps = sys.argv[1], sys.argv[2:]
rows = {}
for p in ps:
    m = json.load(open(os.path.join(d, p, "metrics.json")))
    last = m["epochs"][-1]
    b = last["branches"]["metals"]
    wall, user, sys_ = (float(x) for x in open(os.path.join(d, p, "bench_time.txt")).read().split())
    best = m["epochs"][m["best_epoch"] - 1]
    bb = best["branches"]["metals"]
    rows[p] = {"steps": last["step"], "train_s": last["time_s"], "best_epoch": m["best_epoch"],
               "best_val_energy_mae_per_atom": bb["energy_per_atom"]["mae"],
               "best_val_force_mae": bb["forces"]["mae"],
               "s_per_step": last["time_s"] / last["step"], "command_wall_s": wall,
               "command_cpu_s": user + sys_, "cpu_s_per_step": (user + sys_) / last["step"],
               "val_energy_mae_per_atom": b["energy_per_atom"]["mae"],
               "val_force_mae": b["forces"]["mae"], "val_loss": last["val_loss"]}
print(f"{'precision':>9}  {'steps':>5}  {'wall s/step':>11}  {'CPU s/step':>10}  "
      f"{'last val E MAE':>14}  {'last val F MAE':>14}  {'best epoch':>10}  {'its E MAE':>9}  {'its F MAE':>9}")
print(f"{'':>9}  {'':>5}  {'':>11}  {'':>10}  {'(meV/atom)':>14}  {'(eV/A)':>14}  {'':>10}  "
      f"{'(meV/at.)':>9}  {'(eV/A)':>9}")
for p, r in rows.items():
    print(f"{p:>9}  {r['steps']:>5}  {r['s_per_step']:>11.4f}  {r['cpu_s_per_step']:>10.4f}  "
          f"{1000 * r['val_energy_mae_per_atom']:>14.2f}  {r['val_force_mae']:>14.4f}  "
          f"{r['best_epoch']:>10}  {1000 * r['best_val_energy_mae_per_atom']:>9.2f}  "
          f"{r['best_val_force_mae']:>9.4f}")
json.dump(rows, open(os.path.join(d, "precision.json"), "w"), indent=2)
EOF
