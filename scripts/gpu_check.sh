#!/usr/bin/env bash
# The GPU check in one command (issue 14): the gpu-marked tests, then `bench` of VideoMAE ViT-B 16x224
# (suites/bench_gpu_vit_b.yaml: dense, tome, sta, vid_tldr, sttm, haltingvt varlen, rlt, downsample) at fp32/bf16/fp16 x
# compile off/default with a batch sweep up to 128 (OOM back-off), written as one markdown report
# docs/gpu/<date>-<gpu>.md. Budget: 8 minutes on one GPU, enforced by deadlines (measurements not started
# in time are listed in the report as skipped, never silently dropped).
#
#   bash scripts/gpu_check.sh [--out-dir DIR] [--python PY]      on a CUDA machine
#   bash scripts/gpu_check.sh --dry-run [--out-dir DIR]          on CPU (CI): tiny model, batch 1-2, no compile
#
# Phases on a GPU (in one process per phase: `--in-process`, so models and the CUDA context are built once;
# the repeats are then not independent processes, which is what the budget buys):
#   1. pytest -m gpu (with torchcodec against decord where the extra is installed) (~0.5 min)
#   2. dense vs transformers' VideoMAEForVideoClassification (sdpa), bf16, ViT-B 16x224 batch 1 and 32, same
#      weights, 7 interleaved repeats (scripts/bench_peers.py; needs transformers, the test extra) (~0.5 min)
#   3. eager: fp16,bf16,fp32 x batch 1,16,64,128, dense also forced to the memory-efficient kernel
#      (what ToMe's and STTM's additive bias leave), deadline 230 s    (~4 min)
#   4. compiled (default mode, HaltingVT dynamic=True): fp16, bf16, fp32 at batch 64, deadline 150 s
#      (a deadline is checked before each measurement: one compile started just before it may overrun)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DRY=0
OUT_DIR=""
PY="${PYTHON:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --out-dir) OUT_DIR="$2"; shift ;;
    --python) PY="$2"; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (use --dry-run, --out-dir DIR, --python PY)" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$PY" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"; else PY=python; fi
fi
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"
START=$(date +%s)
RESULTS="$WORK/results"

if [ "$DRY" = 1 ]; then
  OUT_DIR="${OUT_DIR:-$WORK/report}"
  SUITE=suites/bench_gpu_dry.yaml
  COMMON=(--device cpu --in-process --repeats 1 --threads 1 --warmup-iters 1 --warmup-s 0 --timed-iters 2
          --min-timed-s 0 --results "$RESULTS" --set "datasets.0.root=$WORK/data" --markdown)
else
  OUT_DIR="${OUT_DIR:-docs/gpu}"
  SUITE=suites/bench_gpu_vit_b.yaml
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'error: no CUDA device (use --dry-run on CPU)')"
  COMMON=(--device cuda --in-process --repeats 1 --warmup-iters 3 --warmup-s 0.5 --timed-iters 5
          --min-timed-s 1.0 --results "$RESULTS" --set "datasets.0.root=$WORK/data" --markdown)
fi

echo "== 1/4 gpu-marked tests"
set +e
"$PY" -m pytest -q -m gpu tests/test_gpu.py tests/test_varlen_attention.py tests/test_decoders.py -p no:cacheprovider \
  > "$WORK/pytest.log" 2>&1
PYTEST_RC=$?
set -e
tail -3 "$WORK/pytest.log"
if [ "$PYTEST_RC" != 0 ] && [ "$PYTEST_RC" != 5 ]; then
  echo "gpu-marked tests failed (exit $PYTEST_RC); the bench still runs and the report shows the failures"
fi

echo "== 2/4 dense vs transformers (bf16)"
if [ "$DRY" = 1 ]; then
  PEERS=(--device cpu --shapes t4x32b1 --repeats 3 --warmup 1 --threads 1)
else
  PEERS=(--device cuda --shapes b16x224b1,b16x224b32 --repeats 7 --iters 10 --warmup 5)
fi
set +e
"$PY" scripts/bench_peers.py --precision bf16 "${PEERS[@]}" > "$WORK/peers.log" 2>&1
PEERS_RC=$?
set -e
grep -v "^Writing" "$WORK/peers.log" | tail -4
[ "$PEERS_RC" = 0 ] || echo "peer benchmark failed (exit $PEERS_RC); the report shows its log"

if [ "$DRY" = 1 ]; then
  echo "== 3/4 bench, eager (dry run: fp32,bf16, batch 1-2)"
  "$PY" -m harness.bench "$SUITE" "${COMMON[@]}" --precision fp32,bf16 --batch-sizes 1 --reference-batch-size 2
  echo "== 4/4 compiled: skipped in the dry run (inductor on CPU takes minutes; tests/test_regime.py covers it)"
else
  echo "== 3/4 bench, eager"
  # fp16 first at every batch size: the headline regime is measured before a deadline can cut anything
  "$PY" -m harness.bench "$SUITE" "${COMMON[@]}" --precision fp16,bf16,fp32 --batch-sizes 1,16,64,128 \
    --reference-batch-size 64 --dense-backends efficient --deadline-s 230
  echo "== 4/4 bench, compiled"
  "$PY" -m harness.bench "$SUITE" "${COMMON[@]}" --precision fp16,bf16,fp32 --compile default \
    --batch-sizes 64 --reference-batch-size 64 --no-explicit-dense --deadline-s 150
fi

ELAPSED=$(( $(date +%s) - START ))
REPORT=$("$PY" -m harness.bench.gpu_report --results "$RESULTS" --out-dir "$OUT_DIR" --pytest-log "$WORK/pytest.log" \
  --peers-log "$WORK/peers.log" \
  --elapsed-s "$ELAPSED" --command "bash scripts/gpu_check.sh$([ "$DRY" = 1 ] && echo ' --dry-run')" \
  $([ "$DRY" = 1 ] && echo --dry-run))
test -s "$REPORT" || { echo "error: no report written" >&2; exit 1; }
echo "report: $REPORT (${ELAPSED} s)"
