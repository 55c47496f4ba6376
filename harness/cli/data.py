"""``harness data check TARGET``: list missing, unreadable and corrupt videos of a suite's datasets (changes
nothing)."""
from __future__ import annotations

import argparse
import os

from harness.cli._common import UserError, load, plain

HELP = "dataset tools"
MAX_PROBE_FRAMES = 1024  # data check --frames: more says nothing a full decode would not


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", required=True)
    check = sub.add_parser("check", help="list missing, unreadable and corrupt videos (changes nothing)")
    check.add_argument("target", help="a suite file (checks its datasets) or a registered dataset name")
    check.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="suite override, or a dataset field when TARGET is a dataset name")
    check.add_argument("--frames", type=int, default=3, help="probe frames decoded per video")
    check.add_argument("--workers", type=int, default=2, help="decoder processes")


def run(args) -> int:
    return {"check": check}[args.data_command](args)


def check(args) -> int:
    from tabulate import tabulate

    from harness.data.check import check_items

    if not 1 <= args.frames <= MAX_PROBE_FRAMES:
        raise UserError(f"data check --frames: expected 1 to {MAX_PROBE_FRAMES} probe frames per video, "
                        f"got {args.frames}")
    if not 1 <= args.workers <= 256:
        raise UserError(f"data check --workers: expected 1 to 256 decoder processes, got {args.workers}")
    datasets = _datasets_to_check(args)
    bad = 0
    for title, dataset in datasets:
        try:
            items = dataset.items()
        except (OSError, ValueError) as err:
            raise UserError(f"{title}: {err}") from None
        title = plain(title)
        result = check_items(items, frames=args.frames, workers=args.workers,
                             timeout_s=getattr(dataset, "decode_timeout_s", 60.0),
                             decoder=getattr(dataset, "decoder", "decord"))
        print(f"{title}: {result['listed']} listed, {result['ok']} ok, {result['missing']} missing, "
              f"{result['unreadable']} unreadable, {result['empty']} empty, {result['corrupt']} corrupt, "
              f"{result['invalid']} invalid" + "".join(f", {result[s]} {s}" for s in ("timeout", "crash", "mismatch")
                                                       if result[s]))
        if result["problems"]:
            rows = [(p["index"], plain(p["status"]), plain(p["path"]), plain(p["error"])) for p in result["problems"]]
            print(tabulate(rows, headers=["#", "status", "path", "error"], disable_numparse=True))
        bad += len(result["problems"])
    return 1 if bad else 0


def _datasets_to_check(args) -> list:
    """(title, dataset object) pairs: every dataset of a suite file, or one registered dataset."""
    if os.path.isfile(args.target) or args.target.endswith((".yaml", ".yml")):
        suite = load(args.target, args.set)
        seen, out = set(), []
        for cell in suite.cells():
            title = f"{cell.dataset['name']} ({cell.dataset.get('ann_file') or cell.dataset.get('split') or ''})"
            if title not in seen:
                seen.add(title)
                out.append((title, cell.dataset_object))
        from harness.data import build_dataset

        for ft in suite.finetunes():  # the fine-tunes' training sets too: a broken video stops a training run
            for part in (ft.dataset, ft.val_dataset):
                title = f"{part['name']} ({part.get('ann_file') or part.get('split') or ''})" if part else None
                if part and title not in seen:
                    seen.add(title)
                    out.append((title, build_dataset(part)))
        return out
    from harness.suite import dataset_from_overrides, format_problems

    dataset, problems = dataset_from_overrides(args.target, args.set)  # the same checks as a suite's entry
    if problems:
        raise UserError(f"dataset {args.target!r}:\n" + format_problems(problems))
    return [(args.target, dataset)]
