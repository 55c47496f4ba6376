"""Command line: ``harness run | status | report | ls | validate | train | viz`` (and more: ``--help``).

One module per command, each with ``add_arguments(parser)`` and ``run(args) -> int`` (plus ``HELP``, and
``DESCRIPTION`` where the help page says more); this module assembles them and owns what every command shares:
user errors (a bad suite, an unknown name, a missing file) print one clear message and exit 2, they never show a
traceback; a full disk, Ctrl-C and SIGTERM end with one line saying what was kept.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import typing as tp

from harness.cli import bench, data, finetune, ls, report, run, status, train, validate, viz
from harness.cli._common import Interrupted, UserError, plain

EPILOG = """examples:
  python -m harness run suites/quickstart.yaml          # run every unfinished cell
  python -m harness run suites/quickstart.yaml --dry-run --set eval.limit=50
  python -m harness report --format md
  python -m harness run suites/k400_vit_b.yaml --executor slurm --profile mycluster --shards 8
  python -m harness status suites/k400_vit_b.yaml       # each cell's state: store + squeue/sacct
  python -m harness ls methods
  python -m harness validate suites/quickstart.yaml
  python -m harness data check suites/k400_vit_b.yaml   # list missing / corrupt videos
  python -m harness train --out my_d8.pth                 # the quickstart backbone (--force to overwrite one)
  python -m harness viz --method tome --set r=16 --index 23 --out token_map_tome.png --gif
  python -m harness viz --suite suites/quickstart.yaml --cell "sttm motion=learned ft=sttm_k50"
"""

# in the order ``--help`` lists them
COMMANDS = {"run": run, "report": report, "status": status, "ls": ls, "validate": validate, "data": data,
            "finetune": finetune, "bench": bench, "train": train, "viz": viz}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description="Benchmark token reduction in video "
                                     "transformers.", epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        parser_ = sub.add_parser(name, help=command.HELP, description=getattr(command, "DESCRIPTION", None))
        command.add_arguments(parser_)
        parser_.set_defaults(func=command.run)  # looked up now, so a test may replace a command's ``run``
    return parser


def _on_sigterm(signum, frame):
    raise Interrupted()


class _PlainLogs(logging.Formatter):
    """Log lines (warnings naming store files, say) through the same sanitising layer as everything printed."""

    def format(self, record) -> str:
        return plain(f"{record.levelname.lower()}: {super().format(record)}", one_line=False)


def _sanitised_logging() -> None:
    logger = logging.getLogger("harness")
    if not any(isinstance(h.formatter, _PlainLogs) for h in logger.handlers):
        class Stderr(logging.StreamHandler):
            stream = property(lambda self: sys.stderr, lambda self, value: None)  # sys.stderr when emitting

        handler = Stderr()
        handler.setFormatter(_PlainLogs("%(message)s"))
        handler.setLevel(logging.WARNING)
        logger.addHandler(handler)


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> int:
    import signal
    import threading

    args = build_parser().parse_args(argv)
    _sanitised_logging()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return args.func(args)
    except UserError as err:
        print(f"error: {plain(err, one_line=False)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stdout = open(os.devnull, "w")
        return 0
    except OSError as err:
        import errno

        if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise
        where = f" writing {plain(err.filename)}" if err.filename else ""
        print(f"error: {err.strerror or err}{where}; stopped. Records already written are intact; free space (or "
              f"make the folder writable) and run `{args.command}` again to resume", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        how = "SIGTERM" if isinstance(err, Interrupted) else "Ctrl-C"
        if args.command in ("run", "finetune"):
            print(f"interrupted ({how}): the running worker was stopped; finished cells and fine-tuning epochs are "
                  f"kept, and `{args.command}` resumes from them", file=sys.stderr)
        else:
            print(f"interrupted ({how})", file=sys.stderr)
        return 143 if isinstance(err, Interrupted) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
