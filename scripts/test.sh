#!/usr/bin/env bash
#! Runs every test of the project from a fresh clone: installs the native stack (cached), builds
#! the workspace, runs the Rust suites (engine, C ABI + C program, trainer, importer), builds the
#! LAMMPS plugin and runs the Python suites (ASE calculator, LAMMPS under mpirun, cross-component).
#! Idempotent: a second run reuses .venv and target/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/bootstrap.sh
. scripts/env.sh
step() { printf '\n==== %s ====\n' "$*"; }

step "build (release, all targets)"
cargo build --release --workspace --all-targets

step "Rust tests"
cargo test --release --workspace --no-fail-fast

step "LAMMPS plugin"
lammps-plugin/build.sh

step "Python tests (ASE calculator, LAMMPS, cross-component)"
suites=()
for d in ase-bridge/tests tests; do [ -d "$d" ] && suites+=("$d"); done
python -m pytest -q -p no:cacheprovider "${suites[@]}"

step "all tests passed"
