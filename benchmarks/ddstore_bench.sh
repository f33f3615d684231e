#!/usr/bin/env bash
# DDStore benchmark: per-epoch data time of the distributed in-memory store (one-sided MPI gets)
# against re-reading the same globally shuffled samples from ADIOS2 and rebuilding their graphs,
# on 1 and 2 ranks (train/benches/ddstore_bench.rs).
#   benchmarks/ddstore_bench.sh                    # the committed slice train/data/metals.xyz
#   benchmarks/ddstore_bench.sh data/metals.bp --epochs 3 --batch 8
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
cargo build -q --release -p hydragnn-train
bench=$(cargo bench -q -p hydragnn-train --bench ddstore_bench --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "ddstore_bench" and m.get("executable"):
        print(m["executable"])')
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
data=${1:-}
if [[ -z "$data" || "$data" == --* ]]; then
  target/release/hydragnn ingest train/data/metals.xyz --out "$tmp/metals.bp" --name metals >/dev/null
  data="$tmp/metals.bp"
else
  shift
fi
export HYDRAGNN_NUM_THREADS=1
for np in 1 2; do
  echo "== mpirun -np $np"
  "$VIRTUAL_ENV/bin/mpirun" -np $np "$bench" "$data" "$@"
done
