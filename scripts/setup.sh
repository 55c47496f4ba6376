#!/usr/bin/env bash
# Create .venv (if needed) and install the harness with its test extras.
# On a CPU-only machine torch is pinned to the CPU wheel (constraints/cpu.txt); set
# HARNESS_CONSTRAINTS= (empty) to keep the torch your environment already has (e.g. a CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
CONSTRAINTS="${HARNESS_CONSTRAINTS-constraints/cpu.txt}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# timm through the harness's import (a bare `import timm` fails on a CPU torch: harness/models/timm_import.py)
if ! "$VENV/bin/python" -c "import harness, methods, torch, decord, fvcore, av, submitit, pytest, hypothesis, ruff
from harness.models.timm_import import import_timm; import_timm()" 2>/dev/null \
   || [ "${FORCE_INSTALL:-0}" = 1 ]; then
  "$VENV/bin/python" -m pip install -q ${CONSTRAINTS:+-c "$CONSTRAINTS"} -e ".[test]"
fi
