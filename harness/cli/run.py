"""``harness run SUITE``: run a suite's unfinished cells (locally, in this process, or submitted to Slurm)."""
from __future__ import annotations

import argparse

from harness.cli._common import UserError, check_writable, load, plain

HELP = "run a suite's unfinished cells"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite")
    parser.add_argument("--executor", choices=("local", "debug", "slurm"), default="local",
                        help="local: a fresh process per cell (default); debug: in this process; "
                             "slurm: submit job arrays and return (follow with `status`, or add --wait)")
    parser.add_argument("--profile", metavar="NAME",
                        help="slurm: cluster profile, slurm/profiles/NAME.yaml or a path "
                             "(default: $HARNESS_SLURM_PROFILE or 'local')")
    parser.add_argument("--shards", type=int, default=1, metavar="N",
                        help="slurm: split each cell's videos into N array tasks (merged into one record)")
    parser.add_argument("--wait", action="store_true",
                        help="slurm: after submitting, follow the suite's cells until none is queued or running, "
                             "then print the leaderboard (exit 1 if a cell failed); Ctrl-C stops only the "
                             "following, the jobs keep running")
    parser.add_argument("--dry-run", action="store_true", help="print the expanded cell matrix and exit")
    parser.add_argument("--limit", type=int, help="evaluate only the first N videos (same as --set eval.limit=N)")
    parser.add_argument("--force", action="store_true", help="rerun finished cells too")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a suite field, e.g. eval.batch_size=4 or 'methods.1.r=[4,8]'")
    parser.add_argument("--results", default="results", help="results store (default: results/)")


def run(args) -> int:
    from harness.cli.finetune import print_finetunes
    from harness.run.local import run_suite
    from harness.run.plan import plan

    overrides = list(args.set)
    if args.limit is not None:
        overrides.append(f"eval.limit={args.limit}")
    if args.executor != "slurm" and (args.shards != 1 or args.profile):
        raise UserError("--shards and --profile apply to --executor slurm only")
    if args.executor != "slurm" and args.wait:
        raise UserError("--wait applies to --executor slurm only (a local run always waits)")
    suite = load(args.suite, overrides)
    if args.executor == "slurm" and not args.dry_run:
        return _submit_slurm(suite, args)
    if not args.dry_run:
        check_writable(args.results)
    if args.dry_run:
        todo, done = plan(suite, args.results, args.force)
        if suite.finetunes():
            print_finetunes(suite, args.results)
            print()
        _print_cells(suite, todo, done, args.results)
        return 0
    records = run_suite(suite, executor=args.executor, store_root=args.results, force=args.force)
    _print_leaderboard(suite, args.results)
    return 1 if any(r["status"] != "ok" for r in records) else 0


def _print_leaderboard(suite, results: str) -> None:
    from harness.report import render
    from harness.store import ResultStore

    print(render(_suite_records(suite, results), "term", samples=ResultStore(results).read_samples))


def _submit_slurm(suite, args) -> int:
    """``run --executor slurm``: submit and return (``status`` follows the cells), or with ``--wait`` follow them
    here until they have settled."""
    from submitit.core.utils import FailedJobError, FailedSubmissionError

    from harness.cluster.launch import SlurmLauncher
    from harness.cluster.profiles import ProfileError, check_on_cluster, load_profile
    from harness.layout import writes_for

    try:
        profile = load_profile(args.profile)
        check_on_cluster(profile)
        check_writable(args.results, writes_for("run-slurm"))
        launch = SlurmLauncher(args.results, profile, num_shards=args.shards, force=args.force)
        sub = launch.start(suite)
    except (ProfileError, ValueError) as err:
        raise UserError(str(err)) from None
    except (FailedJobError, FailedSubmissionError) as err:  # sbatch refused (what was queued is on record)
        raise UserError(f"sbatch failed: {err}") from None
    return _watch_slurm(launch, sub, suite, args) if args.wait else 0


def _watch_slurm(launch, sub, suite, args) -> int:
    """``--wait``: follow every cell of the suite (submitted now, in flight from an earlier submission, or
    finished) until none is queued or running, with a line of progress on stderr when it changes; then the
    cells' states and the leaderboard, exit code as a local run's. Ctrl-C (or SIGTERM) detaches: the jobs go on."""
    import sys

    from harness.cli._common import Interrupted
    from harness.cluster.launch import follow_hint, progress_printer
    from harness.cluster.status import format_rows

    print("waiting for the suite's cells (Ctrl-C stops waiting; the jobs go on)", file=sys.stderr, flush=True)
    try:
        rows, note = launch.watch(sub, progress_printer(), keys=[(c.key, c.label) for c in suite.cells()])
    except KeyboardInterrupt as err:
        how = "SIGTERM" if isinstance(err, Interrupted) else "Ctrl-C"
        tasks = f"the {len(sub.tasks)} task(s) of submission {sub.id}" if sub.tasks else "the submitted tasks"
        print(f"\nstopped waiting ({how}); {tasks} keep running.", file=sys.stderr)
        for line in follow_hint(str(suite.path), args.results, sub.id if sub.tasks else None):
            print(line, file=sys.stderr)
        return 143 if isinstance(err, Interrupted) else 130
    print(format_rows(rows, note))
    _print_leaderboard(suite, args.results)
    return 0 if all(r["state"] == "ok" for r in rows) else 1


def _suite_records(suite, results: str) -> list:
    from harness.store import ResultStore

    keys = {c.key for c in suite.cells()}
    return [r for r in ResultStore(results).records() if r.get("key") in keys]


def _print_cells(suite, todo, done, results: str) -> None:
    from tabulate import tabulate

    from harness.run.plan import meta_gmacs, meta_gmacs_upper_bound, other_code

    flagged = other_code(done, results)
    state = {c.key: f"finished (skip; {flagged[c.key]})" if c.key in flagged else "finished (skip)" for c in done}
    rows = []
    for i, c in enumerate(suite.cells()):
        gmacs = meta_gmacs(c.backbone, c.method.as_dict())
        if gmacs is None:
            bound = meta_gmacs_upper_bound(c.backbone, c.method.as_dict())
            shown = "adaptive" if bound is None else f"<={bound:.4g} (adaptive)"
        else:
            shown = f"{gmacs:.4g}"
        rows.append((i, c.backbone["name"], c.dataset["name"], c.label, shown, state.get(c.key, "to run"),
                     c.key[:12]))
    print(tabulate([[plain(v) for v in row] for row in rows],
                   headers=["#", "backbone", "dataset", "method", "GMACs/view", "state", "key"], disable_numparse=True))
    print(f"{len(rows)} cells: {len(todo)} to run, {len(done)} finished")
