"""``harness status [SUITE]``: each submitted cell's state, from the store and squeue/sacct."""
from __future__ import annotations

import argparse
import sys

from harness.cli._common import load, plain

HELP = "state of submitted cells (store + squeue/sacct)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", nargs="?", help="only this suite's cells (default: every submitted cell)")
    parser.add_argument("--results", default="results")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--wait", action="store_true", help="poll until no cell is queued or running")
    parser.add_argument("--poll", type=float, default=5.0, metavar="S", help="seconds between polls (--wait)")
    parser.add_argument("--timeout", type=float, metavar="S", help="stop waiting after S seconds")


def run(args) -> int:
    import time

    from harness.cluster.status import cell_rows, format_rows, is_settled, wait

    keys = None
    if args.suite:
        keys = [(c.key, c.label) for c in load(args.suite, args.set).cells()]
    if args.wait:
        def show(rows, t0=time.monotonic()):
            states = {}
            for r in rows:
                states[r["state"].split(":")[0]] = states.get(r["state"].split(":")[0], 0) + 1
            print(f"[{time.monotonic() - t0:5.0f}s] " + plain(", ".join(f"{n} {s}" for s, n in sorted(states.items()))),
                  file=sys.stderr, flush=True)
        rows, note = wait(args.results, keys, poll_s=args.poll, timeout_s=args.timeout, on_poll=show)
    else:
        rows, note = cell_rows(args.results, keys)
    if not rows:
        print(f"no submitted cells under {plain(args.results)}/ (submit with `run SUITE --executor slurm`)")
        return 0
    print(format_rows(rows, note))
    if any(r["state"].startswith("failed") for r in rows):
        return 1
    return 0 if is_settled(rows) else 3
