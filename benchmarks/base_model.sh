#!/usr/bin/env bash
# The shipped base model (issue 15): one SchNet backbone trained jointly, with one branch per
# dataset, on everything the project's generator makes for Cu/Al/Ni and H/C/N/O: EMT bulk metals
# (strained, rattled cells), EMT random alloys, EMT vacancies, EMT fcc(111) slabs and GFN2-xTB
# molecules. Then two specialists, on the alloys alone and on the slabs alone, and one table:
# base (its alloys / slabs111 branch) against the specialist on the same held-out test frames.
#
#   benchmarks/base_model.sh                          # ~30 min: data, 720-s base, 2 x 240-s specialists
#   HYDRAGNN_BENCH_SMOKE=1 benchmarks/base_model.sh   # pipeline check: small data, 40-s/20-s runs; 150 s CPU, 10 min wall under load
#
# Data (scripts/generate_data.py, seed 0, trajectories of 10 frames) in $DIR/data:
#   metals     --only metals --metals-frames M          bulk Cu/Al/Ni, strained +-2 %, 300-900 K
#   molecules  --only molecules --molecules-frames M    GFN2-xTB g2 H/C/N/O molecules
#   alloys, vacancies, slabs111: --only transfer --transfer-frames T (vacancies: a prefix of V
#              frames of its own run, 107-atom cells are the costly ones)
# metals and molecules are ingested with a random 80/10/10 split (seed 0, as the other shipped
# models); alloys, vacancies and slabs111 are split by position (first 80 % train, next 10 % val,
# last 10 % test), so their validation and test frames come from whole trajectories (compositions,
# slabs) that training never saw. The specialists use the very same alloys.bp / slabs111.bp.
#
# Training: benchmarks/base_model.json (SchNet 64x3, cutoff 5 A, force weight 100, mixed batches
# of 8 with temperature sampling alpha 0.5, AdamW 1e-3 decaying to 1e-5 over max_time, EMA 0.998),
# `mpirun -np NP` (default 2). Specialists: the same config with one dataset and max_time
# SPEC_TIME. Evaluation: `hydragnn eval --split testset --json` of the base's best.model (branch
# alloys, slabs111; and every branch on its own test split) and of each specialist.
#
# Idempotent: data, datasets and trained models are reused while their inputs are unchanged
# (HYDRAGNN_BENCH_RETRAIN=1 trains again); evaluation and the table always rerun.
# Outputs under runs/base_model/ (smoke: runs/base_model_smoke/): data/, *.bp, base/ and
# spec_{alloys,slabs111}/ (trainer outputs, bench_time.txt: wall, user, sys seconds, uptime.txt:
# the load before and after), eval_*.json, base_model.json (the table's data).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. scripts/env.sh
HYDRAGNN="${HYDRAGNN_BIN:-$ROOT/target/release/hydragnn}"  # HYDRAGNN_BIN: another build of it
[ -x "$HYDRAGNN" ] || { echo "error: $HYDRAGNN missing: cargo build --release -p hydragnn-train" >&2; exit 1; }
CONFIG=benchmarks/base_model.json
NP="${HYDRAGNN_BENCH_NP:-2}"
SEED=0
if [ "${HYDRAGNN_BENCH_SMOKE:-0}" = 1 ]; then
  DIR=runs/base_model_smoke METALS=200 MOLECULES=200 TRANSFER=100 VACANCIES=50 BASE_TIME=40 SPEC_TIME=20
else
  DIR=runs/base_model METALS=1200 MOLECULES=1000 TRANSFER=1200 VACANCIES=200 BASE_TIME= SPEC_TIME=240
fi
SETS=(metals alloys vacancies slabs111 molecules)
SPECIALISTS=(alloys slabs111)
mkdir -p "$DIR/data"
step() { printf '\n==== %s ====\n' "$*"; }
sha() { cat "$@" | sha256sum | cut -d' ' -f1; }
gen() { OMP_NUM_THREADS=1 nice -n 19 python scripts/generate_data.py --out "$DIR/data" --seed "$SEED" "$@"; }

step "data: metals $METALS, molecules $MOLECULES, alloys/slabs111 $TRANSFER, vacancies $VACANCIES frames (seed $SEED)"
# Each file is regenerated only when absent or made with other sizes (the .stamp holds the sizes).
if [ "$(cat "$DIR/data/metals.xyz.stamp" 2>/dev/null)" != "$METALS" ] || [ ! -f "$DIR/data/metals.xyz" ]; then
  gen --only metals --metals-frames "$METALS" && echo "$METALS" > "$DIR/data/metals.xyz.stamp"
fi
if [ "$(cat "$DIR/data/molecules.xyz.stamp" 2>/dev/null)" != "$MOLECULES" ] || [ ! -f "$DIR/data/molecules.xyz" ]; then
  gen --only molecules --molecules-frames "$MOLECULES" && echo "$MOLECULES" > "$DIR/data/molecules.xyz.stamp"
fi
for s in alloys slabs111; do
  if [ "$(cat "$DIR/data/transfer_$s.xyz.stamp" 2>/dev/null)" != "$TRANSFER" ] || [ ! -f "$DIR/data/transfer_$s.xyz" ]; then
    gen --only transfer --transfer-sets "$s" --transfer-frames "$TRANSFER" && echo "$TRANSFER" > "$DIR/data/transfer_$s.xyz.stamp"
  fi
done
if [ "$(cat "$DIR/data/transfer_vacancies.xyz.stamp" 2>/dev/null)" != "$VACANCIES" ] || [ ! -f "$DIR/data/transfer_vacancies.xyz" ]; then
  gen --only transfer --transfer-sets vacancies --transfer-frames "$VACANCIES" && echo "$VACANCIES" > "$DIR/data/transfer_vacancies.xyz.stamp"
fi
ls -l "$DIR"/data/*.xyz

step "split by position: alloys, vacancies, slabs111 (80 % train, 10 % val, 10 % test)"
nice -n 19 python - "$DIR/data" alloys vacancies slabs111 <<'EOF'
import os, sys
import ase.io
d = sys.argv[1]
for name in sys.argv[2:]:
    frames = ase.io.read(os.path.join(d, f"transfer_{name}.xyz"), index=":")
    n = len(frames)
    a, b = n * 8 // 10, n * 9 // 10
    for split, fr in (("train", frames[:a]), ("val", frames[a:b]), ("test", frames[b:])):
        path = os.path.join(d, f"{name}_{split}.xyz")
        tmp = path + ".tmp.xyz"
        ase.io.write(tmp, fr, format="extxyz")
        # Rewrite only when the content changed, so that the ingested datasets' stamps stay valid.
        if not os.path.exists(path) or open(path, "rb").read() != open(tmp, "rb").read():
            os.replace(tmp, path)
        else:
            os.remove(tmp)
    print(f"{name}: {n} frames: train {a}, val {b - a}, test {n - b}")
EOF

for s in "${SETS[@]}"; do
  step "ingest: $DIR/$s.bp"
  case "$s" in
    metals|molecules) inputs=("$DIR/data/$s.xyz") ;;
    *) inputs=("$DIR/data/${s}_train.xyz" "$DIR/data/${s}_val.xyz" "$DIR/data/${s}_test.xyz") ;;
  esac
  want="$(sha "${inputs[@]}")"
  if [ "$(cat "$DIR/$s.bp.stamp" 2>/dev/null)" != "$want" ] || [ ! -e "$DIR/$s.bp" ]; then
    case "$s" in
      metals|molecules)
        nice -n 19 "$HYDRAGNN" ingest -o "$DIR/$s.bp" -n "$s" "${inputs[0]}" --fractions 0.8 0.1 0.1 \
          --seed "$SEED" --overwrite ;;
      *)
        nice -n 19 "$HYDRAGNN" ingest -o "$DIR/$s.bp" -n "$s" --train "${inputs[0]}" --val "${inputs[1]}" \
          --test "${inputs[2]}" --overwrite ;;
    esac
    echo "$want" > "$DIR/$s.bp.stamp"
  else
    echo "up to date"
  fi
done

# The configs the trainer runs, next to the datasets: the base (CONFIG with the paths pointed at
# DIR, and in smoke mode max_time BASE_TIME) and one specialist per SPECIALISTS entry (the same
# with that dataset only and max_time SPEC_TIME).
nice -n 19 python - "$CONFIG" "$DIR" "$BASE_TIME" "$SPEC_TIME" "${SPECIALISTS[@]}" <<'EOF'
import json, os, sys
src, d, base_time, spec_time, *specs = sys.argv[1:]
def write(c, name):
    dst = os.path.join(d, name)
    text = json.dumps(c, indent=2) + "\n"
    if not os.path.exists(dst) or open(dst).read() != text:
        open(dst, "w").write(text)
c = json.load(open(src))
for ds in c["Dataset"]["datasets"]:
    ds["path"] = ds["name"] + ".bp"  # relative to the written config, which lies next to them
if base_time:
    c["NeuralNetwork"]["Training"]["max_time"] = float(base_time)
write(c, "base.json")
for s in specs:
    sc = json.loads(json.dumps(c))
    sc["Dataset"]["name"] = s
    sc["Dataset"]["datasets"] = [ds for ds in c["Dataset"]["datasets"] if ds["name"] == s]
    sc["Dataset"].pop("sampling", None)
    sc["NeuralNetwork"]["Training"]["max_time"] = float(spec_time)
    write(sc, f"spec_{s}.json")
EOF

train() { # name: trains $DIR/name.json into $DIR/name
  local name="$1" cfg="$DIR/$1.json" out="$DIR/$1" want
  step "train $name: mpirun -np $NP hydragnn train $cfg --out $out"
  want="$(sha "$cfg" "$DIR"/*.bp.stamp)"
  if [ "${HYDRAGNN_BENCH_RETRAIN:-0}" = 1 ] || [ "$(cat "$out.stamp" 2>/dev/null)" != "$want" ] \
     || [ ! -f "$out/best.model" ] || [ ! -f "$out/bench_time.txt" ]; then
    rm -rf "$out" "$out.stamp"
    local tfile load0
    tfile="$(mktemp)"
    load0="$(uptime)"
    # wall seconds, user and system CPU seconds of the whole command (all ranks)
    /usr/bin/time -f '%e %U %S' -o "$tfile" nice -n 19 mpirun -np "$NP" "$HYDRAGNN" train "$cfg" --out "$out"
    mv "$tfile" "$out/bench_time.txt"
    printf 'before: %s\nafter:  %s\n' "$load0" "$(uptime)" > "$out/uptime.txt"
    echo "$want" > "$out.stamp"
  else
    echo "up to date (HYDRAGNN_BENCH_RETRAIN=1 to train again)"
  fi
}
train base
for s in "${SPECIALISTS[@]}"; do train "spec_$s"; done

step "evaluate on the test splits"
for s in "${SETS[@]}"; do
  nice -n 19 "$HYDRAGNN" eval "$DIR/base/best.model" "$DIR/$s.bp" --branch "$s" --split testset \
    --json "$DIR/eval_base_$s.json" >/dev/null
done
for s in "${SPECIALISTS[@]}"; do
  nice -n 19 "$HYDRAGNN" eval "$DIR/spec_$s/best.model" "$DIR/$s.bp" --split testset \
    --json "$DIR/eval_spec_$s.json" >/dev/null
done

step "result"
python - "$DIR" "$NP" "${SETS[@]}" -- "${SPECIALISTS[@]}" <<'EOF'
import json, os, sys
d, np_ = sys.argv[1], sys.argv[2]
rest = sys.argv[3:]
sets, specs = rest[:rest.index("--")], rest[rest.index("--") + 1:]
def ev(path):
    (split, m), = json.load(open(path))["metrics"].items()
    return {"n_graphs": m["n_graphs"], "force_mae": m["forces"]["mae"],
            "energy_mae_per_atom": m["energy_per_atom"]["mae"]}
def timing(run):
    wall, user, sys_ = (float(x) for x in open(os.path.join(d, run, "bench_time.txt")).read().split())
    cfg = json.load(open(os.path.join(d, f"{run}.json")))
    m = json.load(open(os.path.join(d, run, "metrics.json")))
    epochs = len(m["epochs"]) if isinstance(m["epochs"], list) else m["epochs"].get("epoch")
    return {"wall_s": wall, "cpu_s": user + sys_, "epochs": epochs, "best_epoch": m.get("best_epoch"),
            "max_time": cfg["NeuralNetwork"]["Training"].get("max_time"),
            "uptime": open(os.path.join(d, run, "uptime.txt")).read().strip()}
out = {"base": timing("base"), "base_test": {s: ev(os.path.join(d, f"eval_base_{s}.json")) for s in sets},
       "specialists": {}}
for s in specs:
    out["specialists"][s] = dict(timing(f"spec_{s}"), test=ev(os.path.join(d, f"eval_spec_{s}.json")))
b = out["base"]
print(f"base: mpirun -np {np_}, max_time {b['max_time']} s: wall {b['wall_s']:.0f} s, CPU {b['cpu_s']:.0f} s, "
      f"{b['epochs']} epochs, best {b['best_epoch']}")
for line in b["uptime"].splitlines():
    print("  " + line)
for s, r in out["specialists"].items():
    print(f"specialist {s}: max_time {r['max_time']} s: wall {r['wall_s']:.0f} s, CPU {r['cpu_s']:.0f} s, "
          f"{r['epochs']} epochs, best {r['best_epoch']}")
print("\nbase model, every branch on its own test split:")
for s in sets:
    e = out["base_test"][s]
    print(f"  {s:10s} {e['n_graphs']:4d} graphs  force MAE {e['force_mae']:.4f} eV/A  "
          f"energy MAE {1000 * e['energy_mae_per_atom']:.2f} meV/atom")
hdr = ("test set", "graphs", "base F MAE", "spec F MAE", "F ratio", "base E MAE", "spec E MAE", "E ratio")
units = ("", "", "(eV/A)", "(eV/A)", "base/spec", "(meV/atom)", "(meV/atom)", "base/spec")
table = [hdr, units]
for s in specs:
    bb, sp = out["base_test"][s], out["specialists"][s]["test"]
    fr = bb["force_mae"] / sp["force_mae"]
    er = bb["energy_mae_per_atom"] / sp["energy_mae_per_atom"]
    out["specialists"][s]["ratio"] = {"force": fr, "energy": er}
    table.append((s, str(sp["n_graphs"]), f"{bb['force_mae']:.4f}", f"{sp['force_mae']:.4f}", f"{fr:.2f}",
                  f"{1000 * bb['energy_mae_per_atom']:.2f}", f"{1000 * sp['energy_mae_per_atom']:.2f}",
                  f"{er:.2f}"))
print("\nbase (its branch) against the specialist trained on that data alone (target: ratio <= 2):")
w = [max(len(row[i]) for row in table) for i in range(len(hdr))]
for i, row in enumerate(table):
    print("  ".join(c.rjust(w[j]) for j, c in enumerate(row)))
    if i == 1:
        print("  ".join("-" * x for x in w))
json.dump(out, open(os.path.join(d, "base_model.json"), "w"), indent=2)
print(f"\nwrote {os.path.join(d, 'base_model.json')}")
EOF
