#!/usr/bin/env bash
#! Runs the README's main command (scripts/run.sh) as a new user would: in a clean clone of the
#! committed HEAD with an empty target/ and a new .venv, so that "it only works after the test
#! command built something" cannot happen. Uncommitted changes are not in the clone.
#! With --in-place (what scripts/test.sh passes when it starts in a fresh clone whose target/ does
#! not exist yet, as CI does) it runs scripts/run.sh right here instead of cloning again.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "${1:-}" = "--in-place" ]; then
  echo "clean-run.sh: fresh clone, empty target/: running scripts/run.sh in place"
  exec "$ROOT/scripts/run.sh"
fi
DIR="$(mktemp -d "${TMPDIR:-/tmp}/hydragnn-clean.XXXXXX")"
trap 'rm -rf "$DIR"' EXIT
git clone -q "$ROOT" "$DIR/hydragnn-rs"
echo "clean-run.sh: scripts/run.sh in a clean clone of $(git -C "$ROOT" rev-parse --short HEAD) at $DIR/hydragnn-rs"
[ -z "$(git -C "$ROOT" status --porcelain --untracked-files=no)" ] ||
  echo "clean-run.sh: note: uncommitted changes in $ROOT are not part of this run"
cd "$DIR/hydragnn-rs"
scripts/run.sh
