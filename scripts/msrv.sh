#!/usr/bin/env bash
#! Checks that the workspace builds with the Rust version it declares (`rust-version` in
#! Cargo.toml): installs that toolchain with rustup (minimal profile, cached) and runs
#! `cargo check --workspace --all-targets` with it, in target/msrv so the release build is untouched.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MSRV="$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' Cargo.toml | head -n1)"
[ -n "$MSRV" ] || { echo "msrv.sh: no rust-version in Cargo.toml" >&2; exit 1; }
if ! rustup run "$MSRV" rustc --version >/dev/null 2>&1; then
  rustup toolchain install "$MSRV" --profile minimal
fi
echo "msrv.sh: checking with Rust $MSRV ($(rustup run "$MSRV" rustc --version))"
. scripts/env.sh
CARGO_TARGET_DIR="$ROOT/target/msrv" cargo "+$MSRV" check --release --workspace --all-targets
