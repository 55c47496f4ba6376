"""``harness finetune SUITE``: train a suite's fine-tuning runs (``run`` trains them first anyway)."""
from __future__ import annotations

import argparse
import os

from harness.cli._common import check_writable, load, plain

HELP = "train a suite's fine-tuning runs (run does this first anyway)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite")
    parser.add_argument("--executor", choices=("local", "debug"), default="local")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and their state")
    parser.add_argument("--force", action="store_true",
                        help="retrain every run from scratch (also those finished or shipped with the repository)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--results", default="results")


def run(args) -> int:
    from harness.run.local import run_finetunes

    suite = load(args.suite, list(args.set))
    if args.dry_run:
        print_finetunes(suite, args.results)
        return 0
    check_writable(args.results, ("logs", "finetunes"))
    results = run_finetunes(suite, executor=args.executor, store_root=args.results, force=args.force)
    return 1 if any("error" in r for r in results.values()) else 0


def print_finetunes(suite, results: str) -> None:
    """The suite's fine-tuning runs and their state (``finetune --dry-run``, and ``run --dry-run`` first)."""
    from tabulate import tabulate

    from harness.training import SHIPPED, epochs_done, is_complete, run_dir as finetune_dir

    rows = []
    for ft in suite.finetunes():
        run_dir = finetune_dir(results, ft.key())
        recipe = ft.resolved_recipe()
        state = ("finished" if is_complete(run_dir) else
                 "shipped (checkpoints/finetunes)" if is_complete(os.path.join(SHIPPED, ft.key())) else
                 f"{epochs_done(run_dir)}/{recipe['epochs']} epochs")
        params = " ".join(f"{k}={v}" for k, v in ft.method["params"].items())
        rows.append((ft.key(), ft.backbone["name"], f"{ft.method['name']} {params}", ft.dataset["name"],
                     recipe["epochs"], recipe["lr"], state))
    if rows:
        print(tabulate([[plain(v) for v in row] for row in rows],
                       headers=["fine-tune", "backbone", "method", "train set", "epochs", "lr", "state"],
                       disable_numparse=True))
    else:
        print("no fine-tuning runs in this suite")
