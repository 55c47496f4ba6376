#!/usr/bin/env bash
# Set up, then run the quickstart suite end to end and print the leaderboard.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
if [ ! -f checkpoints/synthetic_vit_d8.pth ]; then
  $PY -m harness train --backbone synthetic_vit_d8
fi
$PY -m harness run suites/quickstart.yaml "$@"
