"""Test-time spatial transforms on uint8 frames ``[T, H, W, 3]`` (torch).

The pipeline is mmaction2's test pipeline: ``Resize(-1, S)`` (keep ratio) -> ``CenterCrop`` or
``ThreeCrop`` -> float in [0, 1] -> ``(x - mean) / std`` -> ``[3, T, H, W]`` float32. Differences
from mmaction2, on purpose:

* resizing is bilinear with antialiasing (torch), not cv2 bilinear; downscaling by large factors
  therefore aliases less;
* the three crops are returned in spatial order (start, centre, end); mmaction2 emits
  (start, end, centre). Their positions are mmaction2's: start 0, centre ``step``, end ``2 * step``
  with ``step = (long - crop) // 2``. The crop is centred on the short side when ``crop < short``.
"""
from __future__ import annotations

import typing as tp

import torch
import torch.nn.functional as F

if tp.TYPE_CHECKING:
    from harness.data.registry import VideoProtocol


def short_side_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """Output (height, width) of mmaction2 ``Resize((-1, short_side), keep_ratio=True)``.

    mmcv's ``rescale_size`` rounds with ``int(x * scale + 0.5)``.
    """
    scale = short_side / min(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def resize_short_side(frames: torch.Tensor, short_side: int) -> torch.Tensor:
    """Resize uint8 ``[T, H, W, 3]`` so that ``min(H, W) == short_side``, keeping the aspect ratio."""
    _check_frames(frames)
    h, w = frames.shape[1:3]
    out_h, out_w = short_side_size(h, w, short_side)
    if (out_h, out_w) == (h, w):
        return frames
    x = frames.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(out_h, out_w), mode="bilinear", align_corners=False, antialias=True)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def center_crop(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Central ``size x size`` crop of ``[T, H, W, C]`` (offsets floored, as mmaction2 ``CenterCrop``)."""
    h, w = frames.shape[1:3]
    _check_crop(h, w, size)
    top, left = (h - size) // 2, (w - size) // 2
    return frames[:, top : top + size, left : left + size]


def three_crop_offsets(height: int, width: int, size: int) -> list[tuple[int, int]]:
    """(top, left) of the three crops along the long side: start, centre, end."""
    _check_crop(height, width, size)
    if width >= height:
        step, top = (width - size) // 2, (height - size) // 2
        return [(top, 0), (top, step), (top, 2 * step)]
    step, left = (height - size) // 2, (width - size) // 2
    return [(0, left), (step, left), (2 * step, left)]


def three_crop(frames: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Three ``size x size`` crops of ``[T, H, W, C]`` along the long side (start, centre, end)."""
    h, w = frames.shape[1:3]
    return [frames[:, t : t + size, l : l + size] for t, l in three_crop_offsets(h, w, size)]


def normalize(frames: torch.Tensor, mean: tp.Sequence[float], std: tp.Sequence[float]) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` -> float32 ``[3, T, H, W]`` as ``(x / 255 - mean) / std``."""
    x = frames.permute(3, 0, 1, 2).to(torch.float32).div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1, 1)
    return x.sub_(m).div_(s)


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
        clip = resize_short_side(clip, protocol.short_side)
        if protocol.num_crops == 1:
            crops = [center_crop(clip, protocol.crop_size)]
        elif protocol.num_crops == 3:
            crops = three_crop(clip, protocol.crop_size)
        else:
            raise ValueError(f"num_crops must be 1 or 3, got {protocol.num_crops}")
        views.extend(normalize(c, protocol.mean, protocol.std) for c in crops)
    return torch.stack(views)


def _check_frames(frames: torch.Tensor) -> None:
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")


def _check_crop(height: int, width: int, size: int) -> None:
    if size > min(height, width):
        raise ValueError(f"crop size {size} does not fit in a {height}x{width} frame")
