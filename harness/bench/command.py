"""The ``bench`` command line: ``python -m harness.bench SUITE [options]`` (the same as ``harness bench``).

``add_arguments`` and ``config_from_args`` are what ``harness.cli`` wires into its ``bench`` sub-command.
"""
from __future__ import annotations

import argparse
import sys
import typing as tp

from harness.measure.choices import COMPILE_MODES, PRECISIONS, SDPA_BACKENDS
from harness.suite.regime import DEFAULT as REGIME


def _list(text: str) -> tp.List[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def add_arguments(bench: argparse.ArgumentParser) -> None:
    bench.add_argument("suite")
    bench.add_argument("--batch-sizes", default="1,8,32,64", help="comma-separated sweep (stops at out-of-memory)")
    bench.add_argument("--repeats", type=int, default=3, help="fresh processes per batch size and method")
    bench.add_argument("--reference-batch-size", type=int, default=8, help="batch of the efficiency table and overhead")
    bench.add_argument("--threads", type=int, help="torch CPU threads (recorded)")
    bench.add_argument("--timed-iters", type=int, default=10)
    bench.add_argument("--min-timed-s", type=float, default=2.0)
    bench.add_argument("--warmup-iters", type=int, default=10)
    bench.add_argument("--warmup-s", type=float, default=2.0)
    bench.add_argument("--device", choices=("cpu", "cuda"))
    bench.add_argument("--no-explicit-dense", action="store_true", help="skip timing dense with explicit attention")
    bench.add_argument("--precision", default=REGIME.precision,
                       help=f"comma-separated autocast regimes: {','.join(PRECISIONS)} (fp16: CUDA only)")
    bench.add_argument("--compile", default=REGIME.compile, help=f"comma-separated torch.compile modes: {','.join(COMPILE_MODES)}")
    bench.add_argument("--sdpa-backend", default=REGIME.sdpa_backend, help=f"SDPA backend for every target: {'|'.join(SDPA_BACKENDS)}")
    bench.add_argument("--dense-backends", default="",
                       help="also time dense forced to these SDPA backends (same-kernel baselines), e.g. efficient,math")
    bench.add_argument("--no-energy", action="store_true", help="skip the NVML energy counter")
    bench.add_argument("--in-process", action="store_true",
                       help="measure in this process (fast smoke runs; repeats are then not independent)")
    bench.add_argument("--deadline-s", type=float, help="start no measurement after this many seconds (recorded)")
    bench.add_argument("--table-only", action="store_true", help="print the table from stored records")
    bench.add_argument("--markdown", action="store_true", help="table as Markdown")
    bench.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    bench.add_argument("--results", default="results")


def config_from_args(args):
    from harness.bench.sweep import BenchConfig

    try:
        batch_sizes = [int(b) for b in _list(args.batch_sizes)]
    except ValueError:
        raise ValueError(f"bench --batch-sizes: expected whole numbers separated by commas, e.g. 1,8,32, "
                         f"got {args.batch_sizes!r}") from None
    return BenchConfig(batch_sizes=batch_sizes, repeats=args.repeats,
                       reference_batch_size=args.reference_batch_size, threads=args.threads,
                       timed_iters=args.timed_iters, min_timed_s=args.min_timed_s, warmup_iters=args.warmup_iters,
                       warmup_s=args.warmup_s, explicit_dense=not args.no_explicit_dense, device=args.device,
                       precisions=_list(args.precision), compile_modes=_list(args.compile),
                       sdpa_backend=args.sdpa_backend, dense_backends=_list(args.dense_backends),
                       energy=not args.no_energy, in_process=args.in_process, deadline_s=args.deadline_s)


def run(args) -> int:
    from harness.bench.sweep import run_bench
    from harness.bench.table import read_records, render
    from harness.report.safe import plain
    from harness.suite import SuiteError, load_suite

    try:
        suite = load_suite(args.suite, list(args.set))
        cfg = config_from_args(args)
        cfg.check()
    except (SuiteError, ValueError) as err:
        print(f"error: {plain(err, one_line=False)}", file=sys.stderr)
        return 2
    if not args.table_only:
        run_bench(suite, cfg, store_root=args.results)
    records = read_records(args.results, {c.key for c in suite.cells()})
    if not records:
        print(f"error: no bench records for {plain(args.suite)} under {args.results}/bench; run without --table-only",
              file=sys.stderr)
        return 2
    print(render(records, args.reference_batch_size, "github" if args.markdown else "simple"))
    return 0


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
