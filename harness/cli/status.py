"""``harness status [SUITE]``: each submitted cell's state, from the store and squeue/sacct; ``--cancel`` cancels a
submission's queued and running tasks."""
from __future__ import annotations

import argparse
import sys

from harness.cli._common import UserError, load, plain

HELP = "state of submitted cells (store + squeue/sacct); --cancel cancels a submission"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", nargs="?", help="only this suite's cells (default: every submitted cell)")
    parser.add_argument("--results", default="results")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--wait", action="store_true", help="poll until no cell is queued or running")
    parser.add_argument("--poll", type=float, default=5.0, metavar="S", help="seconds between polls (--wait)")
    parser.add_argument("--timeout", type=float, metavar="S", help="stop waiting after S seconds")
    parser.add_argument("--submission", metavar="ID",
                        help="only this submission's cells (its folder name under RESULTS/slurm/)")
    parser.add_argument("--cancel", action="store_true",
                        help="scancel the queued and running tasks of the submission (--submission, else the latest "
                             "holding SUITE's cells, else the latest); its unfinished cells become failed: CANCELLED")


def run(args) -> int:
    from harness.cluster.status import cell_rows, format_rows, is_settled, wait

    if args.cancel and args.wait:
        raise UserError("--cancel and --wait do not go together")
    keys = None
    if args.suite:
        keys = [(c.key, c.label) for c in load(args.suite, args.set).cells()]
    if args.submission or args.cancel:
        from harness.cluster.launch import cells_of, find_submission

        sub = find_submission(args.results, args.submission, [k for k, _ in keys] if keys else None)
        if sub is None:
            which = f"submission {args.submission!r}" if args.submission else "submission" + (
                " of this suite's cells" if keys else "")
            raise UserError(plain(f"no {which} under {args.results}/slurm/"))
        keys = cells_of(sub)
        if args.cancel:
            cancelled = _cancel(sub, args.results)
            if cancelled is None:
                return 1
    if args.wait:
        from harness.cluster.launch import progress_printer

        rows, note = wait(args.results, keys, poll_s=args.poll, timeout_s=args.timeout, on_poll=progress_printer())
    else:
        rows, note = cell_rows(args.results, keys)
    if not rows:
        print(f"no submitted cells under {plain(args.results)}/ (submit with `run SUITE --executor slurm`)")
        return 0
    print(format_rows(rows, note))
    if args.cancel:
        return 0
    if any(r["state"].startswith("failed") for r in rows):
        return 1
    return 0 if is_settled(rows) else 3


def _cancel(sub: dict, results: str):
    """Cancel ``sub``'s queued and running tasks and say so; the ids cancelled, or None when scancel failed."""
    from harness.cluster.launch import CancelFailed, SlurmLauncher

    try:
        cancelled = SlurmLauncher(results).stop(sub)
    except CancelFailed as err:
        print(f"error: {plain(err)}", file=sys.stderr)
        return None
    if cancelled:
        arrays = sorted({j.split("_")[0] for j in cancelled})
        print(plain(f"cancelled {len(cancelled)} queued or running task(s) of submission {sub.get('id')} "
                    f"(job array(s) {', '.join(arrays)})"))
    else:
        print(plain(f"submission {sub.get('id')}: no task queued or running, nothing to cancel"))
    return cancelled
