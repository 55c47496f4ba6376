#!/usr/bin/env bash
# Create .venv (if needed) and install the harness with its test extras.
# On a CPU-only machine torch is pinned to the CPU wheel (constraints/cpu.txt); set
# HARNESS_CONSTRAINTS= (empty) to keep the torch your environment already has (e.g. a CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
CONSTRAINTS="${HARNESS_CONSTRAINTS-constraints/cpu.txt}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
if ! "$VENV/bin/python" -c "import harness, methods, torch, timm, decord, fvcore, av, submitit, pytest, hypothesis, ruff" 2>/dev/null \
   || [ "${FORCE_INSTALL:-0}" = 1 ]; then
  "$VENV/bin/python" -m pip install -q ${CONSTRAINTS:+-c "$CONSTRAINTS"} -e ".[test]"
fi
