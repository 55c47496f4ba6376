"""``harness report``: leaderboards from the results store (terminal, Markdown, CSV, JSON, LaTeX or HTML)."""
from __future__ import annotations

import argparse
import os
import sys

from harness.cli._common import UserError, check_output_dir, check_output_file, plain
from harness.layout import Layout
from harness.measure.choices import COMPILE_MODES, PRECISIONS, SDPA_BACKENDS

HELP = "leaderboards from the results store"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("term", "md", "csv", "json", "latex", "html"), default="term",
                        help="html: one self-contained page with plots (default file results/report.html)")
    parser.add_argument("--results", default="results")
    parser.add_argument("--out", metavar="PATH", help="write to PATH instead of stdout ('-': stdout)")
    parser.add_argument("--plots", metavar="DIR", help="also write PNG + SVG accuracy-cost plots per group to DIR")
    parser.add_argument("--budget", metavar="NAME=VALUE",
                        help="add accuracy at a matched budget per method, e.g. gmacs=0.12 or clips_per_s=400")
    for name in ("suite", "backbone", "dataset", "method"):
        parser.add_argument(f"--{name}", action="append", metavar="NAME",
                            help=f"only this {name} (exact name; repeat for several)")
    for name, values in (("precision", PRECISIONS), ("compile", COMPILE_MODES), ("sdpa_backend", SDPA_BACKENDS)):
        example = ", ".join(values)
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, action="append", metavar="VALUE",
                            help=f"only records measured with this {name.replace('_', ' ')} ({example}; repeat for "
                                 "several)")
    parser.add_argument("--sync", action="store_true",
                        help="first record lost Slurm tasks and merge finished shards (as `status` does)")
    parser.add_argument("--sort", metavar="COLUMN",
                        help="order rows by a table column, e.g. top1 (--sort=-top1: descending)")


def run(args) -> int:
    from harness.report import render
    from harness.store import ResultStore

    if args.sync:  # the one write a report may do, when asked: what `harness status` does first
        from harness.cluster.status import sync_store

        for action in sync_store(args.results):
            print(f"synced: {action}", file=sys.stderr)
    elif Layout(args.results).submissions.is_dir():
        print(f"note: {args.results}/ holds Slurm submissions; `harness status` (or `report --sync`) records "
              "lost tasks and merges finished shards; a plain report only reads", file=sys.stderr)
    out = args.out or (os.path.join(args.results, "report.html") if args.format == "html" else None)
    if out not in (None, "-"):
        check_output_file(out, "report --out" if args.out else "the HTML report (report --out)")
    if args.plots:
        check_output_dir(args.plots, "report --plots")
    store = ResultStore(args.results)
    from harness.report.tables import FILTERS

    filters = {k: getattr(args, k) for k in FILTERS if getattr(args, k)}
    records = list(store.records())
    try:
        text = render(records, args.format, root=args.results, samples=store.read_samples, budget=args.budget,
                      filters=filters, sort=args.sort)
        if args.plots and records:
            from harness.report import make_plots, prepare

            tables = prepare(records, store.read_samples, filters, args.sort)
            written = [p for paths in make_plots(tables, args.plots).values() for p in paths]
            print(f"wrote {len(written)} plot files under {args.plots}", file=sys.stderr)
    except ValueError as err:
        raise UserError(str(err)) from err
    if out is None or out == "-":
        print(text, end="" if text.endswith("\n") else "\n")
        return 0
    from pathlib import Path

    from harness.store import atomic_write_bytes

    try:
        atomic_write_bytes(Path(out), (text if text.endswith("\n") else text + "\n").encode("utf-8"))
    except OSError as err:
        raise UserError(f"report --out {out}: cannot write ({err.strerror or err})") from None
    print(f"wrote {plain(out)}", file=sys.stderr)
    return 0
