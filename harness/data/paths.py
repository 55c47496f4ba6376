"""What a path must be before anything opens it: the right kind, readable, bounded (torch-free).

A path field that names a FIFO, a device (``/dev/zero``), a directory where a file is expected, an
unreadable file or a file too large to hash would hang, exhaust memory or crash a run long after
``validate`` said ok; ``file_problem`` / ``dir_problem`` name the problem instead (the suite's path
keys: ``harness.suite._paths``).
"""
from __future__ import annotations

import os
import stat
import typing as tp

from harness.files import kind_of

MAX_SUITE_BYTES = 4 << 20  # a suite (or included) YAML file
MAX_LIST_BYTES = 1 << 30  # annotation lists, label maps: read whole and hashed into cell keys
MAX_WEIGHTS_BYTES = 1 << 40  # checkpoints: hashed into cell keys
HF_PREFIX = "hf:"  # ``hf:ORG/NAME``: a Hugging Face hub name, passed on as it is (no local file)


def is_hf_directory(path: str) -> bool:
    """A Hugging Face model folder (``config.json`` inside): a valid ``checkpoint`` for backbones."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json"))


def file_problem(path: str, limit: int, *, what: str = "file", missing_ok: bool = False,
                 allow_hf_dir: bool = False) -> tp.Optional[str]:
    """Why ``path`` is not a readable regular file of at most ``limit`` bytes (None when it is)."""
    if "\0" in path:
        return f"{path!r} contains a NUL byte; not a usable path"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.lexists(path):
            return f"{path} is a dangling symbolic link"
        return None if missing_ok else f"{what} not found: {path}"
    except OSError as err:
        return f"cannot inspect {path}: {err.strerror or err}"
    if stat.S_ISDIR(st.st_mode) and allow_hf_dir:
        if os.path.isfile(os.path.join(path, "config.json")):
            return None  # a Hugging Face model folder (its loader checks the rest)
        return (f"{path} is a directory; expected a checkpoint file (or a Hugging Face model folder "
                "holding config.json)")
    if not stat.S_ISREG(st.st_mode):
        return f"{path} is {kind_of(st.st_mode)}; expected a regular {what}"
    if not os.access(path, os.R_OK):
        return f"{path} is not readable (permission denied)"
    if st.st_size > limit:
        return f"{path} is {st.st_size} bytes, more than the {limit} allowed for a {what}"
    real = os.path.realpath(path)
    if real.startswith(("/proc/", "/sys/", "/dev/")):  # regular-looking kernel files (/proc/self/mem)
        return f"{path} is a kernel pseudo-file ({real}); expected a regular {what}"
    return None


def dir_problem(path: str, *, missing_ok: bool = False) -> tp.Optional[str]:
    """Why ``path`` is not a readable directory (None when it is)."""
    if "\0" in path:
        return f"{path!r} contains a NUL byte; not a usable path"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None if missing_ok else f"directory not found: {path}"
    except OSError as err:
        return f"cannot inspect {path}: {err.strerror or err}"
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is {'a file' if stat.S_ISREG(st.st_mode) else kind_of(st.st_mode)}; expected a directory"
    if not os.access(path, os.R_OK | os.X_OK):
        return f"directory {path} is not readable (permission denied)"
    return None


def read_bounded_text(path: str, limit: int) -> str:
    """The text of a regular file of at most ``limit`` bytes; ``OSError``/``ValueError`` with the reason."""
    from harness.files import read_text

    return read_text(path, limit)
