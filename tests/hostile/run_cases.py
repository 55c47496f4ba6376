"""Run ``harness.cli.main`` on many argument lists in one process (JSON on stdin, JSON on stdout).

Each case: ``{"argv": [...], "cwd": "..."}`` (``preload``: modules imported before the first case); each result: ``{"rc", "out", "err", "exc", "secs"}``
(``exc`` is the traceback of anything ``main`` let escape). A case running past ``limit_s`` is stopped
by SIGALRM and reported as an exception; the caller's subprocess timeout catches a hang in C.
"""
import contextlib
import io
import json
import os
import signal
import sys
import time
import traceback


class _Expired(BaseException):
    pass


def _expire(*_):
    raise _Expired("still running after the per-case limit (a hang)")


def main() -> None:
    spec = json.load(sys.stdin)
    import importlib

    from harness.cli import main as cli_main

    for name in spec.get("preload", []):  # heavy imports (torch) before the per-case alarms start
        importlib.import_module(name)

    signal.signal(signal.SIGALRM, _expire)
    results = []
    for case in spec["cases"]:
        out, err = io.StringIO(), io.StringIO()
        os.chdir(case["cwd"])
        t0 = time.monotonic()
        rc, exc = None, None
        signal.alarm(spec.get("limit_s", 20))
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                rc = cli_main(case["argv"])
        except SystemExit as e:  # argparse
            rc = e.code
        except BaseException:  # noqa: BLE001 -- exactly what the test looks for
            exc = traceback.format_exc()
        finally:
            signal.alarm(0)
        results.append({"rc": rc, "out": out.getvalue(), "err": err.getvalue(), "exc": exc,
                        "secs": time.monotonic() - t0})
    json.dump(results, sys.__stdout__)


if __name__ == "__main__":
    main()
