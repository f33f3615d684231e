#!/usr/bin/env bash
# Upstream HydraGNN's training throughput on the committed slice (benchmarks/upstream_train_bench.py),
# for the side-by-side comparison with benchmarks/train_breakdown.sh. Needs the upstream HydraGNN
# environment outside the repo (HYDRAGNN_SRC, default /work/hydragnn-src; HYDRAGNN_DEPS, default
# /work/hgdeps; see the script's docstring). Not part of the tests.
#   benchmarks/upstream_train_bench.sh [--models egnn,painn] [--steps 20] [--profile]
set -euo pipefail
cd "$(dirname "$0")/.."
src="${HYDRAGNN_SRC:-/work/hydragnn-src}"
deps="${HYDRAGNN_DEPS:-/work/hgdeps}"
for d in "$src/hydragnn" "$deps"; do
  [ -d "$d" ] || { echo "upstream HydraGNN environment not found: $d" >&2; exit 1; }
done
echo "load: $(uptime)"
PYTHONPATH="$deps:$src" exec .venv/bin/python benchmarks/upstream_train_bench.py "$@"
