"""Training clips: train-time frame sampling, random resized crop and label-aware flips (per item).

Every random choice of item ``i`` in epoch ``e`` comes from a generator seeded with ``(seed, e, i)``,
so an epoch is reproducible whatever the worker count, and a resumed run sees the same clips as an
uninterrupted one. A method's ``train_batch`` hook (HaltingVT's static clips) runs on the sampled
frames before augmentation, so that each clip it adds is augmented independently, as in the
official dataset.

Decoding goes through the watchdog (``harness.data.decode.guarded_decode``): a video that fails
(reason ``timeout``, ``crash``, ``error``) is dropped from its batch, listed in the batch's
``failed`` entries and skipped in later epochs; the run goes on and its meta counts it.
"""
from __future__ import annotations

import functools
import logging
import typing as tp

import numpy as np
import torch
import torch.nn.functional as F

from harness.data.transforms import resize_short_side

logger = logging.getLogger("harness.training")


def train_indices(num_frames: int, sampler: str, clip_len: int, frame_interval: int,
                  rng: np.random.Generator) -> np.ndarray:
    """One training clip's frame indices.

    ``dense``: mmaction2 ``SampleFrames`` in train mode (a random offset over the valid range, looping
    short videos); ``uniform``: TSN segments with a random frame in each (VideoMAE's SSv2 train set).
    """
    if sampler in ("dense", "videomae_dense"):  # a test-time choice; training clips are random either way
        span = (clip_len - 1) * frame_interval + 1
        offset = int(rng.integers(0, max(num_frames - span, 0) + 1))
        return (offset + np.arange(clip_len) * frame_interval) % num_frames
    if sampler == "uniform":
        edges = np.linspace(0, num_frames, clip_len + 1)
        starts, ends = edges[:-1], np.maximum(edges[1:], edges[:-1] + 1)
        return np.minimum(np.floor(rng.uniform(starts, ends)).astype(np.int64), num_frames - 1)
    raise ValueError(f"unknown sampler {sampler!r}")


def random_resized_crop(frames: torch.Tensor, size: int, scale: tp.Sequence[float],
                        rng: np.random.Generator, ratio: tp.Sequence[float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """The same random area/aspect crop on every frame of uint8 ``[T, H, W, 3]``, resized to ``size``²."""
    t, h, w, _ = frames.shape
    area = h * w
    for _ in range(10):  # torchvision's RandomResizedCrop rule
        target = area * rng.uniform(scale[0], scale[1])
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        cw, ch = int(round(np.sqrt(target * aspect))), int(round(np.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            break
    else:
        ch = cw = min(h, w)
        top, left = (h - ch) // 2, (w - cw) // 2
    x = frames[:, top:top + ch, left:left + cw].permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def flip_rules(dataset: tp.Any) -> tp.List[tp.Tuple[int, tp.List[int]]]:
    """``(dim of [T,H,W,3], label permutation)`` for each flip that is label-safe on ``dataset``.

    A dataset states it with ``train_flips()``; without it, horizontal flip keeps labels (Kinetics,
    UCF101). SSv2 returns none (its labels say left/right).
    """
    if hasattr(dataset, "train_flips"):
        return list(dataset.train_flips())
    return [(2, list(range(dataset.resolve_num_classes())))]


class TrainClips(torch.utils.data.Dataset):
    """Item ``i``: a list of ``(clip uint8 [T, S, S, 3], label, extras)``; one clip unless a method adds some."""

    def __init__(self, dataset: tp.Any, items: tp.Sequence[tp.Any], *, seed: int, augment: dict,
                 expand: tp.Optional[tp.Callable] = None, cache: bool = False):
        self.dataset, self.items, self.seed = dataset, list(items), seed
        self.scale = tuple(augment.get("scale", (0.5, 1.0)))
        self.flips = flip_rules(dataset) if augment.get("flip", True) else []
        self.expand, self.epoch = expand, 0
        self._cache: tp.Optional[dict] = {} if cache else None
        self._failed: tp.Dict[int, dict] = {}  # item -> its failure, not decoded again

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def _frames(self, i: int, rng: np.random.Generator) -> torch.Tensor:
        from harness.data.decode import DEFAULT_DECODE_TIMEOUT_S, DEFAULT_DECODER, guarded_decode

        d = self.dataset
        guard = {"timeout_s": getattr(d, "decode_timeout_s", DEFAULT_DECODE_TIMEOUT_S),
                 "decoder": getattr(d, "decoder", DEFAULT_DECODER)}
        if self._cache is None:  # decode only the sampled frames (same rng draws as below)
            index_fn = functools.partial(train_indices, sampler=d.sampler, clip_len=d.clip_len,
                                         frame_interval=d.frame_interval, rng=rng)
            frames, unique, wanted = guarded_decode(self.items[i], index_fn, **guard)  # a file or a frame folder
            video = resize_short_side(torch.from_numpy(frames), d.short_side)
            return video[torch.from_numpy(np.searchsorted(unique, wanted))]
        if i in self._cache:
            video = self._cache[i]
        else:
            frames, _, _ = guarded_decode(self.items[i], None, **guard)
            video = resize_short_side(torch.from_numpy(frames), d.short_side)
            self._cache[i] = video
        inds = train_indices(len(video), d.sampler, d.clip_len, d.frame_interval, rng)
        return video[torch.from_numpy(inds)]

    def __getitem__(self, i: int) -> list:
        """The item's clips, or ``[Failed]`` when its video cannot be decoded (now or in an earlier epoch)."""
        from harness.data.decode import failure_reason

        if i in self._failed:
            return [Failed(self._failed[i])]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        try:
            frames = self._frames(i, rng)
        except Exception as err:  # noqa: BLE001 -- one failed video, never the run
            item = self.items[i]
            self._failed[i] = {"index": item.index, "path": item.path, "error": f"{type(err).__name__}: {err}",
                               "reason": failure_reason(err)}
            logger.warning("cannot decode training video %s: %s", item.path, self._failed[i]["error"])
            return [Failed(self._failed[i])]
        label = self.items[i].label
        clips = [(frames, label, {})]
        if self.expand is not None:
            gen = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
            more, labels, extras = self.expand(frames[None], torch.tensor([label]), gen)
            clips = [(more[j], int(labels[j]), {k: v[j] for k, v in extras.items()})
                     for j in range(len(labels))]
        out = []
        for clip, label, extras in clips:
            clip = random_resized_crop(clip, self.dataset.crop_size, self.scale, rng)
            for dim, table in self.flips:
                if rng.random() < 0.5:
                    clip, label = clip.flip(dim), table[label]
            out.append((clip, label, extras))
        return out


class Failed(tp.NamedTuple):
    """Stands in for the clips of an item whose video could not be decoded."""

    info: dict  # {"index", "path", "error", "reason"}


def collate_clips(batch: tp.Sequence[list]) -> dict:
    """Items (lists of clips) -> ``{"clips" uint8 [N,T,S,S,3], "labels" [N], extras..., "failed": [...]}``
    in item order; ``failed`` lists the items left out (``clips`` is None when none is left)."""
    failed = [c.info for item in batch for c in item if isinstance(c, Failed)]
    flat = [c for item in batch for c in item if not isinstance(c, Failed)]
    if not flat:
        return {"clips": None, "labels": None, "failed": failed}
    out = {"clips": torch.stack([c[0] for c in flat]),
           "labels": torch.tensor([c[1] for c in flat], dtype=torch.long), "failed": failed}
    for key in flat[0][2]:
        out[key] = torch.stack([torch.as_tensor(c[2][key]) for c in flat])
    return out


def to_model_input(clips_uint8: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 [B, T, H, W, 3] -> normalised float [B, 3, T, H, W]."""
    x = clips_uint8.permute(0, 4, 1, 2, 3).float().div_(255)
    mean = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1, 1)
    std = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1, 1)
    return (x - mean) / std
