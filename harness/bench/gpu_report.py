"""One markdown report of a GPU check (``scripts/gpu_check.sh``): the machine, the gpu-marked tests, dense
against transformers' VideoMAE (``scripts/bench_peers.py``'s output), the headline (efficiency per method at
fp16 with the fastest SDPA kernel, at dense's peak-throughput batch), and every regime's table.

    python -m harness.bench.gpu_report --results DIR --out-dir docs/gpu [--pytest-log F] [--peers-log F]
        [--elapsed-s S] [--dry-run]

Writes ``<out-dir>/<YYYY-MM-DD>-<gpu>.md`` (``-dry-run`` appended for a dry run) and prints its path.
"""
from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import typing as tp
from pathlib import Path

from harness.bench.table import DEFAULT_REGIME, read_records, regime_of, render
from harness.suite.regime import Regime


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def peak_batch(records: tp.Sequence[dict], regime: tp.Tuple[str, str, str]) -> tp.Optional[int]:
    """The batch size at which dense (torch's kernel choice) had its highest clips/s in ``regime``."""
    dense = [r for r in records if regime_of(r) == regime and r["config"]["method"]["name"] == "dense"
             and r.get("fused_attention_forced") is None and not r.get("sdpa_backend_forced") and r["sweep"]]
    if not dense:
        return None
    best = max(dense[0]["sweep"], key=lambda e: e["clips_per_s"])
    return best["batch_size"]


def headline(records: tp.Sequence[dict]) -> tp.Tuple[str, tp.Optional[tp.Tuple[str, str, str]], tp.Optional[int]]:
    """The regime of the headline (fp16 eager auto, else the first one measured) and its peak batch."""
    regimes = sorted({regime_of(r) for r in records}, key=lambda g: (g != Regime("fp16").as_tuple(), g != DEFAULT_REGIME, g))
    if not regimes:
        return "no bench records were written", None, None
    regime = regimes[0]
    bs = peak_batch(records, regime)
    return f"precision {regime[0]}, compile {regime[1]}, sdpa {regime[2]}, batch {bs} (dense's peak)", regime, bs


def environment(records: tp.Sequence[dict]) -> tp.List[str]:
    first = records[0] if records else {}
    lines = [f"- device: {first.get('device_name') or first.get('device') or '?'}",
             f"- torch {first.get('torch_version', '?')}, CUDA {first.get('cuda_version') or 'none'}, "
             f"cuDNN {first.get('cudnn_version') or 'n/a'}",
             f"- TF32 matmul / cuDNN: {first.get('allow_tf32_matmul')} / {first.get('allow_tf32_cudnn')} "
             "(as torch defaults them; not changed by the harness)",
             f"- energy: {first.get('energy_how') or 'not measured'}"]
    try:
        import subprocess

        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,power.limit,clocks.max.sm",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        if smi.returncode == 0 and smi.stdout.strip():
            lines.append(f"- nvidia-smi (name, driver, power limit, max SM clock): {smi.stdout.strip()}")
    except (OSError, subprocess.SubprocessError):
        pass
    return lines


def _log_tail(path: tp.Optional[str], lines: int, skip: str = "") -> tp.List[str]:
    """The last ``lines`` non-blank lines of a log as a fenced block, or "not run"."""
    if not path or not Path(path).exists():
        return ["not run"]
    kept = [l for l in Path(path).read_text(errors="replace").splitlines() if l.strip()
            and not (skip and l.startswith(skip))]
    return ["```", *kept[-lines:], "```"]


def write_report(results: str, out_dir: str, *, pytest_log: tp.Optional[str] = None,
                 peers_log: tp.Optional[str] = None, elapsed_s: tp.Optional[float] = None, dry_run: bool = False, command: str = "") -> Path:
    records = read_records(results)
    first = records[0] if records else {}
    device = first.get("device_name") or first.get("device") or "unknown"
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    path = Path(out_dir) / f"{date}-{slug(device)}{'-dry-run' if dry_run else ''}.md"
    text, regime, bs = headline(records)
    parts = [f"# GPU check {date}: {device}{' (dry run on CPU: tiny model, not a measurement)' if dry_run else ''}",
             "", f"Command: `{command or 'bash scripts/gpu_check.sh'}`"
             + (f"; wall time {elapsed_s:.0f} s" if elapsed_s is not None else ""), "", "## Machine", "",
             *environment(records), "", "## gpu-marked tests", ""]
    parts += _log_tail(pytest_log, 12)
    parts += ["", "## Dense vs transformers' VideoMAEForVideoClassification (sdpa, same weights)", "",
              *_log_tail(peers_log, 8, skip="Writing"), "", f"## Headline: {text}", ""]
    if regime is not None and bs is not None:
        chosen = [r for r in records if regime_of(r) == regime]
        parts += [render(chosen, bs, "github"), ""]
    failed = [r for r in records if r.get("error")]
    skipped = [r for r in records if r.get("skipped_batch_sizes")]
    if failed or skipped:
        parts += ["## Failures and skipped measurements", ""]
        parts += [f"- {r['label']} ({regime_of(r)}): {r['error']} (at batch {r.get('failed_at_batch_size')})"
                  for r in failed]
        parts += [f"- {r['label']} ({regime_of(r)}): not started at batch sizes {r['skipped_batch_sizes']} "
                  "(time budget)" for r in skipped]
        parts.append("")
    sizes = sorted({e["batch_size"] for r in records for e in r["sweep"]})
    parts += ["## Every regime", ""]
    for size in sizes:
        parts += [f"### Batch {size}", "", render(records, size, "github").replace("### precision", "#### precision"), ""]
    parts += ["## Batch sweep (clips/s per batch size; OOM: the first size that ran out of memory)", "",
              "| method | regime | " + " | ".join(f"bs {s}" for s in sizes) + " | OOM at |",
              "|---|---|" + "---|" * len(sizes) + "---|"]
    for r in sorted(records, key=lambda r: (regime_of(r), r["label"])):
        by = {e["batch_size"]: e["clips_per_s"] for e in r["sweep"]}
        cells = " | ".join(f"{by[s]:.4g}" if s in by else "" for s in sizes)
        parts.append(f"| {r['label']} | {'/'.join(regime_of(r))} | {cells} | {r.get('oom_at_batch_size') or ''} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts) + "\n")
    return path


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.bench.gpu_report")
    ap.add_argument("--results", required=True)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--pytest-log")
    ap.add_argument("--peers-log", help="scripts/bench_peers.py's output")
    ap.add_argument("--elapsed-s", type=float)
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--command", default="")
    args = ap.parse_args(argv)
    if not read_records(args.results):
        print(f"error: no bench records under {args.results}/bench", file=sys.stderr)
        return 2
    print(write_report(args.results, args.out_dir, pytest_log=args.pytest_log, peers_log=args.peers_log,
                       elapsed_s=args.elapsed_s,
                       dry_run=args.dry_run, command=args.command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
