"""Multi-view test dataset over video files (decord) or frame folders, and a uint8 clip cache for
small training sets.

Undecodable videos are never replaced by another video (measurement spec P19): the sample comes back
with ``views=None`` and an ``error`` string, ``collate_views`` separates such samples, and the caller
counts them as missing coverage. Entries whose annotation is unusable (``VideoItem.problem``: a label
out of range, a duplicate) come back the same way (``AnnotationError``) without being decoded.
"""
from __future__ import annotations

import logging
import os
import typing as tp

import numpy as np
import torch

from harness.data.annotations import FrameFolderItem, VideoItem
from harness.data.containers import truncation
from harness.data.sampling import sample_test_indices
from harness.data.transforms import make_views, resize_short_side

if tp.TYPE_CHECKING:
    from harness.data.registry import VideoProtocol

logger = logging.getLogger("harness.data")


class TruncatedVideoError(OSError):
    """The file is shorter than its container header declares (``harness.data.containers``)."""


def decode_frames(
    path: str, index_fn: tp.Optional[tp.Callable[[int], np.ndarray]] = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode the frames of one video with decord, each distinct frame once.

    ``index_fn(num_frames)`` returns the wanted frame indices (any shape); default: all frames.
    Returns ``(frames, unique_inds, wanted)``: uint8 ``frames[U, H, W, 3]`` hold the sorted distinct
    indices ``unique_inds``; ``wanted`` is ``index_fn``'s array. Raises on a missing, unreadable,
    truncated (shorter than its header says), corrupt or empty video.
    """
    import decord

    if not os.path.isfile(path):
        if os.path.exists(path):
            raise IsADirectoryError(f"not a regular file: {path}")
        raise FileNotFoundError(f"no such video file: {path}")
    with open(path, "rb"):  # a PermissionError names the problem better than decord would
        pass
    cut = truncation(path)  # decord would decode a cut AVI/WebM up to the cut, silently
    if cut:
        raise TruncatedVideoError(f"{cut}: {path}")
    vr = decord.VideoReader(path, num_threads=1)
    num_frames = len(vr)
    if num_frames <= 0:
        raise ValueError(f"video has no frames: {path}")
    wanted = np.arange(num_frames) if index_fn is None else np.asarray(index_fn(num_frames), dtype=np.int64)
    unique_inds = np.unique(wanted)
    frames = vr.get_batch(unique_inds.tolist()).asnumpy()
    if frames.shape[0] != len(unique_inds):
        raise RuntimeError(f"decord returned {frames.shape[0]} frames for {len(unique_inds)} indices: {path}")
    return frames, unique_inds, wanted


class AnnotationError(ValueError):
    """A listed entry that cannot be evaluated (label out of range, duplicate...): ``VideoItem.problem``."""


def decode_item(
    item: VideoItem, index_fn: tp.Optional[tp.Callable[[int], np.ndarray]] = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``decode_frames`` for any item: a video file (decord) or a frame folder (``FrameFolderItem``).

    Raises ``AnnotationError`` for an item whose annotation is unusable (``item.problem``), without
    touching its file.
    """
    if getattr(item, "problem", None):
        raise AnnotationError(item.problem)
    if isinstance(item, FrameFolderItem):
        from harness.data.frames import decode_frame_folder

        return decode_frame_folder(item, index_fn)
    return decode_frames(item.path, index_fn)


class VideoDataset(torch.utils.data.Dataset):
    """One item per video holding all its test views, decoded once (mmaction2's test layout).

    ``dataset[i]`` is ``{"views": Tensor[V, 3, T, S, S] | None, "label": int, "index": i,
    "path": str, "error": None | "ExceptionType: message"}``.
    """

    def __init__(self, items: tp.Sequence[VideoItem], protocol: "VideoProtocol"):
        problems = protocol.check()
        if problems:
            raise ValueError("invalid protocol: " + "; ".join(problems))
        self.items = list(items)
        self.protocol = protocol

    def __len__(self) -> int:
        return len(self.items)

    def frame_indices(self, num_frames: int) -> np.ndarray:
        """``[num_clips, clip_len]`` frame indices for a video of ``num_frames`` frames."""
        p = self.protocol
        return sample_test_indices(num_frames, p.sampler, p.clip_len, p.frame_interval, p.num_clips)

    def load_views(self, path: tp.Union[str, VideoItem]) -> torch.Tensor:
        """Decode a video (a path or an item) once and build its ``[V, 3, T, S, S]`` views; raises on failure."""
        item = path if isinstance(path, VideoItem) else VideoItem(path=path, label=0, index=0)
        frames_np, unique_inds, clip_inds = decode_item(item, self.frame_indices)
        # resize each distinct frame once, then gather the [num_clips, clip_len] clips
        frames = resize_short_side(torch.from_numpy(frames_np), self.protocol.short_side)
        positions = torch.from_numpy(np.searchsorted(unique_inds, clip_inds))
        return make_views(frames[positions], self.protocol)

    def __getitem__(self, i: int) -> dict:
        item = self.items[i]
        try:
            views = self.load_views(item)
        except Exception as e:  # noqa: BLE001 - every decode failure is reported, none is fatal
            error = f"{type(e).__name__}: {e}"
            logger.warning("cannot decode video %d (%s): %s", i, item.path, error)
            return {"views": None, "label": item.label, "index": i, "path": item.path, "error": error}
        return {"views": views, "label": item.label, "index": i, "path": item.path, "error": None}



def collate_views(batch: tp.Sequence[dict]) -> dict:
    """DataLoader ``collate_fn`` for ``VideoDataset``.

    Returns ``{"views": Tensor[B, V, 3, T, S, S] | None, "labels": LongTensor[B],
    "indices": LongTensor[B], "paths": list[str], "failed": [{"index", "path", "error"}, ...]}``
    where ``B`` counts only the decoded samples; failed ones are listed, never padded or replaced.
    """
    ok = [b for b in batch if b["error"] is None]
    failed = [{"index": b["index"], "path": b["path"], "error": b["error"]} for b in batch if b["error"] is not None]
    return {
        "views": torch.stack([b["views"] for b in ok]) if ok else None,
        "labels": torch.tensor([b["label"] for b in ok], dtype=torch.long),
        "indices": torch.tensor([b["index"] for b in ok], dtype=torch.long),
        "paths": [b["path"] for b in ok],
        "failed": failed,
    }


def load_clips_uint8(
    items: tp.Sequence[VideoItem], clip_len: int, size: int, *, progress: bool = True, desc: str = "decode"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode frames ``0 .. clip_len-1`` of every video into RAM for training on small data.

    Frames whose short side differs from ``size`` are resized (short side) and centre-cropped to
    ``size x size``; a video shorter than ``clip_len`` loops (as ``dense_test_indices``). Returns ``(clips uint8 [N, clip_len, size, size, 3], labels int64 [N])``.
    Unlike the test dataset, a failure raises (``RuntimeError`` naming the path): a training cache
    with holes is not useful.
    """
    from tqdm import tqdm

    from harness.data.transforms import center_crop

    clips = torch.empty((len(items), clip_len, size, size, 3), dtype=torch.uint8)
    labels = torch.tensor([it.label for it in items], dtype=torch.long)
    for n, item in enumerate(tqdm(items, desc=desc, disable=not progress, unit="clip")):
        try:
            frames, unique_inds, wanted = decode_item(item, lambda num: np.arange(clip_len) % num)
            clip = torch.from_numpy(frames)[torch.from_numpy(np.searchsorted(unique_inds, wanted))]
            clips[n] = center_crop(resize_short_side(clip, size), size)
        except Exception as e:
            raise RuntimeError(f"cannot load clip {n} from {item.path}: {type(e).__name__}: {e}") from e
    return clips, labels


def real_clips(protocol, n: int) -> torch.Tensor:
    """``n`` test views of a dataset's first decodable videos, [n, 3, T, H, W] (timing input for
    methods whose work depends on the data)."""
    data, views = VideoDataset(protocol.items(), protocol), []
    for i in range(len(data)):
        item = data[i]
        if item["views"] is not None:
            views.extend(item["views"])
        if len(views) >= n:
            return torch.stack(views[:n])
    raise RuntimeError(f"fewer than {n} decodable views for timing")
