"""The one bounded reader and the output checks (torch-free, no harness imports).

Every file the harness reads for its content (store records, ``samples.csv``, shard indexes,
``config.json``, annotation lists, worker logs) goes through ``read_bytes`` and its wrappers:

* only a regular file: a FIFO is opened without blocking and refused, as are devices (``/dev/zero``,
  also behind a symbolic link), sockets and directories;
* at most ``limit`` bytes (a 50 GB sparse file is refused by its size, before any read);
* within a deadline (a file that trickles in, e.g. on a hung network mount, is given up);
* JSON no deeper than ``MAX_JSON_DEPTH`` (checked before parsing: no ``RecursionError``);
* text decoded as UTF-8 (a byte-order mark dropped) with the line of the first bad byte named.

Every failure is a ``FileProblem``: a ``ValueError`` whose text is one line naming the file.

Outputs are checked before the work that produces them (``output_file_problem`` /
``output_dir_problem``): a directory where a file goes, a device (``/dev/full``), a FIFO, a folder
that cannot take a file (``/proc``, read-only, permission) are named up front, not after an hour of work.

Files that are part of a result's identity are hashed by ``cached_file_sha256`` (once per path, size and mtime).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import tempfile
import time
import typing as tp

DEADLINE_S = 30.0  # one file's read
MAX_JSON_DEPTH = 64  # no file the harness writes nests deeper than a handful of levels
MAX_RECORD_BYTES = 64 << 20  # one store record / samples.csv (a record is a few KiB; samples ~100 B a video)
MAX_INDEX_BYTES = 64 << 20  # a shard index, config.json
_CHUNK = 1 << 20


class FileProblem(ValueError):
    """A file that cannot be read as asked: one line naming the file and why."""


def kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_bytes(path: tp.Union[str, os.PathLike], limit: int, *, what: str = "file",
               deadline_s: float = DEADLINE_S) -> bytes:
    """The content of the regular file ``path`` (at most ``limit`` bytes), read within ``deadline_s``."""
    path = os.fspath(path)
    if "\0" in path:
        raise FileProblem(f"{path!r} contains a NUL byte; not a usable path")
    try:  # O_NONBLOCK: opening a FIFO does not wait for a writer (it is refused just below)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        if os.path.lexists(path):
            raise FileProblem(f"{path} is a dangling symbolic link") from None
        raise FileProblem(f"{what} not found: {path}") from None
    except OSError as err:
        raise FileProblem(f"cannot open {what} {path}: {err.strerror or err}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileProblem(f"{path} is {kind_of(st.st_mode)}; expected a regular {what}")
        if st.st_size > limit:
            raise FileProblem(f"{path} is {st.st_size} bytes, more than the {limit} allowed for a {what}")
        os.set_blocking(fd, True)
        end = time.monotonic() + deadline_s
        parts, total = [], 0
        while True:
            chunk = os.read(fd, _CHUNK)
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
            if total > limit:
                raise FileProblem(f"{path} grew past the {limit} bytes allowed for a {what} while being read")
            if time.monotonic() > end:
                raise FileProblem(f"{path}: reading took longer than {deadline_s:g} s; given up")
        return b"".join(parts)
    except OSError as err:
        raise FileProblem(f"cannot read {what} {path}: {err.strerror or err}") from None
    finally:
        os.close(fd)


def decode_text(data: bytes, path: str, *, what: str = "file") -> str:
    """UTF-8 text (a leading byte-order mark dropped); a bad byte is named with its line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise FileProblem(f"{path}: line {line}: not UTF-8 text (byte 0x{data[err.start]:02x}); save the {what} as "
                          "UTF-8") from None


def read_text(path: tp.Union[str, os.PathLike], limit: int, *, what: str = "file",
              deadline_s: float = DEADLINE_S) -> str:
    """``read_bytes`` decoded as UTF-8 (``decode_text``)."""
    return decode_text(read_bytes(path, limit, what=what, deadline_s=deadline_s), os.fspath(path), what=what)


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")


def json_depth(data: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest (brackets inside strings do not count)."""
    depth = deepest = 0
    for ch in _NOT_BRACKET.sub(b"", _JSON_STRING.sub(b"", data)):
        if ch in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def parse_json(data: bytes, path: str, *, what: str = "file", max_depth: int = MAX_JSON_DEPTH) -> tp.Any:
    """A JSON text of ``path`` parsed, at most ``max_depth`` deep."""
    if json_depth(data) > max_depth:
        raise FileProblem(f"{path}: JSON nested deeper than {max_depth} levels; not a {what}")

    try:  # NaN / Infinity literals parse (Python writes them): the bounds of each field refuse them by name
        return json.loads(decode_text(data, path, what=what))
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise FileProblem(f"{path}: JSON nested too deep; not a {what}") from None
    except ValueError as err:
        if isinstance(err, FileProblem):
            raise
        raise FileProblem(f"{path}: not valid JSON ({err})") from None


def read_json(path: tp.Union[str, os.PathLike], limit: int, *, what: str = "file",
              max_depth: int = MAX_JSON_DEPTH, deadline_s: float = DEADLINE_S) -> tp.Any:
    """``read_bytes`` parsed as JSON (``parse_json``)."""
    return parse_json(read_bytes(path, limit, what=what, deadline_s=deadline_s), os.fspath(path), what=what,
                      max_depth=max_depth)


# an exception line (``IndexError: ...``) or a tool's error line (``slurmstepd: error: ... oom_kill ...``)
_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Died|Problem)\b:?|\berror:", re.I)


def last_error_line(path: tp.Optional[tp.Union[str, os.PathLike]], limit: int = 300,
                    tail_bytes: int = 64 << 10) -> str:
    """The last line of a log that names an exception (``IndexError: ...``), else its last line ("" when
    there is no readable log). Only the log's last ``tail_bytes`` are read, with the same refusals as
    ``read_bytes`` (a log replaced by a FIFO or a device does not hang the caller)."""
    if not path:
        return ""
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return ""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return ""
        os.lseek(fd, max(0, st.st_size - tail_bytes), os.SEEK_SET)
        data = os.read(fd, tail_bytes)
    except OSError:
        return ""
    finally:
        os.close(fd)
    lines = [ln.strip() for ln in data.decode("utf-8", errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if _ERROR_LINE.search(ln)]
    line = (errors or lines or [""])[-1]
    return line[-limit:]


# -- outputs ----------------------------------------------------------------------------------------------

def _try_write_in(folder: str) -> tp.Optional[str]:
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".write-check-")
        os.close(fd)
        os.remove(tmp)
    except OSError as err:
        return err.strerror or str(err)
    return None


def _dir_reason(path: str, create: bool) -> tp.Optional[str]:
    """Why the folder ``path`` cannot take a new file (None: it can)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as err:
        return err.strerror or str(err)
    if st is not None and not stat.S_ISDIR(st.st_mode):
        return f"is {'a file' if stat.S_ISREG(st.st_mode) else kind_of(st.st_mode)}, not a folder"
    if st is None:
        if not create:
            parent = os.path.dirname(os.path.abspath(path))
            return None if parent == path else _dir_reason(parent, False)
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as err:
            return f"cannot be created ({err.strerror or err})"
    reason = _try_write_in(path)
    return f"is not writable ({reason})" if reason else None


def output_dir_problem(path: tp.Union[str, os.PathLike], *, what: str = "output folder",
                       create: bool = True) -> tp.Optional[str]:
    """Why files cannot be written into the folder ``path`` (None: they can). ``create``: a missing folder
    is made (as the work would), then written to; else only its nearest existing parent is checked."""
    path = os.fspath(path) or "."
    if "\0" in path:
        return f"{what} {path!r} contains a NUL byte"
    reason = _dir_reason(path, create)
    return f"{what} {path} {reason}" if reason else None


def output_file_problem(path: tp.Union[str, os.PathLike], *, what: str = "output file") -> tp.Optional[str]:
    """Why the file ``path`` cannot be written (None: it can): a directory, a device (``/dev/full``), a FIFO
    or a socket there, a read-only file, or a folder that cannot take a new file. Its folder is created
    if missing (as writing it would)."""
    path = os.fspath(path)
    if not path or "\0" in path:
        return f"{what} {path!r} is not a usable path"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as err:
        return f"{what} {path}: {err.strerror or err}"
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            return f"{what} {path} is {kind_of(st.st_mode)}; expected a file to write"
        if not os.access(path, os.W_OK):
            return f"{what} {path} is not writable (permission denied)"
    folder = os.path.dirname(os.path.abspath(path))
    reason = _dir_reason(folder, True)
    return f"{what} {path}: its folder {folder} {reason}" if reason else None


# Content hashes of input files (checkpoints, annotation lists, label maps, the code): part of cell keys.
_SHA_CACHE: dict = {}  # (abspath, size, mtime_ns) -> sha256


def cached_file_sha256(path: str) -> str:
    """``file_sha256`` remembered per (path, size, mtime); ``"missing:<path>"`` when absent."""
    try:
        st = os.stat(path)
    except OSError:
        return f"missing:{path}"
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        try:
            _SHA_CACHE[key] = file_sha256(path)
        except (OSError, ValueError):  # a FIFO, a device, unreadable: the loader names the problem
            return f"unreadable:{path}"
    return _SHA_CACHE[key]


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    """sha256 of a regular file's content; ValueError for anything else (a FIFO or ``/dev/zero`` would
    never end)."""
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with open(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ValueError(f"{path} is not a regular file; cannot hash it")
        os.set_blocking(fd, True)
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


# folders of backbone-family modules kept outside the repository (harness.models.families), os.pathsep-separated
FAMILIES_PATH_VARIABLE = "HARNESS_FAMILIES_PATH"


def path_variable_folders(variable: str) -> tp.List[str]:
    """The folders the environment variable ``variable`` names (``os.pathsep``-separated), in order."""
    return [folder for folder in os.environ.get(variable, "").split(os.pathsep) if folder]
