#!/usr/bin/env bash
# Trainer benchmark in one run: ADIOS2 read throughput vs one file per graph (ratio), and training
# throughput (structures/s, atoms/s) with energy + autograd forces in the loss.
#   benchmarks/train_bench.sh                      # the committed slice train/data/metals.xyz
#   benchmarks/train_bench.sh data/metals.bp --steps 50 --batch 16
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
exec cargo bench -q -p hydragnn-train --bench train_bench -- "$@"
