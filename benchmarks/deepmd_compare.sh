#!/usr/bin/env bash
# Accuracy per training budget, our side of the comparison with DeePMD-kit (issue 10): train on the
# generator's metals data (1800 EMT frames of Cu/Al/Ni, seed 0, random 1440/180/180 split) for
# 857 s with `mpirun -np 2` (the budget potentials/metals_schnet.model took), then evaluate the
# best model on the test split and on three EMT sets the model never saw (vacancies, (111) slabs,
# random alloys) and print one table next to the numbers DeePMD-kit se_e2_a reached in the same
# budget (quoted from issue 10 as constants, not rerun here).
#
#   benchmarks/deepmd_compare.sh                     # benchmarks/metals_accuracy_v16.json (mae + stress), ~15 min
#   benchmarks/deepmd_compare.sh my_config.json      # another config (its Dataset path must point
#                                                    # at runs/deepmd_compare/metals.bp)
#   HYDRAGNN_BENCH_SMOKE=1 benchmarks/deepmd_compare.sh   # pipeline check: 300 frames, 30 s
#
# Idempotent: data, dataset and the trained model are reused while their inputs are unchanged
# (data: generated if absent; training: redone when the config or the dataset changed, or with
# HYDRAGNN_BENCH_RETRAIN=1; a rebuilt binary alone does not retrain). Evaluation always reruns.
# Environment: HYDRAGNN_BENCH_SMOKE=1 (runs/deepmd_compare_smoke/, 300 metals frames, 30 transfer
# frames per set, max_time 30), HYDRAGNN_BENCH_NP (ranks, default 2), HYDRAGNN_BENCH_OUT (training
# directory), HYDRAGNN_BENCH_RETRAIN=1.
# Outputs in the training directory: the trainer's files, bench_time.txt (wall and CPU seconds of
# the mpirun command), eval_*.json (hydragnn eval --json), deepmd_compare.json (the table's data).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. scripts/env.sh
HYDRAGNN="$ROOT/target/release/hydragnn"
[ -x "$HYDRAGNN" ] || { echo "error: $HYDRAGNN missing: cargo build --release -p hydragnn-train" >&2; exit 1; }

DEFAULT_CONFIG=benchmarks/metals_accuracy_v16.json
CONFIG="${1:-$DEFAULT_CONFIG}"
[ -f "$CONFIG" ] || { echo "error: no config $CONFIG" >&2; exit 2; }
NP="${HYDRAGNN_BENCH_NP:-2}"
SEED=0
if [ "${HYDRAGNN_BENCH_SMOKE:-0}" = 1 ]; then
  DIR=runs/deepmd_compare_smoke METALS_FRAMES=300 TRANSFER_FRAMES=30 MAX_TIME=30
else
  DIR=runs/deepmd_compare METALS_FRAMES=1800 TRANSFER_FRAMES=150 MAX_TIME=
fi
if [ -n "${HYDRAGNN_BENCH_OUT:-}" ]; then
  OUT="$HYDRAGNN_BENCH_OUT"
elif [ "$CONFIG" -ef "$DEFAULT_CONFIG" ]; then
  OUT="$DIR/train"
else
  OUT="$DIR/train_$(basename "$CONFIG" .json)"
fi
TRANSFER=(transfer_vacancies transfer_slabs111 transfer_alloys)
mkdir -p "$DIR"
step() { printf '\n==== %s ====\n' "$*"; }
sha() { cat "$@" | sha256sum | cut -d' ' -f1; }

step "data: $METALS_FRAMES metals frames + ${TRANSFER_FRAMES} per transfer set (seed $SEED) in $DIR"
if [ ! -f "$DIR/metals.xyz" ]; then
  python scripts/generate_data.py --out "$DIR" --seed "$SEED" --only metals --metals-frames "$METALS_FRAMES"
else
  echo "metals.xyz present"
fi
missing=0
for t in "${TRANSFER[@]}"; do [ -f "$DIR/$t.xyz" ] || missing=1; done
if [ "$missing" = 1 ]; then
  python scripts/generate_data.py --out "$DIR" --seed "$SEED" --only transfer --transfer-frames "$TRANSFER_FRAMES"
else
  echo "transfer sets present"
fi

step "ingest: $DIR/metals.xyz -> $DIR/metals.bp (random 80/10/10, seed $SEED)"
want="$(sha "$DIR/metals.xyz")"
if [ "$(cat "$DIR/metals.bp.stamp" 2>/dev/null)" != "$want" ] || [ ! -e "$DIR/metals.bp" ]; then
  "$HYDRAGNN" ingest -o "$DIR/metals.bp" -n metals "$DIR/metals.xyz" --fractions 0.8 0.1 0.1 \
    --seed "$SEED" --overwrite
  echo "$want" > "$DIR/metals.bp.stamp"
else
  echo "up to date"
fi

# The config the trainer runs: CONFIG itself, or (smoke) a copy on the smoke data with max_time 30.
RUN_CONFIG="$CONFIG"
if [ -n "$MAX_TIME" ]; then
  RUN_CONFIG="$DIR/$(basename "$CONFIG" .json).smoke.json"
  python - "$CONFIG" "$RUN_CONFIG" "$MAX_TIME" <<'EOF'
import json, sys
src, dst, max_time = sys.argv[1], sys.argv[2], float(sys.argv[3])
c = json.load(open(src))
for d in c["Dataset"]["datasets"]:
    d["path"] = "metals.bp"  # relative to dst, which lies next to the smoke dataset
c["NeuralNetwork"]["Training"]["max_time"] = max_time
json.dump(c, open(dst, "w"), indent=2)
EOF
fi

step "train: mpirun -np $NP hydragnn train $RUN_CONFIG --out $OUT"
want="$(sha "$RUN_CONFIG" "$DIR/metals.bp.stamp")"
if [ "${HYDRAGNN_BENCH_RETRAIN:-0}" = 1 ] || [ "$(cat "$OUT.stamp" 2>/dev/null)" != "$want" ] \
   || [ ! -f "$OUT/best.model" ] || [ ! -f "$OUT/bench_time.txt" ]; then
  rm -rf "$OUT" "$OUT.stamp"
  tfile="$(mktemp)"
  # wall seconds, user and system CPU seconds of the whole command (all ranks)
  /usr/bin/time -f '%e %U %S' -o "$tfile" \
    mpirun -np "$NP" "$HYDRAGNN" train "$RUN_CONFIG" --out "$OUT"
  mv "$tfile" "$OUT/bench_time.txt"
  echo "$want" > "$OUT.stamp"
else
  echo "up to date (trained model reused; HYDRAGNN_BENCH_RETRAIN=1 to train again)"
fi

step "evaluate $OUT/best.model"
"$HYDRAGNN" eval "$OUT/best.model" "$DIR/metals.bp" --split testset --json "$OUT/eval_testset.json"
for t in "${TRANSFER[@]}"; do
  "$HYDRAGNN" eval "$OUT/best.model" "$DIR/$t.xyz" --json "$OUT/eval_$t.json"
done

step "result"
python - "$OUT" "$RUN_CONFIG" "$NP" "$DIR" "$METALS_FRAMES" <<'EOF'
import json, os, sys

out, config, np_, data, n_frames = sys.argv[1:6]
# DeePMD-kit se_e2_a (cutoff 5 A, float64, compressed), 857 s on the same 2 cores, same data and
# split: force MAE in eV/A as reported in issue 10 (min, max over the sets the issue groups;
# energies not reported). Also the issue's numbers for our SchNet (potentials/metals_schnet.model).
DEEPMD = {"testset": (0.0062, 0.0062), "transfer_vacancies": (0.008, 0.018),
          "transfer_slabs111": (0.008, 0.018), "transfer_alloys": (0.47, 0.69)}
DEEPMD_WALL_S = 857.0
ISSUE_SCHNET = {"testset": (0.0201, 0.0201), "transfer_vacancies": (0.035, 0.072),
                "transfer_slabs111": (0.035, 0.072), "transfer_alloys": (0.16, 0.38)}
LABEL = {"testset": "test split", "transfer_vacancies": "vacancies (unseen)",
         "transfer_slabs111": "(111) slabs (unseen)", "transfer_alloys": "random alloys (unseen)"}

wall, user, sys_ = (float(x) for x in open(os.path.join(out, "bench_time.txt")).read().split())
cfg = json.load(open(config))
tr = cfg["NeuralNetwork"]["Training"]
m = json.load(open(os.path.join(out, "metrics.json")))
epochs = len(m["epochs"]) if isinstance(m["epochs"], list) else m["epochs"].get("epoch")
rows = {}
for key in DEEPMD:
    e = json.load(open(os.path.join(out, f"eval_{key}.json")))
    (split, mm), = e["metrics"].items()
    rows[key] = {"n_graphs": mm["n_graphs"], "force_mae": mm["forces"]["mae"],
                 "energy_mae_per_atom": mm["energy_per_atom"]["mae"],
                 "deepmd_force_mae": DEEPMD[key], "issue_schnet_force_mae": ISSUE_SCHNET[key]}

def rng(r, fmt):
    return fmt.format(r[0]) if r[0] == r[1] else (fmt + "-" + fmt).format(*r)

print(f"data: {data}/metals.xyz ({n_frames} EMT frames, random 80/10/10 split, seed 0), "
      f"transfer sets {data}/transfer_*.xyz; config {config} (max_time {tr.get('max_time')} s)")
print(f"ours: mpirun -np {np_}, wall {wall:.0f} s (CPU {user + sys_:.0f} s over the ranks), "
      f"best epoch {m['best_epoch']} of {epochs}, model {out}/best.model")
print("DeePMD-kit: se_e2_a, cutoff 5 A, float64, compressed, 857 s on the same 2 cores: "
      "reported in issue 10 (not rerun here)\n")
hdr = ("set", "graphs", "ours F MAE", "ours E MAE", "DeePMD-kit F MAE", "ours/DeePMD-kit",
       "SchNet in issue 10")
units = ("", "", "(eV/A)", "(meV/atom)", "(issue 10, eV/A)", "(F MAE; >1: DeePMD better)", "(F MAE, eV/A)")
table = [hdr, units]
for key, r in rows.items():
    d = r["deepmd_force_mae"]
    ratio = (r["force_mae"] / d[1], r["force_mae"] / d[0])
    table.append((LABEL[key], str(r["n_graphs"]), f"{r['force_mae']:.4f}",
                  f"{1000 * r['energy_mae_per_atom']:.2f}", rng(d, "{:.4g}"),
                  rng(ratio, "{:.2f}") + "x", rng(r["issue_schnet_force_mae"], "{:.4g}")))
table.append(("wall time (s)", "", f"{wall:.0f}", "", f"{DEEPMD_WALL_S:.0f}",
              f"{wall / DEEPMD_WALL_S:.2f}x", "857"))
w = [max(len(row[i]) for row in table) for i in range(len(hdr))]
for i, row in enumerate(table):
    print("  ".join(c.ljust(w[j]) if j == 0 else c.rjust(w[j]) for j, c in enumerate(row)))
    if i == 1:
        print("  ".join("-" * x for x in w))
print("\nDeePMD-kit energies were not reported; its vacancies and slabs figures are one range for both"
      " sets.")
json.dump({"wall_s": wall, "cpu_s": user + sys_, "np": int(np_), "config": config, "data": data,
           "best_epoch": m["best_epoch"], "epochs": epochs, "deepmd_wall_s": DEEPMD_WALL_S,
           "sets": rows}, open(os.path.join(out, "deepmd_compare.json"), "w"), indent=2)
EOF
