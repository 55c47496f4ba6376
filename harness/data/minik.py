"""Mini-Kinetics-200 (AR-Net split) in raw frames, at HaltingVT's test protocol (torch-free at import).

HaltingVT (dun-research/HaltingVT, ``configs/minik/data_pipeline_ml_8x32.py``) evaluates Mini-Kinetics
with mmaction2 1.0.0's ``RawframeDataset`` machinery: the annotation lists of AR-Net
(mengyuest/AR-Net, ``ops/dataset_config.py``: ``mini_train_videofolder.txt``,
``mini_val_videofolder.txt``; 200 classes, 0-based labels), frames ``img_{:05}.jpg`` counted from
``start_index=1``, and the test pipeline ``SampleFrames(clip_len=8, frame_interval=32, num_clips=1,
test_mode=True)`` -> ``RawFrameDecode`` -> ``Resize(scale=(-1, 256))`` -> ``CenterCrop(224)``, then
``ActionDataPreprocessor(mean=[127.5] * 3, std=[127.5] * 3)``: one view per video, inputs in [-1, 1].
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import typing as tp

from harness.data.annotations import FrameFolderItem, content_lines, read_label_map
from harness.data.real import Entry, RealDataset
from harness.data.registry import VideoProtocol, register_dataset
from harness.files import cached_file_sha256


def _is_int(text: str) -> bool:
    return text.isdigit() or (text[:1] in "+-" and text[1:].isdigit())


def read_rawframe_list(path: str) -> list[Entry]:
    """A frame-folder list: ``frame_dir total_frames label`` per line (``Entry.num_frames`` = total_frames).

    Accepted spellings of one line (all with a single integer label):

    * mmaction2 ``RawframeDataset``: ``abseiling/-3B32lodo2M_000059_000069 300 0`` (whitespace);
    * AR-Net / AdaFuse lists, whose folders hold spaces (the class names):
      ``images/val/air drumming/7LSJ2Ryv1a8_000000_000010 60 0`` -- the last two fields are the
      count and the label, everything before them is the folder (AR-Net's ``TSNDataSet`` rule);
    * ``;``-separated: ``images/val/air drumming/7LSJ2Ryv1a8_000000_000010;60;0`` (AR-Net's
      ``mini_val.txt``).

    mmaction2's multi-label (``dir n l1 l2``) and ``with_offset`` (``dir offset n label``) lines are
    rejected: read with the AR-Net rule they would silently shift the fields.
    """
    entries: list[Entry] = []
    for lineno, line in content_lines(path):
        parts = line.split(";") if line.count(";") == 2 else line.rsplit(None, 2)
        parts = [p.strip() for p in parts]
        if len(parts) != 3 or not parts[0]:
            raise ValueError(f"{path}:{lineno}: expected 'frame_dir total_frames label', got {line!r}")
        frame_dir, count, label = parts
        words = frame_dir.split()
        if len(words) > 1 and _is_int(words[-1]):
            raise ValueError(f"{path}:{lineno}: {line!r} has more than one number after the folder "
                             "(mmaction2 multi-label or with_offset lines are not supported)")
        for text, what in ((count, "total_frames"), (label, "label")):
            if not _is_int(text):
                raise ValueError(f"{path}:{lineno}: {what} {text!r} is not an integer in line {line!r}")
            if int(text) < 0:
                raise ValueError(f"{path}:{lineno}: negative {what} {text} in line {line!r}")
        entries.append(Entry(frame_dir.replace("\\", "/"), int(label), path, lineno, num_frames=int(count)))
    return entries


@register_dataset("minik", summary="Mini-Kinetics-200 (AR-Net split lists, raw frames), HaltingVT 8x32, 1x1 view at 224, [-1, 1]")
@dataclasses.dataclass
class MiniKineticsDataset(RealDataset, VideoProtocol):
    """Mini-Kinetics-200 as HaltingVT evaluates it: AR-Net's split lists over raw-frame folders.

    Layout (``data_root`` = the folder the listed frame folders are relative to)::

        minik/frames/images/val/air drumming/7LSJ2Ryv1a8_000000_000010/img_00001.jpg
        minik/frames/images/val/air drumming/7LSJ2Ryv1a8_000000_000010/img_00002.jpg
        ...
        minik/mini_val_videofolder.txt      # ann_file
        minik/minik_classInd.txt            # class_index (optional)

    ``ann_file`` lines are ``frame_dir total_frames label`` (0-based label, ``read_rawframe_list``)::

        images/val/air drumming/7LSJ2Ryv1a8_000000_000010 60 0

    Frame ``i`` of the sampler (0-based, from the *listed* ``total_frames``) is the file
    ``filename_tmpl.format(i + start_index)``: ``img_00001.jpg`` is frame 0 (mmaction2's
    ``start_index=1``; AR-Net's own extraction writes ``image_{:05d}.jpg``, set ``filename_tmpl``).
    ``class_index`` (``minik_classInd.txt``: one class name per line, line n = label n - 1) is
    optional; with it, a folder whose parent is a class name must carry that class's label.

    Protocol defaults = HaltingVT's test pipeline: dense sampling 8 frames x 32, one centre clip,
    short side 256, one centre crop of 224, mean = std = 0.5 on [0, 1] pixels (= 127.5 on 0..255:
    inputs in [-1, 1]), ``prob`` aggregation (one view: same as ``score``); 200 classes.
    """

    dataset_name: tp.ClassVar[str] = "minik"

    data_root: str = ""  # folder the listed frame folders are relative to
    ann_file: str = ""  # mini_val_videofolder.txt / mini_train_videofolder.txt (frame_dir total_frames label)
    class_index: tp.Optional[str] = None  # minik_classInd.txt: class names, one per line (optional check)
    filename_tmpl: str = "img_{:05d}.jpg"  # frame file name of 1-based frame number (HaltingVT: img_{:05}.jpg)
    start_index: int = 1  # file number of frame 0 (mmaction2 rawframes: 1)
    num_classes: int = 200
    # HaltingVT's Mini-K test protocol (configs/minik/data_pipeline_ml_8x32.py)
    sampler: tp.Literal["dense", "uniform", "videomae_dense"] = "dense"
    clip_len: int = 8
    frame_interval: int = 32
    num_clips: int = 1
    num_crops: tp.Literal[1, 3] = 1
    short_side: int = 256
    crop_size: int = 224
    spatial: tp.Literal["mmaction2", "videomae", "torch_antialias"] = "mmaction2"  # mmcv.imresize, CenterCrop
    mean: tp.List[float] = dataclasses.field(default_factory=lambda: [0.5, 0.5, 0.5])  # 127.5 / 255
    std: tp.List[float] = dataclasses.field(default_factory=lambda: [0.5, 0.5, 0.5])
    aggregation: tp.Literal["prob", "score"] = "prob"

    def _static_problems(self) -> list[str]:
        problems = []
        try:
            name = self.filename_tmpl.format(1)
        except (IndexError, KeyError, ValueError) as err:
            problems.append(f"filename_tmpl {self.filename_tmpl!r} cannot format a frame number: {err}")
        else:
            if name == self.filename_tmpl.format(2) or os.sep in name:
                problems.append(f"filename_tmpl {self.filename_tmpl!r} must turn the frame number into a file name")
        if self.start_index < 0:
            problems.append(f"start_index must be >= 0, got {self.start_index}")
        return problems

    def _ann_files(self) -> dict:
        files = {"ann_file": self.ann_file}
        if self.class_index:
            files["class_index"] = self.class_index
        return files

    def class_names(self) -> tp.Optional[list[str]]:
        """Names from ``class_index`` (index = line number - 1), or None without one."""
        if not self.class_index:
            return None
        names = read_label_map(self.class_index)
        if len(names) != self.num_classes:
            raise ValueError(f"minik: class_index {self.class_index} names {len(names)} classes, "
                             f"num_classes is {self.num_classes}")
        return names

    def _entries(self) -> list[Entry]:
        entries = read_rawframe_list(self.ann_file)
        names = self.class_names()
        if names is None:
            return entries
        index = {n: i for i, n in enumerate(names)}
        out = []
        for e in entries:
            parts = e.rel.rstrip("/").split("/")
            folder = parts[-2] if len(parts) >= 2 else ""
            if folder in index and index[folder] != e.label:
                e = e._replace(problem=f"label {e.label} does not match class folder {folder!r} "
                                       f"(class {index[folder]} in {self.class_index})")
            out.append(e)
        return out

    def _item(self, root: str, index: int, entry: Entry) -> FrameFolderItem:
        return FrameFolderItem(path=os.path.join(root, entry.rel), label=entry.label, index=index,
                               problem=entry.problem, num_frames=entry.num_frames,
                               filename_tmpl=self.filename_tmpl, start_index=self.start_index)

    def key_material(self) -> dict:
        """sha256 of the list (it holds the frame counts the sampler uses) and class index; frame naming."""
        material = {f"{field}_sha256": cached_file_sha256(path) if path else None
                    for field, path in self._ann_files().items()}
        material.update(filename_tmpl=self.filename_tmpl, start_index=self.start_index)
        return material

    def manifest(self) -> dict:
        """As the other datasets, plus ``total_frames``, the sum of the listed frame counts, and
        ``frames_sha256`` over the sorted (folder, listed count) pairs: two extractions of the same
        split at different frame rates sample different frames."""
        out = super().manifest()
        entries = self._checked_entries()
        h = hashlib.sha256()
        for rel, n in sorted((e.rel, e.num_frames) for e in entries):
            h.update(f"{rel}\t{n}\n".encode())
        out.update(total_frames=sum(e.num_frames for e in entries), frames_sha256=h.hexdigest())
        return out
