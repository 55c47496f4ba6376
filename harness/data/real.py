"""Real benchmark datasets in their official layouts: Kinetics-400, Something-Something v2, UCF-101.

Torch-free at import (registration only). Each entry is a ``VideoProtocol`` subclass whose protocol
defaults are the VideoMAE test protocol of that dataset (see ``docs/datasets.md``), so one instance
is a resolved dataset *and* its test protocol, used by ``harness.measure.accuracy`` exactly like
``video_list``: ``items()``, ``build()``, ``key_material()``, ``manifest()``, ``resolve_num_classes()``.

Errors
------
* A missing annotation/label file or ``data_root`` raises ``FileNotFoundError`` at ``items()`` time,
  naming the suite field and the absolute path. Individual missing or undecodable *videos* are not
  an error here: evaluation counts them in the record's coverage (measurement.md P19).
* A malformed line (wrong field count, a label that is not an integer, a CSV without its header)
  raises ``ValueError`` naming ``file:line``: the file itself is not what the adapter reads.
* A well-formed entry that cannot be evaluated -- a label out of range, an unknown class name, a
  label contradicting the class folder, a video listed a second time -- is kept in ``items()`` with
  ``VideoItem.problem`` naming ``file:line`` and the reason: evaluation reports it as a failed video
  in the record's coverage (never decoded, never replaced, a duplicate never counted twice) and
  ``harness data check`` lists it as ``invalid``.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import typing as tp

from harness.data.annotations import (ANN_FORMATS, VideoItem, content_lines, detect_format, read_label_map,
                                      read_list_text, read_video_list)
from harness.data.datasets import items_sha256
from harness.data.registry import VideoProtocol, register_dataset
from harness.files import cached_file_sha256

if tp.TYPE_CHECKING:
    from harness.data.video_dataset import VideoDataset


class Entry(tp.NamedTuple):
    """One listed video: relative path, label (-1 when unknown), annotation file, 1-based line."""

    rel: str
    label: int
    file: str
    line: int
    problem: tp.Optional[str] = None  # why it cannot be evaluated (without file:line)
    num_frames: int = 0  # listed frame count (frame-folder datasets), 0 for video files


def _require_file(field: str, path: tp.Optional[str], dataset: str) -> str:
    if not path:
        raise FileNotFoundError(f"{dataset}: {field} is not set")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{dataset}: {field} not found: {os.path.abspath(path)}")
    return path


def _list_entries(path: str, fmt: str) -> list[Entry]:
    """mmaction2 / VideoMAE lists via ``read_video_list``, with the line number of every entry."""
    listed = read_video_list(path, "", fmt)
    lines = content_lines(path)
    return [Entry(it.path, it.label, path, lines[i][0]) for i, it in enumerate(listed)]


class RealDataset:
    """Shared machinery; subclasses define ``_entries()``, ``_ann_files()`` and ``num_classes``."""

    dataset_name: tp.ClassVar[str] = ""

    # -- to override ---------------------------------------------------------------------------------
    def _entries(self) -> list[Entry]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _ann_files(self) -> dict:
        """``{field: path}`` of every annotation file that determines the items."""
        raise NotImplementedError  # pragma: no cover

    def _static_problems(self) -> list[str]:
        return []

    # -- shared --------------------------------------------------------------------------------------
    def check(self) -> list[str]:
        """Static problems (protocol + fields); no file access (files are checked by ``items()``)."""
        problems = VideoProtocol.check(self)  # type: ignore[arg-type]
        if not getattr(self, "ann_file", ""):
            problems.append(f"ann_file is required for dataset {self.dataset_name!r}")
        if self.num_classes is not None and self.num_classes <= 0:  # type: ignore[attr-defined]
            problems.append(f"num_classes must be positive, got {self.num_classes}")  # type: ignore[attr-defined]
        if not getattr(self, "video_ext", "x"):
            problems.append("video_ext must not be empty")
        return problems + self._static_problems()

    def resolve_num_classes(self, items: tp.Optional[tp.Sequence[VideoItem]] = None) -> int:
        """The class count the labels index into (the checkpoint's head size)."""
        return int(self.num_classes)  # type: ignore[attr-defined]

    def _checked_entries(self) -> list[Entry]:
        """Every listed entry; ``problem`` = ``file:line: reason`` for those that cannot be evaluated."""
        for field, path in self._ann_files().items():
            _require_file(field, path, self.dataset_name)
        entries = self._entries()
        limit = self.resolve_num_classes()
        seen: dict[str, Entry] = {}
        out: list[Entry] = []
        for e in entries:
            problem = e.problem
            if problem is None and (e.label < 0 or e.label >= limit):
                problem = f"label {e.label} out of range for num_classes {limit}"
            key = os.path.normpath(e.rel)
            if key in seen:
                first = seen[key]
                problem = f"duplicate video {e.rel!r} (first listed at {first.file}:{first.line})"
            else:
                seen[key] = e
            out.append(e._replace(problem=f"{e.file}:{e.line}: {problem}" if problem else None))
        return out

    def _item(self, root: str, index: int, entry: Entry) -> VideoItem:
        return VideoItem(path=os.path.join(root, entry.rel), label=entry.label, index=index, problem=entry.problem)

    def items(self) -> list[VideoItem]:
        """The annotated videos, paths joined with ``data_root``; every check of the module docstring.

        Entries that cannot be evaluated are included, with ``problem`` set (see the module docstring).
        """
        root = getattr(self, "data_root", "")
        if root and not os.path.isdir(root):
            raise FileNotFoundError(f"{self.dataset_name}: data_root is not a directory: {os.path.abspath(root)}")
        return [self._item(root, i, e) for i, e in enumerate(self._checked_entries())]

    def build(self) -> "VideoDataset":
        """The torch test dataset (one item per video with all its views)."""
        from harness.data.video_dataset import VideoDataset

        problems = self.check()
        if problems:
            raise ValueError(f"invalid {self.dataset_name} dataset: " + "; ".join(problems))
        return VideoDataset(self.items(), self)  # type: ignore[arg-type]

    def key_material(self) -> dict:
        """sha256 of every annotation file, the annotation format and the video extension (cell key)."""
        material = {f"{field}_sha256": cached_file_sha256(path) if path else None
                    for field, path in self._ann_files().items()}
        material["ann_format"] = getattr(self, "ann_format", None)
        material["video_ext"] = getattr(self, "video_ext", None)
        return material

    def manifest(self) -> dict:
        """``{"dataset", "ann_file", "num_videos", "invalid_entries", "sha256"}``.

        ``num_videos`` counts the listed entries, ``invalid_entries`` those with a problem (label out
        of range, duplicate...); sha256 hashes the sorted (relative path, label) pairs of all of them.
        """
        entries = self._checked_entries()
        return {"dataset": self.dataset_name, "ann_file": self.ann_file,  # type: ignore[attr-defined]
                "num_videos": len(entries), "invalid_entries": sum(e.problem is not None for e in entries),
                "sha256": items_sha256((e.rel, e.label) for e in entries)}


# ---------------------------------------------------------------------------------------------------
# Kinetics-400
# ---------------------------------------------------------------------------------------------------

K400_OFFICIAL_HEADER = ("label", "youtube_id", "time_start", "time_end", "split")


def _is_official_k400_csv(path: str) -> bool:
    lines = content_lines(path)
    if not lines:
        return False
    head = [c.strip().lower() for c in lines[0][1].split(",")]
    if "label" not in head and {"youtube_id", "time_start", "time_end"} <= set(head):
        raise ValueError(f"{path}:{lines[0][0]}: an official Kinetics CSV without a 'label' column (header "
                         f"{lines[0][1].strip()!r}): the test split is unlabelled; evaluate on the validation "
                         f"CSV (kinetics_400_val.csv / validate.csv, header {','.join(K400_OFFICIAL_HEADER)})")
    return tuple(head[:5]) == K400_OFFICIAL_HEADER


def _whole_seconds(text: str, path: str, lineno: int, column: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{path}:{lineno}: {column} {text!r} is not a number") from None
    if value < 0 or not value.is_integer():
        raise ValueError(f"{path}:{lineno}: {column} {text!r} is not a whole non-negative number of seconds")
    return int(value)


@dataclasses.dataclass
class _VideoMAEDenseTest(VideoProtocol):
    """VideoMAE's K400/UCF101 test protocol: 16 frames x stride 4, 5 clips x 3 crops at 224, prob."""

    sampler: tp.Literal["dense", "uniform", "videomae_dense"] = "dense"
    clip_len: int = 16
    frame_interval: int = 4
    num_clips: int = 5
    num_crops: tp.Literal[1, 3] = 3
    short_side: int = 224
    crop_size: int = 224
    spatial: tp.Literal["mmaction2", "videomae", "torch_antialias"] = "mmaction2"  # mmaction2's VideoMAE test pipeline
    aggregation: tp.Literal["prob", "score"] = "prob"


@register_dataset("kinetics400", summary="Kinetics-400 (mmaction2/VideoMAE list or official CSV), VideoMAE 16x4, 5x3 views")
@dataclasses.dataclass
class Kinetics400Dataset(RealDataset, _VideoMAEDenseTest):
    """Kinetics-400 validation set; protocol defaults = VideoMAE K400 test (dense 16x4, 5 clips x 3 crops).

    Layout (``data_root`` = folder of videos, flat, as written by the common downloaders)::

        k400/val/-3B32lodo2M_000059_000069.mp4
        k400/val/--07WQ2iBlw_000001_000011.mp4
        ...

    ``ann_file`` is one of (``ann_format: auto`` tells them apart):

    * official CSV (``kinetics_400_val.csv``; header required, ``is_cc`` column optional)::

          label,youtube_id,time_start,time_end,split
          abseiling,-3B32lodo2M,59,69,val

      mapped to ``{youtube_id}_{time_start:06d}_{time_end:06d}.{video_ext}``
      (``-3B32lodo2M_000059_000069.mp4``). The label index is the class name's position in
      ``label_map`` (one name per line, e.g. mmaction2's ``label_map_k400.txt``), or without one
      the position among the sorted unique names of the CSV; then the CSV must name exactly
      ``num_classes`` classes (a subset would shift indices silently, so it is an error).
    * mmaction2 list (``kinetics400_val_list_videos.txt``): ``-3B32lodo2M_000059_000069.mp4 0``
    * VideoMAE CSV (``val.csv``, space separated, no header): ``val/-3B32lodo2M_000059_000069.mp4 0``
    """

    dataset_name: tp.ClassVar[str] = "kinetics400"

    data_root: str = ""  # folder holding the videos (joined to every listed path)
    ann_file: str = ""  # annotation file (required): mmaction2 list, VideoMAE CSV or official Kinetics CSV
    ann_format: tp.Literal["auto", "mmaction", "videomae_csv", "official_csv"] = "auto"
    label_map: tp.Optional[str] = None  # official_csv only: class names, one per line (index = line number)
    video_ext: str = "mp4"  # official_csv only: extension of the downloaded files
    num_classes: int = 400  # classifier outputs; labels must be < this

    def _static_problems(self) -> list[str]:
        formats = ANN_FORMATS + ("official_csv",)
        if self.ann_format not in formats:
            return [f"ann_format must be one of {formats}, got {self.ann_format!r}"]
        return []

    def _ann_files(self) -> dict:
        files = {"ann_file": self.ann_file}
        if self.label_map:
            files["label_map"] = self.label_map
        return files

    def resolved_format(self) -> str:
        if self.ann_format != "auto":
            return self.ann_format
        if _is_official_k400_csv(self.ann_file):
            return "official_csv"
        return detect_format(self.ann_file)

    def _entries(self) -> list[Entry]:
        fmt = self.resolved_format()
        if fmt != "official_csv":
            return _list_entries(self.ann_file, fmt)
        path = self.ann_file
        lines = content_lines(path)
        if not lines:
            return []
        header = [c.strip().lower() for c in next(csv.reader([lines[0][1]]))]
        if tuple(header[:5]) != K400_OFFICIAL_HEADER:
            raise ValueError(f"{path}:{lines[0][0]}: expected the header {','.join(K400_OFFICIAL_HEADER)}[,is_cc], "
                             f"got {lines[0][1]!r}")
        rows = []
        for lineno, line in lines[1:]:
            cells = next(csv.reader(io.StringIO(line)))
            if len(cells) != len(header):
                raise ValueError(f"{path}:{lineno}: expected {len(header)} columns ({','.join(header)}), "
                                 f"got {len(cells)} in line {line!r}")
            row = dict(zip(header, (c.strip() for c in cells)))
            if not row["label"]:
                raise ValueError(f"{path}:{lineno}: empty label (the test split has none) in line {line!r}")
            rel = (f"{row['youtube_id']}_{_whole_seconds(row['time_start'], path, lineno, 'time_start'):06d}"
                   f"_{_whole_seconds(row['time_end'], path, lineno, 'time_end'):06d}.{self.video_ext}")
            rows.append((rel, row["label"], lineno))
        if self.label_map:
            names = read_label_map(self.label_map)
            source = f"label_map {self.label_map}"
        else:
            names = sorted({name for _, name, _ in rows})
            if len(names) != self.num_classes:
                raise ValueError(
                    f"{path}: names {len(names)} classes but num_classes is {self.num_classes}; without "
                    f"label_map the label index is the position among the CSV's sorted class names, which "
                    f"only matches the checkpoint when every class is present: set label_map")
            source = f"the sorted class names of {path}"
        index = {name: i for i, name in enumerate(names)}
        return [Entry(rel, index[name], path, lineno) if name in index else
                Entry(rel, -1, path, lineno, f"unknown class name {name!r} (not in {source})")
                for rel, name, lineno in rows]


# ---------------------------------------------------------------------------------------------------
# Something-Something v2
# ---------------------------------------------------------------------------------------------------


def _json_array_elements(path: str) -> list[tuple[int, tp.Any]]:
    """``(1-based line of the element's start, element)`` for a top-level JSON array."""
    text = read_list_text(path)
    decoder = json.JSONDecoder()
    ws = " \t\r\n"

    def skip(pos: int) -> int:
        while pos < len(text) and text[pos] in ws:
            pos += 1
        return pos

    def line_of(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    pos = skip(0)
    if pos >= len(text) or text[pos] != "[":
        raise ValueError(f"{path}:{line_of(pos)}: expected a JSON list of videos")
    pos = skip(pos + 1)
    out: list[tuple[int, tp.Any]] = []
    if pos < len(text) and text[pos] == "]":
        return out
    while True:
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{line_of(err.pos)}: invalid JSON: {err.msg}") from None
        except RecursionError:
            raise ValueError(f"{path}:{line_of(pos)}: JSON nested too deep") from None
        out.append((line_of(pos), obj))
        pos = skip(end)
        if pos < len(text) and text[pos] == ",":
            pos = skip(pos + 1)
            continue
        if pos < len(text) and text[pos] == "]":
            return out
        raise ValueError(f"{path}:{line_of(pos)}: expected ',' or ']' in the JSON list")


def read_ssv2_labels(path: str) -> dict[str, int]:
    """The official ``something-something-v2-labels.json``: ``{"Approaching something with your camera": "0", ...}``."""

    def no_duplicates(pairs: list) -> dict:
        out: dict = {}
        for k, v in pairs:
            if k in out:
                raise ValueError(f"{path}: duplicate class name {k!r}")
            out[k] = v
        return out

    try:
        raw = json.loads(read_list_text(path, "label file"), object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: invalid JSON: {err.msg}") from None
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deep") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object {{class name: index}}")
    labels: dict[str, int] = {}
    used: dict[int, str] = {}
    for name, value in raw.items():
        try:
            index = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{path}: class {name!r} has a non-integer index {value!r}") from None
        if index in used:
            raise ValueError(f"{path}: classes {used[index]!r} and {name!r} share index {index}")
        used[index] = name
        labels[name] = index
    return labels


@register_dataset("ssv2", summary="Something-Something v2 (official JSON or a list), VideoMAE uniform 16, 2x3 views")
@dataclasses.dataclass
class SSv2Dataset(RealDataset, VideoProtocol):
    """Something-Something v2 validation set; protocol defaults = VideoMAE SSv2 test (uniform 16, 2 clips x 3 crops).

    Layout (``data_root`` = the folder of the official ``.webm`` files, or re-encoded ``.mp4``)::

        20bn-something-something-v2/74225.webm
        20bn-something-something-v2/116154.webm

    ``ann_file`` (``ann_format: official_json``, picked by ``auto`` for a file starting with ``[``) is
    the official ``something-something-v2-validation.json``::

        [{"id": "74225", "label": "spinning cube that quickly stops spinning",
          "template": "Spinning [something] that quickly stops spinning",
          "placeholders": ["cube"]}, ...]

    and ``label_file`` the official ``something-something-v2-labels.json``::

        {"Approaching something with your camera": "0", ..., "Spinning something that quickly stops spinning": "149", ...}

    A video's label is ``labels[template without "[" and "]"]``; its file ``{id}.{video_ext}``.
    With ``ann_format: mmaction`` or ``videomae_csv`` the ``ann_file`` is a list instead
    (``74225.webm 149``) and ``label_file`` is not needed.
    """

    dataset_name: tp.ClassVar[str] = "ssv2"

    def train_flips(self) -> list:
        """No flip is label-safe: SSv2 labels name directions ("from left to right")."""
        return []

    data_root: str = ""  # folder holding the videos
    ann_file: str = ""  # something-something-v2-validation.json, or a mmaction2/VideoMAE list
    label_file: tp.Optional[str] = None  # something-something-v2-labels.json (official_json only)
    ann_format: tp.Literal["auto", "official_json", "mmaction", "videomae_csv"] = "auto"
    video_ext: str = "webm"  # official_json only: file name = {id}.{video_ext}
    num_classes: int = 174
    # VideoMAE SSv2 test protocol (TSN-uniform segments, 2 temporal views)
    sampler: tp.Literal["dense", "uniform", "videomae_dense"] = "uniform"
    clip_len: int = 16
    frame_interval: int = 1  # unused by the uniform sampler
    num_clips: int = 2
    num_crops: tp.Literal[1, 3] = 3
    short_side: int = 224
    crop_size: int = 224
    spatial: tp.Literal["mmaction2", "videomae", "torch_antialias"] = "videomae"  # ssv2.py's resize and crops
    aggregation: tp.Literal["prob", "score"] = "prob"

    def _static_problems(self) -> list[str]:
        formats = ("auto", "official_json", "mmaction", "videomae_csv")
        if self.ann_format not in formats:
            return [f"ann_format must be one of {formats}, got {self.ann_format!r}"]
        if self.ann_format == "official_json" and not self.label_file:
            return ["label_file is required with ann_format official_json"]
        return []

    def resolved_format(self) -> str:
        if self.ann_format != "auto":
            return self.ann_format
        head = read_list_text(self.ann_file)[:4096].lstrip()
        return "official_json" if head.startswith("[") else detect_format(self.ann_file)

    def _ann_files(self) -> dict:
        files = {"ann_file": self.ann_file}
        if self.label_file or self.ann_format == "official_json":
            files["label_file"] = self.label_file
        return files

    def _entries(self) -> list[Entry]:
        fmt = self.resolved_format()
        if fmt != "official_json":
            return _list_entries(self.ann_file, fmt)
        path = self.ann_file
        _require_file("label_file", self.label_file, self.dataset_name)
        labels = read_ssv2_labels(tp.cast(str, self.label_file))
        entries: list[Entry] = []
        for lineno, obj in _json_array_elements(path):
            if not isinstance(obj, dict) or "id" not in obj:
                raise ValueError(f"{path}:{lineno}: expected an object with 'id', got {str(obj)[:80]!r}")
            if "template" not in obj:
                raise ValueError(f"{path}:{lineno}: video {obj['id']!r} has no 'template' (the test split is unlabelled)")
            name = str(obj["template"]).replace("[", "").replace("]", "")
            rel = f"{obj['id']}.{self.video_ext}"
            if name not in labels:
                entries.append(Entry(rel, -1, path, lineno, f"unknown class {name!r} (template "
                                                            f"{obj['template']!r}) not in label_file {self.label_file}"))
                continue
            entries.append(Entry(rel, labels[name], path, lineno))
        return entries


# ---------------------------------------------------------------------------------------------------
# UCF-101
# ---------------------------------------------------------------------------------------------------


def read_ucf101_class_index(path: str) -> list[str]:
    """``classInd.txt`` (``1 ApplyEyeMakeup``, 1-based, consecutive) as 0-based class names."""
    names: list[str] = []
    seen: dict[str, int] = {}
    for lineno, line in content_lines(path):
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}:{lineno}: expected 'index ClassName', got {line!r}")
        try:
            index = int(parts[0])
        except ValueError:
            raise ValueError(f"{path}:{lineno}: index {parts[0]!r} is not an integer") from None
        if index != len(names) + 1:
            raise ValueError(f"{path}:{lineno}: expected class index {len(names) + 1} (1-based, consecutive), got {index}")
        if parts[1] in seen:
            raise ValueError(f"{path}:{lineno}: duplicate class name {parts[1]!r} (first on line {seen[parts[1]]})")
        seen[parts[1]] = lineno
        names.append(parts[1])
    return names


@register_dataset("ucf101", summary="UCF-101 (official split + classInd.txt), VideoMAE 16x4, 5x3 views")
@dataclasses.dataclass
class UCF101Dataset(RealDataset, _VideoMAEDenseTest):
    """UCF-101 split; protocol defaults = VideoMAE UCF101 test (dense 16x4, 5 clips x 3 crops).

    Layout (``data_root`` = the extracted ``UCF-101`` folder)::

        UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi
        UCF-101/YoYo/v_YoYo_g25_c05.avi

    ``ann_file`` is an official split file (``ucfTrainTestlist/testlist01.txt``)::

        ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi

    or ``trainlist01.txt`` (``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1``, 1-based label, checked
    against the folder); ``class_index`` is ``classInd.txt`` (``1 ApplyEyeMakeup``). The label is the
    0-based index of the folder name's class (matched case-insensitively when not exact, for the
    ``HandstandPushups``/``HandStandPushups`` spelling). With ``ann_format: mmaction`` or
    ``videomae_csv`` the file is a 0-based list instead and ``class_index`` is not needed.
    """

    dataset_name: tp.ClassVar[str] = "ucf101"

    data_root: str = ""  # the UCF-101 folder
    ann_file: str = ""  # testlist0N.txt / trainlist0N.txt, or a 0-based mmaction2/VideoMAE list
    class_index: tp.Optional[str] = None  # classInd.txt (official split files only)
    ann_format: tp.Literal["auto", "official", "mmaction", "videomae_csv"] = "auto"  # auto = official
    num_classes: int = 101

    def _official(self) -> bool:
        return self.ann_format in ("auto", "official")

    def _static_problems(self) -> list[str]:
        formats = ("auto", "official", "mmaction", "videomae_csv")
        if self.ann_format not in formats:
            return [f"ann_format must be one of {formats}, got {self.ann_format!r}"]
        if self._official() and not self.class_index:
            return ["class_index (classInd.txt) is required with the official split files"]
        return []

    def _ann_files(self) -> dict:
        files = {"ann_file": self.ann_file}
        if self.class_index or self._official():
            files["class_index"] = self.class_index
        return files

    def _entries(self) -> list[Entry]:
        if not self._official():
            return _list_entries(self.ann_file, self.ann_format)
        path = self.ann_file
        names = read_ucf101_class_index(tp.cast(str, self.class_index))
        exact = {n: i for i, n in enumerate(names)}
        folded: dict[str, list[int]] = {}
        for i, n in enumerate(names):
            folded.setdefault(n.lower(), []).append(i)
        entries: list[Entry] = []
        for lineno, line in content_lines(path):
            parts = line.split()
            if len(parts) not in (1, 2):
                raise ValueError(f"{path}:{lineno}: expected 'Class/v_Class_gXX_cYY.avi [label]', got {line!r}")
            rel = parts[0].replace("\\", "/")
            folder = rel.split("/")[0] if "/" in rel else ""
            if not folder:
                raise ValueError(f"{path}:{lineno}: {rel!r} has no class folder (expected Class/v_Class_gXX_cYY.avi)")
            problem = None
            if folder in exact:
                label = exact[folder]
            elif len(folded.get(folder.lower(), [])) == 1:
                label = folded[folder.lower()][0]
            else:
                label, problem = -1, f"unknown class {folder!r} (not in class_index {self.class_index})"
            if len(parts) == 2:
                try:
                    given = int(parts[1])
                except ValueError:
                    raise ValueError(f"{path}:{lineno}: label {parts[1]!r} is not an integer") from None
                if problem is None and given - 1 != label:
                    problem = (f"label {given} (1-based) does not match folder {folder!r} "
                               f"(class {label + 1} in {self.class_index})")
            entries.append(Entry(rel, label, path, lineno, problem))
        return entries
