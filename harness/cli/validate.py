"""``harness validate SUITE``: check a suite file and report every problem at once."""
from __future__ import annotations

import argparse
import sys

from harness.cli._common import load, plain

HELP = "check a suite file and report every problem"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")


def run(args) -> int:
    from harness.suite import format_problems, validate_suite

    problems = validate_suite(args.suite, args.set)
    if problems:
        print(plain(format_problems(problems), one_line=False), file=sys.stderr)
        return 2
    suite = load(args.suite, args.set)
    print(f"{plain(args.suite)}: ok ({len(suite.cells())} cells)")
    return 0
