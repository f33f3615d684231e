#!/usr/bin/env bash
# The cost of evaluating an ensemble of K members in one call (one neighbour list shared by the
# members) against K separate evaluations; prints both times and their ratio (mlip/examples/
# ensemble_cost.rs, which also checks that both give the same numbers).
#
#   benchmarks/ensemble_cost.sh                 # K = 4, fcc Cu 864 atoms, fast path, best of 5
#   benchmarks/ensemble_cost.sh 8 8 5 exact     # K = 8, 2048 atoms, the exact (autograd) path
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
cargo run --release -q -p mlip --example ensemble_cost -- "$@"
