"""Test-time spatial transforms on uint8 frames ``[T, H, W, 3]`` (torch).

Every protocol resizes the short side to ``short_side`` (keeping the aspect ratio), takes one centre
crop or three crops along the long side, then maps to float ``(x / 255 - mean) / std`` in
``[3, T, H, W]``. How the resize and the crops are done is the protocol's ``spatial`` field, each
value one reference loader reproduced pixel for pixel (docs/reference.md gives the files, commits
and the residual differences):

* ``mmaction2``: mmaction2 1.x ``Resize(scale=(-1, S))`` -> ``CenterCrop`` / ``ThreeCrop``. The size
  is mmcv's ``rescale_size`` (``int(x * scale + 0.5)``), the resize ``mmcv.imresize`` = cv2
  ``INTER_LINEAR`` (bilinear, no antialiasing, 11-bit fixed-point weights); crops start at
  ``(L - crop) // 2`` (centre) and at 0, ``step``, ``2 * step`` with ``step = (L - crop) // 2``.
* ``videomae``: VideoMAE's test loaders (``kinetics.py`` / ``ssv2.py`` with
  ``video_transforms.Resize`` = ``functional.resize_clip``): the long side is *floored*
  (``int(S * long / short)``), the same cv2 ``INTER_LINEAR``, and the three ``S x S`` crops start at
  ``int(k * (L - S) / 2)``, k = 0, 1, 2 (e.g. 0, 36, 73 on 297 px where mmaction2 has 0, 37, 74 on
  298 px); the centre crop at ``int(round((L - crop) / 2))`` (``video_transforms.CenterCrop``).
* ``torch_antialias``: the harness's earlier resize (a named deviation, used by the generated
  ``synthetic_motion`` set and by training): mmcv's size, torch bilinear *with* antialiasing, the
  mmaction2 crop offsets.

The three crops are returned in spatial order (start, centre, end); mmaction2 emits
(start, end, centre). Aggregation over views does not depend on the order. The crop is centred on
the short side when ``crop < short`` (mmaction2's ``ThreeCrop`` requires them equal).
"""
from __future__ import annotations

import typing as tp

import numpy as np
import torch
import torch.nn.functional as F

from harness.data.registry import LEGACY_SPATIAL, SPATIAL

if tp.TYPE_CHECKING:
    from harness.data.registry import VideoProtocol


def short_side_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """Output (height, width) of mmaction2 ``Resize((-1, short_side), keep_ratio=True)``.

    mmcv's ``rescale_size`` rounds with ``int(x * scale + 0.5)``.
    """
    scale = short_side / min(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def resized_size(height: int, width: int, short_side: int, spatial: str = "mmaction2") -> tuple[int, int]:
    """Output (height, width) of the ``spatial`` protocol's short-side resize."""
    if spatial == "videomae":  # functional.get_resize_sizes: int() floors the long side
        if width < height:
            return int(short_side * height / width), short_side
        return short_side, int(short_side * width / height)
    _check_spatial(spatial)
    return short_side_size(height, width, short_side)


def resize_short_side(frames: torch.Tensor, short_side: int, spatial: str = LEGACY_SPATIAL) -> torch.Tensor:
    """Resize uint8 ``[T, H, W, 3]`` so that ``min(H, W) == short_side``, keeping the aspect ratio,
    as the ``spatial`` protocol does."""
    _check_frames(frames)
    h, w = frames.shape[1:3]
    out_h, out_w = resized_size(h, w, short_side, spatial)
    if (out_h, out_w) == (h, w):
        return frames
    if spatial == "torch_antialias":
        x = frames.permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(out_h, out_w), mode="bilinear", align_corners=False, antialias=True)
        return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    return cv2_linear_resize(frames, out_h, out_w)


_COEF_BITS = 11  # cv2 INTER_RESIZE_COEF_BITS: interpolation weights are integers scaled by 2048


def _linear_taps(src: int, dst: int, clamp_weights: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """cv2 ``INTER_LINEAR`` taps of one axis: source indices (i0, i1) and 11-bit weights (w0, w1).

    Positions ``(d + 0.5) * src / dst - 0.5`` in float32 as cv2 computes them. cv2 clamps the
    weights at the borders of the horizontal axis only; vertically it clamps the row indices and
    keeps the weights, which matters on the first and last rows when upscaling.
    """
    pos = ((np.arange(dst, dtype=np.float64) + 0.5) * (1.0 / (dst / src)) - 0.5).astype(np.float32)
    i0 = np.floor(pos).astype(np.int64)
    frac = pos - i0.astype(np.float32)
    if clamp_weights:
        low, high = i0 < 0, i0 >= src - 1
        frac[low | high] = 0.0
        i0 = np.where(low, 0, np.where(high, src - 1, i0))
    one = np.float32(1 << _COEF_BITS)
    w1 = np.rint(frac * one).astype(np.int32)
    w0 = np.rint((np.float32(1.0) - frac) * one).astype(np.int32)
    i1 = np.clip(i0 + 1, 0, src - 1)
    i0 = np.clip(i0, 0, src - 1)
    return tuple(torch.from_numpy(a) for a in (i0, i1, w0, w1))  # type: ignore[return-value]


def cv2_linear_resize(frames: torch.Tensor, out_h: int, out_w: int, chunk: int = 16) -> torch.Tensor:
    """``cv2.resize(frame, (out_w, out_h), interpolation=cv2.INTER_LINEAR)`` on each uint8 frame of
    ``[T, H, W, C]``, bit for bit (checked against opencv-python 4.10 and 5.1, tests/reference).

    cv2 interpolates along rows first with 11-bit integer weights (exact sums), then between rows with
    its SIMD fixed-point rounding: ``((r0 >> 4) * w0 >> 16) + ((r1 >> 4) * w1 >> 16)``, then
    ``(x + 2) >> 2``. A float bilinear resize differs from it by one level on ~8% of values.
    """
    _check_frames(frames)
    t, h, w, c = frames.shape
    x0, x1, a0, a1 = _linear_taps(w, out_w, clamp_weights=True)
    y0, y1, b0, b1 = _linear_taps(h, out_h, clamp_weights=False)
    rows, where = torch.unique(torch.cat([y0, y1]), return_inverse=True)  # only the source rows used
    p0, p1 = where[:out_h], where[out_h:]
    b0, b1 = b0.view(1, -1, 1, 1), b1.view(1, -1, 1, 1)
    out = torch.empty((t, out_h, out_w, c), dtype=torch.uint8)
    for s in range(0, t, chunk):  # advanced indexing: index_select is ~30x slower on int32 here
        x = frames[s:s + chunk][:, rows].permute(0, 1, 3, 2).to(torch.int32)  # [t, R, C, W]
        across = x[..., x0] * a0 + x[..., x1] * a1  # [t, R, C, out_w], exact
        top = ((across[:, p0] >> 4) * b0) >> 16
        bottom = ((across[:, p1] >> 4) * b1) >> 16
        out[s:s + chunk] = ((top + bottom + 2) >> 2).clamp_(0, 255).to(torch.uint8).permute(0, 1, 3, 2)
    return out


def center_crop(frames: torch.Tensor, size: int, spatial: str = "mmaction2") -> torch.Tensor:
    """Central ``size x size`` crop of ``[T, H, W, C]``: offsets floored (mmaction2 ``CenterCrop``),
    rounded half to even for ``videomae`` (``video_transforms.CenterCrop``: ``int(round(d / 2.))``)."""
    h, w = frames.shape[1:3]
    _check_crop(h, w, size)
    if spatial == "videomae":
        top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    else:
        top, left = (h - size) // 2, (w - size) // 2
    return frames[:, top : top + size, left : left + size]


def three_crop_offsets(height: int, width: int, size: int, spatial: str = "mmaction2") -> list[tuple[int, int]]:
    """(top, left) of the three crops along the long side: start, centre, end.

    ``mmaction2`` (``ThreeCrop``): 0, ``step``, ``2 * step`` with ``step = (L - size) // 2``, the long
    side being the width unless the height is longer. ``videomae`` (``ssv2.py`` / ``kinetics.py``
    test mode): ``int(k * (L - size) / 2)``, along the height when ``H >= W``.
    """
    _check_crop(height, width, size)
    if spatial == "videomae":
        along_height = height >= width
        long = height if along_height else width
        starts = [int(k * (1.0 * (long - size) / 2)) for k in range(3)]
        if along_height:
            return [(s, (width - size) // 2) for s in starts]
        return [((height - size) // 2, s) for s in starts]
    if width >= height:
        step, top = (width - size) // 2, (height - size) // 2
        return [(top, 0), (top, step), (top, 2 * step)]
    step, left = (height - size) // 2, (width - size) // 2
    return [(0, left), (step, left), (2 * step, left)]


def three_crop(frames: torch.Tensor, size: int, spatial: str = "mmaction2") -> list[torch.Tensor]:
    """Three ``size x size`` crops of ``[T, H, W, C]`` along the long side (start, centre, end)."""
    h, w = frames.shape[1:3]
    return [frames[:, t : t + size, l : l + size] for t, l in three_crop_offsets(h, w, size, spatial)]


def normalize(frames: torch.Tensor, mean: tp.Sequence[float], std: tp.Sequence[float]) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` -> float32 ``[3, T, H, W]`` as ``(x / 255 - mean) / std``."""
    x = frames.permute(3, 0, 1, 2).to(torch.float32).div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1, 1)
    return x.sub_(m).div_(s)


def crop_views(clip: torch.Tensor, protocol: "VideoProtocol") -> list[torch.Tensor]:
    """The uint8 crops ``[T, S, S, 3]`` of one clip at the protocol's short side (resized if needed)."""
    spatial = getattr(protocol, "spatial", LEGACY_SPATIAL)
    clip = resize_short_side(clip, protocol.short_side, spatial)
    if protocol.num_crops == 1:
        return [center_crop(clip, protocol.crop_size, spatial)]
    if protocol.num_crops == 3:
        return three_crop(clip, protocol.crop_size, spatial)
    raise ValueError(f"num_crops must be 1 or 3, got {protocol.num_crops}")


def make_views(frames_per_clip: tp.Union[torch.Tensor, tp.Sequence[torch.Tensor]], protocol: "VideoProtocol") -> torch.Tensor:
    """All test views of one video: ``Tensor[V, 3, T, S, S]``, ``V = num_clips * num_crops``.

    ``frames_per_clip`` holds ``num_clips`` uint8 clips ``[T, H, W, 3]`` (a list or one
    ``[num_clips, T, H, W, 3]`` tensor). Views are clip-major: view ``v`` is clip
    ``v // num_crops``, crop ``v % num_crops``.
    """
    if len(frames_per_clip) != protocol.num_clips:
        raise ValueError(f"got {len(frames_per_clip)} clips, protocol wants num_clips={protocol.num_clips}")
    views = []
    for clip in frames_per_clip:
        views.extend(normalize(c, protocol.mean, protocol.std) for c in crop_views(clip, protocol))
    return torch.stack(views)


def _check_spatial(spatial: str) -> None:
    if spatial not in SPATIAL:
        raise ValueError(f"spatial must be one of {', '.join(SPATIAL)}, got {spatial!r}")


def _check_frames(frames: torch.Tensor) -> None:
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")


def _check_crop(height: int, width: int, size: int) -> None:
    if size > min(height, width):
        raise ValueError(f"crop size {size} does not fit in a {height}x{width} frame")
