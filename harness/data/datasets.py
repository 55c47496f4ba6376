"""Registered datasets: a generic video list and the synthetic motion set (torch-free at import).

Each entry is a ``VideoProtocol`` subclass, so one instance is a resolved dataset *and* its test
protocol. ``items()`` reads the annotations, ``build()`` returns the torch ``VideoDataset``,
``key_material()`` is hashed into the cell key and ``manifest()`` goes into result records.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import typing as tp

from harness.data.annotations import ANN_FORMATS, VideoItem, read_label_map, read_video_list
from harness.data.registry import VideoProtocol, data_home, register_dataset
from harness.files import cached_file_sha256

if tp.TYPE_CHECKING:
    from harness.data.video_dataset import VideoDataset


def items_sha256(pairs: tp.Iterable[tuple[str, int]]) -> str:
    """Order-independent digest of ``(path, label)`` pairs."""
    h = hashlib.sha256()
    for path, label in sorted(pairs):
        h.update(f"{path}\t{label}\n".encode())
    return h.hexdigest()


def mark_duplicates(items: tp.Sequence[VideoItem], ann_file: str) -> list[VideoItem]:
    """``items`` with ``problem`` set on every repeat of an earlier path (the first one stays valid)."""
    first: dict = {}
    out = []
    for it in items:
        key = os.path.normpath(it.path)
        if key in first and not it.problem:
            it = dataclasses.replace(it, problem=f"{ann_file}: duplicate video {it.path!r} (entry {it.index}; "
                                                 f"first listed as entry {first[key]})")
        first.setdefault(key, it.index)
        out.append(it)
    return out


def _list_file_problem(path: str):
    """Why an annotation or label file cannot be read whole (not a bounded regular file), or None."""
    from harness.data.paths import MAX_LIST_BYTES, file_problem

    return file_problem(path, MAX_LIST_BYTES)


def _read_list_file(path: str) -> bytes:
    """The bytes of an annotation or label file: a regular file of bounded size (never a FIFO)."""
    from harness.data.paths import MAX_LIST_BYTES
    from harness.files import read_bytes

    return read_bytes(path, MAX_LIST_BYTES, what="annotation file")


@register_dataset("video_list", summary="videos listed in an mmaction2 or VideoMAE annotation file")
@dataclasses.dataclass
class VideoListDataset(VideoProtocol):
    """Any labelled video set given by an annotation file (K400, SSv2, a local subset...)."""

    ann_file: str = ""  # annotation list (required)
    data_root: str = ""  # prefix joined to every listed path
    ann_format: tp.Literal["auto", "mmaction", "videomae_csv"] = "auto"  # see harness.data.annotations
    label_map: tp.Optional[str] = None  # class names, one per line (index = line number)
    num_classes: tp.Optional[int] = None  # None: from label_map, else max label + 1

    def check(self) -> list[str]:
        """Static problems (no file access: files are checked by ``build``)."""
        problems = super().check()
        if not self.ann_file:
            problems.append("ann_file is required for dataset 'video_list'")
        if self.ann_format not in ANN_FORMATS:
            problems.append(f"ann_format must be one of {ANN_FORMATS}, got {self.ann_format!r}")
        if self.num_classes is not None and self.num_classes <= 0:
            problems.append(f"num_classes must be positive, got {self.num_classes}")
        return problems

    def class_names(self) -> tp.Optional[list[str]]:
        """Names from ``label_map``, or None without one."""
        return read_label_map(self.label_map) if self.label_map else None

    def resolve_num_classes(self, items: tp.Optional[tp.Sequence[VideoItem]] = None) -> int:
        """``num_classes`` if set, else the label map's length, else max label + 1."""
        if self.num_classes is not None:
            return self.num_classes
        names = self.class_names()
        if names is not None:
            return len(names)
        items = self.items() if items is None else items
        return max((it.label for it in items), default=-1) + 1

    def items(self) -> list[VideoItem]:
        """The annotated videos, paths joined with ``data_root``; labels checked against the class count.

        A video listed again is kept in place with ``problem`` set (reported as invalid, never
        evaluated or counted twice), as the real datasets do.
        """
        limit = self.num_classes
        if limit is None and self.label_map:
            limit = len(read_label_map(self.label_map))
        return mark_duplicates(read_video_list(self.ann_file, self.data_root, self.ann_format, num_classes=limit),
                               self.ann_file)

    def build(self) -> "VideoDataset":
        """The torch test dataset (one item per video with all its views)."""
        from harness.data.video_dataset import VideoDataset

        problems = self.check()
        if problems:
            raise ValueError("invalid video_list dataset: " + "; ".join(problems))
        if self.data_root and not os.path.isdir(self.data_root):
            raise FileNotFoundError(f"data_root is not a directory: {os.path.abspath(self.data_root)}")
        return VideoDataset(self.items(), self)

    def key_material(self) -> dict:
        """Content identity of the annotations (and label map) for the cell key; a missing or
        unreadable file gives ``"missing:<path>"`` (validation reports it; the cell fails when it runs)."""
        try:
            content = _read_list_file(self.ann_file)
        except (OSError, ValueError):
            return {"ann_sha256": f"missing:{self.ann_file}",
                    "label_map_sha256": f"missing:{self.label_map}" if self.label_map else None}
        material = {"ann_sha256": hashlib.sha256(content).hexdigest(), "ann_lines": len(content.splitlines())}
        if self.label_map:
            material["label_map_sha256"] = (f"missing:{self.label_map}" if _list_file_problem(self.label_map)
                                            else cached_file_sha256(self.label_map))
        return material

    def manifest(self) -> dict:
        """``{"ann_file", "num_videos", "sha256"}``; sha256 covers the sorted listed (path, label) pairs."""
        listed = read_video_list(self.ann_file, "", self.ann_format)
        return {
            "ann_file": self.ann_file,
            "num_videos": len(listed),
            "sha256": items_sha256((it.path, it.label) for it in listed),
        }


@register_dataset("synthetic_motion", summary="12-class synthetic moving-object clips, generated on first use")
@dataclasses.dataclass
class SyntheticMotionDataset(VideoProtocol):
    """Generated motion classes (``harness.data.synthetic``), 64x64x16 H.264 clips, trainable on CPU."""

    split: tp.Literal["train", "val"] = "val"  # which list to evaluate
    root: str = ""  # "" = data_home()/synthetic_motion-v2 (suffixed when counts/seed differ from defaults)
    num_train: int = 4000  # training clips
    num_val: int = 600  # validation clips
    seed: int = 0  # generation seed
    # protocol defaults matching the generated clips: one centre view of all 16 frames
    sampler: tp.Literal["dense", "uniform", "videomae_dense"] = "dense"
    clip_len: int = 16
    frame_interval: int = 1
    num_clips: int = 1
    num_crops: tp.Literal[1, 3] = 1
    short_side: int = 64
    crop_size: int = 64
    spatial: tp.Literal["mmaction2", "videomae", "torch_antialias"] = "torch_antialias"  # as training resizes

    @property
    def num_classes(self) -> int:
        from harness.data.synthetic import CLASSES

        return len(CLASSES)

    def resolve_num_classes(self, items: tp.Optional[tp.Sequence[VideoItem]] = None) -> int:
        """Same as ``num_classes`` (kept for symmetry with ``video_list``)."""
        return self.num_classes

    def check(self) -> list[str]:
        problems = super().check()
        if self.split not in ("train", "val"):
            problems.append(f"split must be 'train' or 'val', got {self.split!r}")
        for name in ("num_train", "num_val"):
            value = getattr(self, name)
            if not 0 <= value <= 10 ** 6:
                problems.append(f"{name} must be within [0, 1000000], got {value}")
        return problems

    def train_flips(self) -> list[tuple[int, list[int]]]:
        """Label-safe training flips ``(dim of [T, H, W, 3], label permutation)``: a mirror or a time
        reversal turns some motions into others (right <-> left, clockwise <-> anticlockwise...)."""
        from harness.data.synthetic import CLASSES

        def swapped(*pairs: tuple[str, str]) -> list[int]:
            table = list(range(len(CLASSES)))
            for a, b in pairs:
                i, j = CLASSES.index(a), CLASSES.index(b)
                table[i], table[j] = j, i
            return table

        return [(2, swapped(("move_right", "move_left"), ("circle_cw", "circle_ccw"))),
                (1, swapped(("move_up", "move_down"), ("circle_cw", "circle_ccw"))),
                (0, swapped(("move_right", "move_left"), ("move_up", "move_down"),
                            ("circle_cw", "circle_ccw"), ("grow", "shrink")))]

    def data_dir(self) -> str:
        """Where the generated files live."""
        if self.root:
            return self.root
        name = "synthetic_motion-v2"
        if (self.num_train, self.num_val, self.seed) != (4000, 600, 0):
            name += f"-s{self.seed}-t{self.num_train}-v{self.num_val}"  # never overwrite the default set
        return os.path.join(data_home(), name)

    def _params(self) -> dict:
        return {"num_train": self.num_train, "num_val": self.num_val, "seed": self.seed}

    def prepare(self, progress: bool = True) -> str:
        """Generate the files if needed (idempotent, process-safe); returns the data directory."""
        from harness.data.synthetic import generate

        return str(generate(self.data_dir(), progress=progress, **self._params()))

    def items(self, split: tp.Optional[str] = None) -> list[VideoItem]:
        """Videos of ``split`` (default: ``self.split``), generating the data first if needed."""
        root = self.prepare()
        return read_video_list(os.path.join(root, f"{split or self.split}.txt"), root, "mmaction", self.num_classes)

    def build(self) -> "VideoDataset":
        from harness.data.video_dataset import VideoDataset

        problems = self.check()
        if problems:
            raise ValueError("invalid synthetic_motion dataset: " + "; ".join(problems))
        return VideoDataset(self.items(), self)

    def key_material(self) -> dict:
        """Generator version and parameters: they determine the files, so no file is read."""
        from harness.data.synthetic import GENERATOR_VERSION, generation_params

        return {"generator_version": GENERATOR_VERSION, "split": self.split,
                **generation_params(size=64, num_frames=16, **self._params())}

    def manifest(self) -> dict:
        root = self.prepare(progress=False)
        ann_file = os.path.join(root, f"{self.split}.txt")
        listed = read_video_list(ann_file, "", "mmaction")
        return {"ann_file": ann_file, "num_videos": len(listed),
                "sha256": items_sha256((it.path, it.label) for it in listed)}
