#!/usr/bin/env bash
#! The main job, from a fresh clone: install the native stack, build everything, ingest the
#! committed metals data into an ADIOS2 dataset, train a small SchNet model on it, evaluate it,
#! then run molecular dynamics with the trained model in LAMMPS (2 MPI ranks) and in ASE.
#! Idempotent and cached: the venv, the build, the dataset and the trained model are reused while
#! their inputs are unchanged (delete runs/main to start over). Outputs go to runs/main/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/bootstrap.sh
. scripts/env.sh
OUT="$ROOT/runs/main"
mkdir -p "$OUT"
step() { printf '\n==== %s ====\n' "$*"; }
stamp() { cat "$@" | sha256sum | cut -d' ' -f1; }

step "build"
# --lib: the engine library libhydragnn.so (a cdylib) that the LAMMPS plugin, the ASE calculator
# and the examples load; --bins/--examples alone would not build it.
cargo build --release -p hydragnn-train -p hydragnn-capi -p mlip --lib --bins --examples
lammps-plugin/build.sh
HYDRAGNN="$ROOT/target/release/hydragnn"

CONFIG="$ROOT/examples/train/main.json"
DATA="$ROOT/train/data/metals.xyz"
step "data: $DATA -> $OUT/metals.bp (ADIOS2)"
want="$(stamp "$DATA")"
if [ "$(cat "$OUT/metals.bp.stamp" 2>/dev/null)" != "$want" ]; then
  "$HYDRAGNN" ingest -o "$OUT/metals.bp" -n metals "$DATA" --overwrite
  echo "$want" > "$OUT/metals.bp.stamp"
else
  echo "up to date"
fi

MODEL="$OUT/train/best.model"
step "train: $CONFIG -> $MODEL"
want="$(stamp "$CONFIG" "$DATA" "$HYDRAGNN")"
if [ "$(cat "$OUT/train.stamp" 2>/dev/null)" != "$want" ] || [ ! -f "$MODEL" ]; then
  rm -rf "$OUT/train"
  mpirun -np 2 "$HYDRAGNN" train "$CONFIG" --out "$OUT/train"
  echo "$want" > "$OUT/train.stamp"
else
  echo "up to date (trained model reused)"
fi

step "evaluate the model on the test split"
"$HYDRAGNN" eval "$MODEL" "$OUT/metals.bp" --split testset

step "engine: energy, forces and stress of a rattled 108-atom Cu crystal"
target/release/examples/evaluate "$MODEL" Cu 3.61 3

step "LAMMPS: NVE copper, 256 atoms, 2 MPI ranks, pair_style hydragnn with the trained model"
mkdir -p "$OUT/lammps" && cd "$OUT/lammps"
mpirun -np 2 lmp -in "$ROOT/examples/lammps/in.cu_nve" -var model "$MODEL" \
  -var plugin "$ROOT/target/lammps-plugin/libhydragnn_lammps.so" -var steps 500 -log log.lammps
cd "$ROOT"

step "ASE: Langevin then NVE copper with HydraGNNCalculator and the same model"
python examples/ase/md.py "$MODEL" --element Cu --steps-langevin 100 --steps-nve 100

step "done: outputs in $OUT"
