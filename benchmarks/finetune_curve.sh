#!/usr/bin/env bash
# The fine-tuning learning curve (issue 15): a downstream set the base model never saw (EMT random
# Cu/Al/Ni alloys, scripts/generate_data.py --only transfer --transfer-sets alloys), trained with
# 10, 100 and 1000 frames twice at the same fixed budget of optimiser steps: fine-tuned from
# potentials/metals_schnet.model (bulk pure Al, Ni, Cu; Training.init_from) and from scratch
# (the same config without init_from). Both are evaluated on the same held-out test frames; the
# base model itself (no training, "N = 0") is the zero-shot reference.
#
#   benchmarks/finetune_curve.sh                             # 6.3 min CPU, 13 min wall here
#   HYDRAGNN_BENCH_SMOKE=1 benchmarks/finetune_curve.sh      # pipeline check: 50 s CPU, 2-5 min wall
#
# Data (seed 0): ALLOY_FRAMES frames in trajectories of 10 (one composition each). Frames are
# split by position, so that whole trajectories are held out: the first POOL frames are the
# training pool (N frames taken at a stride of POOL/N, so every N spans POOL/10 compositions when
# N allows), the next VAL frames (every second) the validation set (best-epoch selection), the
# last TEST frames the test set, from trajectories neither training nor validation saw.
# Every run: examples/train/metals.json's architecture (the base model's), batch 5, AdamW lr 1e-3
# with a linear warm-up of 20 steps and ExponentialDecay x0.5 every STEPS/3 steps, no early
# stopping, exactly STEPS optimiser steps (num_epoch = STEPS / steps per epoch: 200 steps are
# 100 epochs of 10 frames, 10 of 100, 1 of 1000), validation in one batch, 1 rank. The dataset is named `metals` so that the fine-tuned model's branch
# takes the base model's energy head too (Training.init_from copies branches by name).
#
# Idempotent: data, datasets and trained models are reused while their inputs are unchanged
# (HYDRAGNN_BENCH_RETRAIN=1 trains again); evaluation, the table and the plot always rerun.
# Outputs under runs/finetune_curve/ (smoke: runs/finetune_curve_smoke/): data/, alloys_N.bp,
# N/{finetuned,scratch}/ (trainer outputs, eval_test.json, bench_time.txt), base_eval_test.json,
# finetune_curve.json (the table's data), finetune_curve.png (log-x learning curve).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. scripts/env.sh
HYDRAGNN="$ROOT/target/release/hydragnn"
[ -x "$HYDRAGNN" ] || { echo "error: $HYDRAGNN missing: cargo build --release -p hydragnn-train" >&2; exit 1; }
BASE="$ROOT/potentials/metals_schnet.model"
ARCH="$ROOT/examples/train/metals.json"
SEED=0
BATCH=5
if [ "${HYDRAGNN_BENCH_SMOKE:-0}" = 1 ]; then
  DIR=runs/finetune_curve_smoke ALLOY_FRAMES=180 POOL=100 VAL=40 TEST=40 STEPS=40 NS="10 100"
else
  DIR=runs/finetune_curve ALLOY_FRAMES=1300 POOL=1000 VAL=100 TEST=200 STEPS=200 NS="10 100 1000"
fi
mkdir -p "$DIR/data"
step() { printf '\n==== %s ====\n' "$*"; }
sha() { cat "$@" | sha256sum | cut -d' ' -f1; }

step "data: $ALLOY_FRAMES EMT random-alloy frames (seed $SEED) in $DIR/data"
XYZ="$DIR/data/transfer_alloys.xyz"
if [ "$(cat "$XYZ.stamp" 2>/dev/null)" != "$ALLOY_FRAMES" ] || [ ! -f "$XYZ" ]; then
  OMP_NUM_THREADS=1 python scripts/generate_data.py --out "$DIR/data" --seed "$SEED" --only transfer \
    --transfer-sets alloys --transfer-frames "$ALLOY_FRAMES"
  echo "$ALLOY_FRAMES" > "$XYZ.stamp"
else
  echo "present"
fi

step "split: pool $POOL, val $VAL (every 2nd), test $TEST (last frames); train subsets N = $NS"
python - "$XYZ" "$DIR/data" "$POOL" "$VAL" "$TEST" $NS <<'EOF'
import os, sys
import ase.io
xyz, out, pool, val, test = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
ns = [int(n) for n in sys.argv[6:]]
frames = ase.io.read(xyz, index=":")
assert len(frames) >= pool + val + test, (len(frames), pool, val, test)
def write(name, fr):
    path = os.path.join(out, name)
    tmp = path + ".tmp.xyz"
    ase.io.write(tmp, fr, format="extxyz")
    # Rewrite only when the content changed, so the ingested datasets' stamps stay valid.
    if not os.path.exists(path) or open(path, "rb").read() != open(tmp, "rb").read():
        os.replace(tmp, path)
    else:
        os.remove(tmp)
write("val.xyz", frames[pool:pool + val:2])
write("test.xyz", frames[len(frames) - test:])
for n in ns:
    write(f"train_{n}.xyz", frames[:pool:pool // n][:n])
print(f"{len(frames)} frames: train pool {pool}, val {len(frames[pool:pool + val:2])}, test {test}")
EOF

for N in $NS; do
  step "ingest: $DIR/alloys_$N.bp (train $N, val, test)"
  want="$(sha "$DIR/data/train_$N.xyz" "$DIR/data/val.xyz" "$DIR/data/test.xyz")"
  if [ "$(cat "$DIR/alloys_$N.bp.stamp" 2>/dev/null)" != "$want" ] || [ ! -e "$DIR/alloys_$N.bp" ]; then
    "$HYDRAGNN" ingest -o "$DIR/alloys_$N.bp" -n metals --train "$DIR/data/train_$N.xyz" \
      --val "$DIR/data/val.xyz" --test "$DIR/data/test.xyz" --overwrite
    echo "$want" > "$DIR/alloys_$N.bp.stamp"
  else
    echo "up to date"
  fi
  for MODE in finetuned scratch; do
    RUN="$DIR/$N/$MODE"
    mkdir -p "$DIR/$N"
    CFG="$DIR/$N/$MODE.json"
    python - "$ARCH" "$CFG" "$ROOT/$DIR/alloys_$N.bp" "$N" "$BATCH" "$STEPS" "$MODE" "$BASE" "$SEED" <<'EOF'
import json, math, sys
arch, dst, data, n, batch, steps, mode, base, seed = sys.argv[1:10]
n, batch, steps = int(n), int(batch), int(steps)
c = json.load(open(arch))
c["Verbosity"] = {"level": 1}
c["Dataset"]["datasets"] = [{"name": "metals", "path": data}]
per_epoch = math.ceil(n / batch)
assert steps % per_epoch == 0, (steps, per_epoch)
t = c["NeuralNetwork"]["Training"]
t.update({"num_epoch": steps // per_epoch, "batch_size": batch, "EarlyStopping": False,
          "seed": int(seed), "warmup_steps": 20, "val_batch_size": 64,
          "Scheduler": {"type": "ExponentialDecay", "factor": 0.5, "decay_steps": steps // 3,
                        "min_lr": 1e-5}})
t.pop("max_time", None)
if mode == "finetuned":
    t["init_from"] = base
text = json.dumps(c, indent=2) + "\n"
try:
    same = open(dst).read() == text
except FileNotFoundError:
    same = False
if not same:
    open(dst, "w").write(text)
EOF
    step "train $MODE N=$N: hydragnn train $CFG --out $RUN"
    want="$(sha "$CFG" "$DIR/alloys_$N.bp.stamp" "$BASE")"
    if [ "${HYDRAGNN_BENCH_RETRAIN:-0}" = 1 ] || [ "$(cat "$RUN.stamp" 2>/dev/null)" != "$want" ] \
       || [ ! -f "$RUN/best.model" ] || [ ! -f "$RUN/bench_time.txt" ]; then
      rm -rf "$RUN" "$RUN.stamp"
      tfile="$(mktemp)"
      /usr/bin/time -f '%e %U %S' -o "$tfile" "$HYDRAGNN" train "$CFG" --out "$RUN"
      mv "$tfile" "$RUN/bench_time.txt"
      echo "$want" > "$RUN.stamp"
    else
      echo "up to date (HYDRAGNN_BENCH_RETRAIN=1 to train again)"
    fi
    "$HYDRAGNN" eval "$RUN/best.model" "$DIR/alloys_$N.bp" --split testset --json "$RUN/eval_test.json" >/dev/null
  done
done
FIRST="$(echo $NS | cut -d' ' -f1)"
"$HYDRAGNN" eval "$BASE" "$DIR/alloys_$FIRST.bp" --split testset --json "$DIR/base_eval_test.json" >/dev/null

step "result"
python - "$DIR" "$STEPS" "$BATCH" $NS <<'EOF'
import json, os, sys
d, steps, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ns = [int(n) for n in sys.argv[4:]]
def ev(path):
    (split, m), = json.load(open(path))["metrics"].items()
    return {"n_graphs": m["n_graphs"], "force_mae": m["forces"]["mae"],
            "energy_mae_per_atom": m["energy_per_atom"]["mae"]}
base = ev(os.path.join(d, "base_eval_test.json"))
rows = []
for n in ns:
    r = {"n_train": n}
    for mode in ("finetuned", "scratch"):
        run = os.path.join(d, str(n), mode)
        r[mode] = ev(os.path.join(run, "eval_test.json"))
        r[mode]["wall_s"] = float(open(os.path.join(run, "bench_time.txt")).read().split()[0])
    rows.append(r)
print(f"test set: {base['n_graphs']} held-out alloy frames; {steps} optimiser steps of batch {batch} "
      f"per run, 1 rank")
print(f"base model alone (potentials/metals_schnet.model, no training): force MAE "
      f"{base['force_mae']:.4f} eV/A, energy MAE {1000 * base['energy_mae_per_atom']:.2f} meV/atom\n")
hdr = ("N train", "F MAE fine-tuned", "F MAE scratch", "E MAE fine-tuned", "E MAE scratch",
       "wall ft / scratch")
units = ("frames", "(eV/A)", "(eV/A)", "(meV/atom)", "(meV/atom)", "(s)")
table = [hdr, units]
for r in rows:
    f, s = r["finetuned"], r["scratch"]
    table.append((str(r["n_train"]), f"{f['force_mae']:.4f}", f"{s['force_mae']:.4f}",
                  f"{1000 * f['energy_mae_per_atom']:.2f}", f"{1000 * s['energy_mae_per_atom']:.2f}",
                  f"{f['wall_s']:.0f} / {s['wall_s']:.0f}"))
w = [max(len(row[i]) for row in table) for i in range(len(hdr))]
for i, row in enumerate(table):
    print("  ".join(c.rjust(w[j]) for j, c in enumerate(row)))
    if i == 1:
        print("  ".join("-" * x for x in w))
json.dump({"steps": steps, "batch_size": batch, "base": base, "rows": rows},
          open(os.path.join(d, "finetune_curve.json"), "w"), indent=2)

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
for ax, key, scale, label in ((axes[0], "force_mae", 1.0, "force MAE (eV/Å)"),
                              (axes[1], "energy_mae_per_atom", 1000.0, "energy MAE (meV/atom)")):
    for mode, style in (("finetuned", "o-"), ("scratch", "s--")):
        ax.plot(ns, [r[mode][key] * scale for r in rows], style,
                label="fine-tuned from metals_schnet" if mode == "finetuned" else "from scratch")
    ax.axhline(base[key] * scale, color="gray", lw=0.8, ls=":", label="base model, no training")
    ax.set_xscale("log")
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.minorticks_off()
    ax.set_ylim(bottom=0)
    ax.set_xlabel("downstream training frames")
    ax.set_ylabel(label)
    ax.grid(True, which="both", alpha=0.3)
axes[0].legend(fontsize=8)
fig.suptitle(f"Random Cu/Al/Ni alloys (EMT), held-out test set of {base['n_graphs']} frames; "
             f"{steps} steps each", fontsize=9)
fig.tight_layout()
png = os.path.join(d, "finetune_curve.png")
fig.savefig(png, dpi=120)
print(f"\nwrote {png} and {os.path.join(d, 'finetune_curve.json')}")
EOF
