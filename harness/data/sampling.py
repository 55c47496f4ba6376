"""Test-time frame samplers (pure numpy). Each returns int64 indices of shape ``[num_clips, clip_len]``.

Two published protocols place the same nominal views on different frames (measurement spec P21), so
each function reproduces one reference implementation and says which.
"""
from __future__ import annotations

import numpy as np


def _check(num_frames: int, clip_len: int, num_clips: int) -> None:
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    if clip_len <= 0 or num_clips <= 0:
        raise ValueError(f"clip_len and num_clips must be positive, got {clip_len}, {num_clips}")


def dense_test_indices(num_frames: int, clip_len: int, frame_interval: int, num_clips: int) -> np.ndarray:
    """mmaction2 ``SampleFrames(clip_len, frame_interval, num_clips, test_mode=True)`` indices.

    Follows mmaction2 1.x (``mmaction/datasets/transforms/loading.py``), defaults
    ``out_of_bound_opt='loop'``, ``twice_sample=False``, ``target_fps=None``, ``start_index=0``:

    * span ``ori_clip_len = (clip_len - 1) * frame_interval + 1`` (1.x test mode; mmaction2 0.x
      used ``clip_len * frame_interval``, which shifts offsets by up to ``frame_interval``);
    * ``max_offset = max(num_frames - ori_clip_len, 0)``;
    * several clips: offsets ``np.round(arange(num_clips) * max_offset / (num_clips - 1))`` (numpy
      rounds halves to even); one clip: ``max_offset // 2`` (centred, floored);
    * indices ``offset + arange(clip_len) * frame_interval``, then ``% num_frames``: a video shorter
      than the span loops back to its start instead of repeating the last frame;
    * ``clip_len == 1`` takes mmaction2's separate 2-D branch: frame ``int((k + 1/2) * num_frames /
      num_clips)`` of clip ``k`` (segment centres, floored; ``frame_interval`` unused).
    """
    _check(num_frames, clip_len, num_clips)
    if frame_interval <= 0:
        raise ValueError(f"frame_interval must be positive, got {frame_interval}")
    if clip_len == 1:  # mmaction2's 2-D branch: one frame at the centre of each of num_clips segments
        avg = num_frames / float(num_clips)
        offsets = np.arange(num_clips) * avg + avg / 2.0
        return np.mod(offsets, num_frames).astype(np.int64)[:, None]
    ori_clip_len = (clip_len - 1) * frame_interval + 1
    max_offset = max(num_frames - ori_clip_len, 0)
    if num_clips > 1:
        offsets = np.round(np.arange(num_clips) * (max_offset / (num_clips - 1)))
    else:
        offsets = np.array([max_offset // 2])
    inds = offsets.astype(np.int64)[:, None] + np.arange(clip_len, dtype=np.int64)[None, :] * frame_interval
    return np.mod(inds, num_frames)


def uniform_test_indices(num_frames: int, clip_len: int, num_clips: int) -> np.ndarray:
    """TSN-style segment sampling as VideoMAE's SSv2 test set (``ssv2.py``, ``mode='test'``).

    The video is cut into ``clip_len`` segments of ``tick = num_frames / clip_len`` frames.

    * ``num_clips == 1``: segment centres ``int(tick / 2 + tick * x)`` (TSN's centre sampling; VideoMAE's
      own SSv2 loaders never take this form: their test mode always decodes the 2-chunk union below).
    * ``num_clips == 2`` (VideoMAE's 2 "chunks"): VideoMAE decodes the union of
      ``int(tick / 2 + tick * x)`` and ``int(tick * x)``, *sorts* it and takes ``buffer[chunk::2]``;
      since ``int(tick*x) <= int(tick*x + tick/2) <= int(tick*(x+1))`` chunk 0 is the segment starts
      ``int(tick * x)`` and chunk 1 the centres ``int(tick / 2 + tick * x)``.
    * ``num_clips = n > 2`` generalises that: clip ``k`` takes ``int(tick * (x + k / n))``.

    Indices are clipped to ``num_frames - 1``; short videos repeat frames.
    """
    _check(num_frames, clip_len, num_clips)
    tick = num_frames / float(clip_len)
    x = np.arange(clip_len, dtype=np.float64)
    if num_clips == 1:
        rows = [tick / 2.0 + tick * x]
    else:
        rows = [tick * x + tick * (k / num_clips) for k in range(num_clips)]
    inds = np.stack(rows).astype(np.int64)  # truncation toward zero == Python int() on these positives
    return np.minimum(inds, num_frames - 1)


def videomae_dense_test_indices(num_frames: int, clip_len: int, frame_interval: int, num_clips: int) -> np.ndarray:
    """VideoMAE's own K400/UCF101 test clips (``kinetics.py`` ``VideoClsDataset``, ``mode='test'``).

    ``loadvideo_decord`` decodes every ``frame_interval``-th frame from 0 (``range(0, n, interval)``),
    repeating the last one until there are ``clip_len``; clip ``k`` is ``clip_len`` consecutive entries
    of that buffer from ``int(k * max((len - clip_len) / (num_clips - 1), 0))``. ``num_clips`` must be
    at least 2 (VideoMAE divides by ``num_clips - 1``). The frames differ from mmaction2's
    ``SampleFrames`` (``dense_test_indices``) by up to ``frame_interval - 1`` (measurement.md P21).
    """
    _check(num_frames, clip_len, num_clips)
    if frame_interval <= 0 or num_clips < 2:
        raise ValueError(f"the videomae_dense sampler needs frame_interval >= 1 and num_clips >= 2, "
                         f"got {frame_interval}, {num_clips}")
    buffer = list(range(0, num_frames, frame_interval))
    buffer += [buffer[-1]] * max(clip_len - len(buffer), 0)
    step = max(1.0 * (len(buffer) - clip_len) / (num_clips - 1), 0)
    starts = [int(k * step) for k in range(num_clips)]
    return np.asarray([buffer[s:s + clip_len] for s in starts], dtype=np.int64)


SAMPLERS = {"dense": "mmaction2 SampleFrames (test mode)", "uniform": "VideoMAE ssv2.py test chunks",
            "videomae_dense": "VideoMAE kinetics.py test clips"}


def sample_test_indices(num_frames: int, sampler: str, clip_len: int, frame_interval: int, num_clips: int) -> np.ndarray:
    """Dispatch on a ``VideoProtocol.sampler`` name (``SAMPLERS``)."""
    if sampler == "dense":
        return dense_test_indices(num_frames, clip_len, frame_interval, num_clips)
    if sampler == "uniform":
        return uniform_test_indices(num_frames, clip_len, num_clips)
    if sampler == "videomae_dense":
        return videomae_dense_test_indices(num_frames, clip_len, frame_interval, num_clips)
    raise ValueError(f"unknown sampler {sampler!r}; expected one of {', '.join(map(repr, SAMPLERS))}")

