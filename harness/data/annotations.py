"""Annotation readers: mmaction2 video lists, VideoMAE csv lists and class-name files (torch-free).

Formats
-------
* ``mmaction``: one video per line, ``relative/path.mp4 label``, separated by any whitespace
  (mmaction2 ``VideoDataset``). Paths may not contain whitespace.
* ``videomae_csv``: VideoMAE's ``train.csv``/``val.csv``/``test.csv``, read there with
  ``pd.read_csv(header=None, delimiter=' ')``: ``path label`` separated by one space. A comma
  separator (``path,label``) is accepted too, since hand-made lists often use one.
* ``auto``: a file whose first non-blank line holds a comma and no whitespace is ``videomae_csv``,
  anything else ``mmaction``. Both readers accept the same space-separated lines.

Blank lines and lines starting with ``#`` are skipped. A malformed line raises ``ValueError`` naming
the file and its 1-based line number.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import re
import typing as tp

AnnFormat = tp.Literal["auto", "mmaction", "videomae_csv"]
ANN_FORMATS: tuple[str, ...] = ("auto", "mmaction", "videomae_csv")


@dataclasses.dataclass(frozen=True)
class VideoItem:
    """One annotated video: resolved path, integer label and position in the annotation file."""

    path: str  # data_root joined with the listed path
    label: int  # class index, >= 0 (as listed, even when ``problem`` says it is out of range)
    index: int  # 0-based position among the file's videos (blank/comment lines not counted)
    # why this entry cannot be evaluated although it is listed (a label out of range, a duplicate...):
    # it is reported as a failure with this message, never decoded and never replaced
    problem: tp.Optional[str] = None


@dataclasses.dataclass(frozen=True)
class FrameFolderItem(VideoItem):
    """A video stored as a folder of decoded frames (mmaction2 ``RawframeDataset``).

    ``path`` is the folder; frame ``i`` (0-based, as the samplers count) is the file
    ``filename_tmpl.format(i + start_index)``. ``num_frames`` is the listed ``total_frames``: the
    samplers use it, as mmaction2 does, without counting the files.
    """

    num_frames: int = 0
    filename_tmpl: str = "img_{:05d}.jpg"
    start_index: int = 1

    def frame_path(self, i: int) -> str:
        return os.path.join(self.path, self.filename_tmpl.format(int(i) + self.start_index))


def read_list_text(path: str, what: str = "annotation file") -> str:
    """The text of an annotation, label or class file through the bounded reader (``harness.files``): a
    regular file of at most ``MAX_LIST_BYTES``, UTF-8 (a byte-order mark dropped; a bad byte named with its
    line). ``FileNotFoundError`` when it does not exist, ``ValueError`` naming the file otherwise."""
    from harness.data.paths import MAX_LIST_BYTES
    from harness.files import read_text

    if not os.path.lexists(path):
        raise FileNotFoundError(f"{what} not found: {os.path.abspath(path)}")
    return read_text(path, MAX_LIST_BYTES, what=what)


def content_lines(path: str) -> list[tuple[int, str]]:
    """(1-based line number, stripped text) for every non-blank, non-comment line."""
    raw = read_list_text(path).splitlines()
    return [(n, s.strip()) for n, s in enumerate(raw, 1) if s.strip() and not s.strip().startswith("#")]


def detect_format(path: str) -> str:
    """Guess ``"mmaction"`` or ``"videomae_csv"`` from the first content line of ``path``."""
    lines = content_lines(path)
    if lines and "," in lines[0][1] and len(lines[0][1].split()) == 1:
        return "videomae_csv"
    return "mmaction"


_ASCII_INT = re.compile(r"[+-]?[0-9]{1,18}")


def _parse_label(text: str, path: str, lineno: int, line: str) -> int:
    if not _ASCII_INT.fullmatch(text):  # int() also takes "1_1" (11) and other scripts' digits ("٣": 3)
        raise ValueError(f"{path}:{lineno}: label {text!r} is not an integer (ASCII digits) in line {line!r}")
    label = int(text)
    if label < 0:
        raise ValueError(f"{path}:{lineno}: negative label {label} in line {line!r}")
    return label


def _split_line(fmt: str, line: str) -> list[str]:
    if fmt == "videomae_csv" and "," in line and len(line.split()) == 1:
        return [p.strip() for p in line.split(",")]
    return line.split()


def read_video_list(
    path: str, data_root: str = "", fmt: AnnFormat = "auto", num_classes: tp.Optional[int] = None
) -> list[VideoItem]:
    """Read a video annotation file into ``VideoItem`` s.

    Parameters
    ----------
    path: the annotation file.
    data_root: prefix joined to every listed path (``os.path.join``; absolute listed paths win).
    fmt: ``"auto"``, ``"mmaction"`` or ``"videomae_csv"`` (see the module docstring).
    num_classes: when given, labels ``>= num_classes`` are rejected.

    Raises
    ------
    ValueError: an unknown format or a malformed line (message ``file:line: problem``).
    FileNotFoundError: ``path`` does not exist.
    """
    if fmt not in ANN_FORMATS:
        raise ValueError(f"unknown annotation format {fmt!r}; expected one of {ANN_FORMATS}")
    lines = content_lines(path)
    if fmt == "auto":
        fmt = detect_format(path)
    items: list[VideoItem] = []
    for lineno, line in lines:
        parts = _split_line(fmt, line)
        if len(parts) != 2:
            raise ValueError(
                f"{path}:{lineno}: expected 'path label' ({fmt} format), got {len(parts)} fields in line {line!r}"
            )
        label = _parse_label(parts[1], path, lineno, line)
        if num_classes is not None and label >= num_classes:
            raise ValueError(f"{path}:{lineno}: label {label} >= num_classes {num_classes} in line {line!r}")
        items.append(VideoItem(path=os.path.join(data_root, parts[0]), label=label, index=len(items)))
    return items


def first_label_beyond(path: str, fmt: str, limit: int) -> tp.Optional[str]:
    """``file:line: label L ...`` for the first listed label ``>= limit`` (a model head's size), or the list's
    first unreadable line (``read_video_list``'s message); None when all is well or the file is missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _first_label_beyond(os.path.abspath(path), st.st_size, st.st_mtime_ns, fmt, limit)


@functools.lru_cache(maxsize=64)
def _first_label_beyond(path: str, size: int, mtime_ns: int, fmt: str, limit: int) -> tp.Optional[str]:
    try:
        read_video_list(path, "", fmt)  # a line it cannot read (encoding, fields, a label that is no number)
        lines = content_lines(path)
        fmt = detect_format(path) if fmt == "auto" else fmt
    except ValueError as err:
        return str(err)
    except OSError:
        return None  # a missing file: the path check names it
    for lineno, line in lines:
        parts = _split_line(fmt, line)
        if len(parts) == 2 and _ASCII_INT.fullmatch(parts[1]) and int(parts[1]) >= limit:
            return f"{path}:{lineno}: label {int(parts[1])} is beyond the model's {limit}-class head (labels 0..{limit - 1})"
    return None


def read_label_map(path: str) -> list[str]:
    """Read class names, one per line; the class index is the line's position (0-based).

    Blank lines are rejected (they would shift every later index); duplicates too.
    """
    raw = read_list_text(path, "label map").splitlines()
    while raw and not raw[-1].strip():  # a trailing newline or blank tail is harmless
        raw.pop()
    names: list[str] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(raw, 1):
        name = line.strip()
        if not name:
            raise ValueError(f"{path}:{lineno}: blank class name (it would shift later class indices)")
        if name in seen:
            raise ValueError(f"{path}:{lineno}: duplicate class name {name!r} (first on line {seen[name]})")
        seen[name] = lineno
        names.append(name)
    return names
