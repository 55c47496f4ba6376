"""``harness viz``: a method's token map on one clip (docs/token_maps.md)."""
from __future__ import annotations

import argparse
import os
import sys

from harness.cli._common import UserError, check_output_file, plain

HELP = "token map: which patches each reducing block keeps, merges, drops or halts"
DESCRIPTION = ("Draw a method's token map on one clip (docs/token_maps.md). The model comes from --method (+ --set) "
               "or from a suite cell (--suite + --cell).")
FORMATS = (".png", ".svg", ".pdf", ".jpg", ".jpeg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", help="registered method (harness ls methods)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a method parameter with --method (r=16); a suite override with --suite")
    parser.add_argument("--backbone", help="preset (default synthetic_vit_tiny); with --suite: which backbone's cell")
    parser.add_argument("--checkpoint", help="trained weights (default for the synthetic presets: the committed ones)")
    parser.add_argument("--init-from", metavar="PATH",
                        help="start from these weights as fine-tuning would (a trained method before fine-tuning)")
    parser.add_argument("--suite", help="suite file: the cell gives backbone, method, settings and weights")
    parser.add_argument("--cell", metavar="LABEL", help="cell label as `run SUITE --dry-run` prints it")
    parser.add_argument("--results", default="results", help="store holding the suite's fine-tunes")
    parser.add_argument("--video", metavar="PATH", help="a video file (decoded with the cell's or a fitted protocol)")
    parser.add_argument("--index", "--synthetic-index", dest="index", type=int, metavar="N",
                        help="video N of the dataset (the cell's, else synthetic_motion; default 0)")
    parser.add_argument("--split", help="dataset split for --index (default: the cell's; synthetic_motion: val)")
    parser.add_argument("--frame-interval", type=int, metavar="N", help="frames between sampled frames (--video)")
    parser.add_argument("--out", metavar="PATH", help="PNG to write (default token_map_<method>.png)")
    parser.add_argument("--gif", action="store_true", help="also write PATH.gif: every frame, one panel per step")
    parser.add_argument("--title", help="replace the first title line")


def run(args) -> int:
    from harness.suite import parse_assignment
    from harness.viz import VizError, VizRequest, run_viz

    method_args, overrides = {}, list(args.set)
    if not args.suite:  # --set holds the method's knobs; with a suite, suite overrides
        for text in args.set:
            try:
                key, value = parse_assignment(text, example="r=16")
            except ValueError as err:
                raise UserError(f"--set {text!r}: {err}") from None
            method_args[key] = value
        overrides = []
    out = args.out or f"token_map_{args.method or (args.cell or 'map').split(' ')[0]}.png"
    if os.path.splitext(out)[1].lower() not in FORMATS:
        raise UserError(f"viz --out {plain(out)}: expected a file ending in {', '.join(FORMATS)}")
    check_output_file(out, "viz --out")
    if args.gif:
        check_output_file(os.path.splitext(out)[0] + ".gif", "viz --gif")
    req = VizRequest(out=out, method=args.method, method_args=method_args, backbone=args.backbone,
                     checkpoint=args.checkpoint, init_from=args.init_from, suite=args.suite, cell=args.cell,
                     overrides=overrides, results=args.results, video=args.video, index=args.index,
                     split=args.split, frame_interval=args.frame_interval, gif=args.gif, title=args.title)
    try:
        for path in run_viz(req):
            print(f"wrote {plain(path)}", file=sys.stderr)
    except VizError as err:
        raise UserError(str(err)) from None
    return 0
