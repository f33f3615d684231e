#!/usr/bin/env bash
# GPU checks of the trainer (issue 16), on a machine with an NVIDIA GPU:
#   1. the training benchmark (benchmarks/train_breakdown.sh's binary) on the GPU, batch 8 and 64,
#      for SchNet, PaiNN and EGNN, and on 1 CPU thread of the same machine for comparison;
#   0. the trainer's loss gradients for one batch, GPU against CPU in float64 (same weights);
#   2. `hydragnn train --device cuda` under `mpiexec -np 1` and `-np 2` (both ranks on the one GPU)
#      in float64: the step losses must agree to 1e-5 relative (as train/tests/train_mpi.rs on
#      the CPU), the first step's loss must equal the CPU run's to 1e-9 and every step's to 1e-4
#      (the same seed gives the same initial weights on both: Model::new draws them on the CPU);
#   3. the energy counters (energy.csv: NVML joules per epoch);
#   4. `hydragnn eval --device cuda` against `--device cpu` on the trained model (float64);
#   5. one epoch with `"precision": "bf16"` (autocast) on the GPU: runs, finite losses, and how
#      far they are from the float64 run's.
# Prints PASS/FAIL per check and exits non-zero on a failure.
#
#   benchmarks/gpu_check.sh [OUTDIR]          # builds with cargo unless HYDRAGNN_BIN_DIR is set
#   HYDRAGNN_BIN_DIR=dir benchmarks/gpu_check.sh OUTDIR
#       # prebuilt: dir/hydragnn and dir/train_breakdown (the bench binary), e.g. built on another
#       # machine against the GPU machine's libtorch; libraries from LD_LIBRARY_PATH
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/gpu_check}
mkdir -p "$out"
out=$(cd "$out" && pwd)
if [ -n "${HYDRAGNN_BIN_DIR:-}" ]; then
  hg="$HYDRAGNN_BIN_DIR/hydragnn"
  bench="$HYDRAGNN_BIN_DIR/train_breakdown"
  mpiexec=${MPIEXEC:-mpiexec}
else
  . scripts/env.sh
  cargo build --release -q -p hydragnn-train --benches || exit 1
  hg=target/release/hydragnn
  bench=$(ls -t target/release/deps/train_breakdown-* | grep -v '\.d$' | head -n1)
  mpiexec=mpiexec
fi
py=$(command -v python3 || command -v python)
# GPU_CHECK_DEVICE=cpu runs the same flow on the CPU (a dry run of this script without a GPU).
dev=${GPU_CHECK_DEVICE:-cuda}
steps=${GPU_CHECK_STEPS:-30}
fail=0
check() { # NAME STATUS
  if [ "$2" = 0 ]; then echo "PASS $1"; else echo "FAIL $1"; fail=1; fi
}
nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv 2>&1 | head -n 3
echo "load: $(uptime)"

rm -rf "$out/metals.bp"
"$hg" ingest train/data/metals.xyz --out "$out/metals.bp" --name metals >/dev/null
check "ingest" $?

echo "== 0. the trainer's loss gradients (energy + forces, double backward), $dev vs CPU, float64 =="
"$bench" "$out/metals.bp" --grad-check --device "$dev" --models schnet,painn,egnn --batch 8 | tee "$out/gradcheck.txt" | grep "grad check"
! grep -q "grad check FAIL" "$out/gradcheck.txt" && grep -q "grad check PASS" "$out/gradcheck.txt"
check "gradients $dev = cpu (1e-9 of the largest)" $?

echo "== 1. training benchmark, GPU (batch 8, then 64) =="
HYDRAGNN_NUM_THREADS=1 "$bench" "$out/metals.bp" --device "$dev" --threads 1 --steps "$steps" --batch 8
check "bench $dev batch 8" $?
HYDRAGNN_NUM_THREADS=1 "$bench" "$out/metals.bp" --device "$dev" --threads 1 --steps $((steps / 3)) --batch 64
check "bench $dev batch 64" $?
echo "== 1b. the same, 1 CPU thread of this machine =="
"$bench" "$out/metals.bp" --device cpu --threads 1 --steps $((steps / 3)) --batch 8
check "bench cpu batch 8" $?

echo "== 2. trainer: -np 1 = -np 2 on the GPU (float64), and GPU = CPU at step 1 =="
"$py" - examples/train/metals.json "$out/metals.bp" "$out/c.json" <<'PY'
import json, sys
src, data, dst = sys.argv[1:]
c = json.load(open(src))
c["Verbosity"]["level"] = 1
c["Dataset"]["datasets"][0]["path"] = data
t = c["NeuralNetwork"]["Training"]
t["num_epoch"] = 2
t["precision"] = "fp64"
t.pop("max_time", None)
json.dump(c, open(dst, "w"), indent=1)
PY
rm -rf "$out/np1" "$out/np2" "$out/cpu1"
t0=$(date +%s%N)
"$mpiexec" -np 1 "$hg" train "$out/c.json" --device "$dev" --out "$out/np1" 2>&1 | tail -n 4
check "train $dev -np 1" "${PIPESTATUS[0]}"
t1=$(date +%s%N)
HYDRAGNN_NUM_THREADS=1 "$mpiexec" -np 2 "$hg" train "$out/c.json" --device "$dev" --out "$out/np2" 2>&1 | tail -n 4
check "train $dev -np 2" "${PIPESTATUS[0]}"
t2=$(date +%s%N)
HYDRAGNN_NO_MPI=1 HYDRAGNN_NUM_THREADS=4 "$hg" train "$out/c.json" --device cpu --out "$out/cpu1" 2>&1 | tail -n 2
check "train cpu" "${PIPESTATUS[0]}"
echo "wall: $dev -np 1 $(( (t1 - t0) / 1000000 )) ms, $dev -np 2 $(( (t2 - t1) / 1000000 )) ms (2 epochs, start-up included)"
"$py" - "$out" <<'PY'
import sys
out = sys.argv[1]
def losses(d):
    rows = [l.split(",") for l in open(f"{out}/{d}/steps.csv") if l[0].isdigit()]
    return [float(r[5]) for r in rows]
a, b, c = losses("np1"), losses("np2"), losses("cpu1")
worst = max(abs(x - y) / abs(x) for x, y in zip(a, b))
print(f"steps: np1 {len(a)}, np2 {len(b)}; max relative step-loss difference np1 vs np2: {worst:.3e}")
print(f"step 1 loss: cuda {a[0]!r}, cpu {c[0]!r}, relative difference {abs(a[0]-c[0])/abs(c[0]):.3e}")
print(f"last step loss: cuda {a[-1]!r}, cpu {c[-1]!r}, relative difference {abs(a[-1]-c[-1])/abs(c[-1]):.3e}")
worst_c = max(abs(x - y) / abs(y) for x, y in zip(a, c))
print(f"max relative step-loss difference, device np1 vs cpu over {len(c)} steps: {worst_c:.3e}")
ok = len(a) == len(b) == len(c) > 0 and worst <= 1e-5 and abs(a[0] - c[0]) <= 1e-9 * abs(c[0]) and worst_c <= 1e-4
sys.exit(0 if ok else 1)
PY
check "np1 = np2 on $dev (1e-5); $dev = cpu at step 1 (1e-9) and at every step (1e-4)" $?

echo "== 3. energy counters =="
if [ "$dev" = cpu ]; then echo "(skipped on the CPU)"
elif [ -f "$out/np1/energy.csv" ]; then cat "$out/np1/energy.csv"; grep -q "NVML GPUs" "$out/np1/energy.csv"; check "NVML energy.csv" $?; else check "NVML energy.csv (absent)" 1; fi

echo "== 4. eval on the GPU against the CPU (float64) =="
"$hg" eval "$out/np1/best.model" "$out/metals.bp" --fp64 --device "$dev" --json "$out/eval_cuda.json" >/dev/null
check "eval $dev" $?
"$hg" eval "$out/np1/best.model" "$out/metals.bp" --fp64 --device cpu --json "$out/eval_cpu.json" >/dev/null
check "eval cpu" $?
"$py" - "$out/eval_cuda.json" "$out/eval_cpu.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
worst = 0.0
def walk(x, y, path):
    global worst
    if isinstance(x, dict):
        for k in x:
            if k in y: walk(x[k], y[k], path + "." + k)
    elif isinstance(x, list):
        for i, (u, v) in enumerate(zip(x, y)): walk(u, v, f"{path}[{i}]")
    elif isinstance(x, float) and x != 0:
        worst = max(worst, abs(x - y) / abs(x))
walk(a, b, "")
print(f"eval metrics, cuda vs cpu: max relative difference {worst:.3e}")
sys.exit(0 if worst <= 1e-9 else 1)
PY
check "eval cuda = cpu (1e-9)" $?
echo "== 5. mixed precision (bf16 autocast, float32 master weights) on $dev, 1 epoch =="
"$py" - "$out/c.json" "$out/c_bf16.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
t = c["NeuralNetwork"]["Training"]
t["precision"] = "bf16"
t["num_epoch"] = 1
json.dump(c, open(sys.argv[2], "w"), indent=1)
PY
rm -rf "$out/bf16"
HYDRAGNN_NO_MPI=1 "$hg" train "$out/c_bf16.json" --device "$dev" --out "$out/bf16" 2>&1 | grep -E "precision|best model, valset" | head -n 3
check "train bf16 on $dev" "${PIPESTATUS[0]}"
"$py" - "$out" <<'PY'
import math, sys
out = sys.argv[1]
b = [float(l.split(",")[5]) for l in open(f"{out}/bf16/steps.csv") if l[0].isdigit()]
a = [float(l.split(",")[5]) for l in open(f"{out}/np1/steps.csv") if l[0].isdigit()][: len(b)]
worst = max(abs(x - y) / abs(y) for x, y in zip(b, a))
print(f"bf16 step losses: {len(b)} steps, all finite: {all(map(math.isfinite, b))}; step 1 {b[0]!r} vs float64 {a[0]!r}; max relative difference to the float64 run over epoch 1: {worst:.3e}")
sys.exit(0 if b and all(map(math.isfinite, b)) else 1)
PY
check "bf16 losses finite" $?

[ "$fail" = 0 ] && echo "==== gpu_check: all passed ====" || echo "==== gpu_check: FAILURES ===="
exit "$fail"
