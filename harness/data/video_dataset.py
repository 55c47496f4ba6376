"""Multi-view test dataset over video files (decord) or frame folders, and a uint8 clip cache for
small training sets.

Undecodable videos are never replaced by another video (measurement spec P19): the sample comes back
with ``views=None``, an ``error`` string and a ``reason`` (``timeout``, ``crash``, ``invalid``,
``error``), ``collate_views`` separates such samples, and the caller counts them as missing coverage.
Decoding runs in a watchdog worker (``harness.data.decode.guarded_decode``): a decoder that hangs
past the protocol's ``decode_timeout_s`` or crashes costs one video, never the run. Entries whose annotation is unusable (``VideoItem.problem``: a label
out of range, a duplicate) come back the same way (``AnnotationError``) without being decoded.
"""
from __future__ import annotations

import functools
import logging
import typing as tp

import numpy as np
import torch

from harness.data.annotations import VideoItem
from harness.data.decode import (DEFAULT_DECODE_TIMEOUT_S, DEFAULT_DECODER, AnnotationError,  # noqa: F401
                                 TruncatedVideoError, decode_frames, decode_item, failure_reason,
                                 guarded_decode)
from harness.data.registry import LEGACY_SPATIAL
from harness.data.sampling import sample_test_indices
from harness.data.transforms import make_views, resize_short_side

if tp.TYPE_CHECKING:
    from harness.data.registry import VideoProtocol

logger = logging.getLogger("harness.data")


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
        p = self.protocol
        item = path if isinstance(path, VideoItem) else VideoItem(path=path, label=0, index=0)
        index_fn = functools.partial(sample_test_indices, sampler=p.sampler, clip_len=p.clip_len,
                                     frame_interval=p.frame_interval, num_clips=p.num_clips)
        frames_np, unique_inds, clip_inds = guarded_decode(
            item, index_fn, timeout_s=getattr(p, "decode_timeout_s", DEFAULT_DECODE_TIMEOUT_S),
            decoder=getattr(p, "decoder", DEFAULT_DECODER))
        # resize each distinct frame once, then gather the [num_clips, clip_len] clips
        frames = resize_short_side(torch.from_numpy(frames_np), p.short_side, getattr(p, "spatial", LEGACY_SPATIAL))
        positions = torch.from_numpy(np.searchsorted(unique_inds, clip_inds))
        return make_views(frames[positions], self.protocol)

    def __getitem__(self, i: int) -> dict:
        item = self.items[i]
        try:
            views = self.load_views(item)
        except Exception as e:  # noqa: BLE001 - every decode failure is reported, none is fatal
            error = f"{type(e).__name__}: {e}"
            logger.warning("cannot decode video %d (%s): %s", i, item.path, error)
            return {"views": None, "label": item.label, "index": i, "path": item.path, "error": error,
                    "reason": failure_reason(e)}
        return {"views": views, "label": item.label, "index": i, "path": item.path, "error": None}



def collate_views(batch: tp.Sequence[dict]) -> dict:
    """DataLoader ``collate_fn`` for ``VideoDataset``.

    Returns ``{"views": Tensor[B, V, 3, T, S, S] | None, "labels": LongTensor[B],
    "indices": LongTensor[B], "paths": list[str], "failed": [{"index", "path", "error", "reason"}, ...]}``
    where ``B`` counts only the decoded samples; failed ones are listed, never padded or replaced.
    """
    ok = [b for b in batch if b["error"] is None]
    failed = [{"index": b["index"], "path": b["path"], "error": b["error"], "reason": b.get("reason", "error")}
              for b in batch if b["error"] is not None]
    return {
        "views": torch.stack([b["views"] for b in ok]) if ok else None,
        "labels": torch.tensor([b["label"] for b in ok], dtype=torch.long),
        "indices": torch.tensor([b["index"] for b in ok], dtype=torch.long),
        "paths": [b["path"] for b in ok],
        "failed": failed,
    }


def load_clips_uint8(
    items: tp.Sequence[VideoItem], clip_len: int, size: int, *, progress: bool = True, desc: str = "decode",
    decode_timeout_s: float = DEFAULT_DECODE_TIMEOUT_S,
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
    first_frames = functools.partial(_first_frames, clip_len=clip_len)
    for n, item in enumerate(tqdm(items, desc=desc, disable=not progress, unit="clip")):
        try:
            frames, unique_inds, wanted = guarded_decode(item, first_frames, timeout_s=decode_timeout_s)
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


def _first_frames(num: int, clip_len: int) -> np.ndarray:
    return np.arange(clip_len) % num
