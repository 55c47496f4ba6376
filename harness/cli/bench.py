"""``harness bench SUITE``: the command line of ``harness.bench.command`` (also ``python -m harness.bench``)."""
from __future__ import annotations

import argparse

from harness.cli._common import check_writable

HELP = "throughput sweep, bs=1 latency, memory and overhead per method"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from harness.bench.command import add_arguments as add

    add(parser)


def run(args) -> int:
    from harness.bench.command import run as run_bench

    if not getattr(args, "table_only", False):
        check_writable(args.results, ("bench",))
    return run_bench(args)
