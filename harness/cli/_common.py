"""What the commands share: the user-error exception, terminal-safe text and the checks made before any work."""
from __future__ import annotations

import typing as tp


class UserError(Exception):
    """A mistake in the user's input: printed as one message, exit code 2."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``), handled like Ctrl-C."""


def plain(value, one_line: bool = True) -> str:
    """Text for the terminal (the one sanitising layer, ``harness.report.safe``): no escape sequences, control
    characters or bidirectional overrides; one line unless ``one_line`` is False."""
    from harness.report.safe import plain as safe_plain

    return safe_plain(value, one_line)


def check_output_file(path: str, what: str) -> None:
    """Before the work: ``path`` must take a file (not a directory, a device, /proc...)."""
    from harness.files import output_file_problem

    problem = output_file_problem(path, what=what)
    if problem:
        raise UserError(plain(problem))


def check_output_dir(path: str, what: str) -> None:
    from harness.files import output_dir_problem

    problem = output_dir_problem(path, what=what)
    if problem:
        raise UserError(plain(problem))


def check_writable(results: str, folders: tp.Optional[tp.Sequence[str]] = None) -> None:
    """Before any compute: every folder the command will write under ``results`` must take a file."""
    from harness.layout import writes_for
    from harness.run.local import NotWritable, check_writable as check

    try:
        check(results, writes_for("run") if folders is None else folders)
    except NotWritable as err:
        raise UserError(str(err)) from None


def load(path: str, overrides: tp.Sequence[str]):
    """The suite at ``path`` with ``--set`` overrides; a bad suite is a ``UserError``."""
    from harness.suite import SuiteError, load_suite

    try:
        return load_suite(path, overrides)
    except SuiteError as err:
        raise UserError(str(err)) from None
