#!/usr/bin/env bash
#! Runs every test of the project from a fresh clone: installs the native stack (cached), runs the
#! main job (scripts/run.sh) as its first suite, builds the workspace, runs the Rust suites
#! (engine, C ABI + C program, trainer, importer), builds the LAMMPS plugin and runs the Python
#! suites (ASE calculator, LAMMPS under mpirun, cross-component).
#! Idempotent: a second run reuses .venv and target/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/bootstrap.sh
. scripts/env.sh
step() { printf '\n==== %s ====\n' "$*"; }
failed=()
# Every suite runs even when an earlier one failed; the exit status says whether all passed.
suite() { local name="$1"; shift; step "$name"; "$@" || failed+=("$name"); }

# First the README's main command, as a user runs it: on a fresh clone with an empty target/
# (what CI starts from) this is the proof that `scripts/run.sh` works on a fresh machine.
suite "main job (scripts/run.sh)" scripts/run.sh

step "build (release, all targets)"
cargo build --release --workspace --all-targets

suite "Rust tests (engine, C ABI and C program, trainer, importer)" cargo test --release --workspace --no-fail-fast

step "LAMMPS plugin"
lammps-plugin/build.sh

suites=()
for d in ase-bridge/tests tests; do [ -d "$d" ] && suites+=("$d"); done
# The LAMMPS suite's fixtures would rebuild what was just built; skip that.
suite "Python tests (ASE calculator, LAMMPS under mpirun, cross-component)" \
  env HYDRAGNN_LAMMPS_NO_BUILD=1 python -m pytest -q -p no:cacheprovider "${suites[@]}"

if [ ${#failed[@]} -gt 0 ]; then
  step "FAILED: ${failed[*]}"
  exit 1
fi
step "all tests passed"
