"""Pure tensor functions of the input-downsampling baseline."""
from __future__ import annotations

import typing as tp

import torch
import torch.nn.functional as F


def frame_indices(num_frames: int, frames: int) -> tp.List[int]:
    """``frames`` of ``num_frames`` at the centres of equal segments, rounded down:
    ``floor((i + 1/2) * num_frames / frames)`` (the test-mode segment rule of TSN / VideoMAE's SSv2
    loader). 16 -> 8 gives 1, 3, ..., 15; 16 -> 12 gives 0, 2, 3, 4, 6, 7, 8, 10, 11, 12, 14, 15;
    ``frames == num_frames`` gives every frame."""
    return [((2 * i + 1) * num_frames) // (2 * frames) for i in range(frames)]


def downsample_clip(clip: torch.Tensor, index: tp.Optional[torch.Tensor], size: tp.Optional[int]) -> torch.Tensor:
    """[B, C, T, H, W] -> [B, C, len(index), size, size]; ``None`` leaves that axis unchanged.

    Each frame is resized with antialiased bilinear interpolation (``align_corners=False``, as
    torchvision's ``Resize``); resizing commutes with the per-channel normalisation (both are linear),
    so resizing the normalised clip equals normalising a resized one (up to uint8 rounding).
    """
    if index is not None:
        clip = clip.index_select(2, index)
    if size is not None:
        b, c, t, h, w = clip.shape
        frames = clip.transpose(1, 2).reshape(b * t, c, h, w)
        frames = F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        clip = frames.reshape(b, t, c, size, size).transpose(1, 2)
    return clip


def downsample_input(clip: torch.Tensor, cfg: tp.Any, index: tp.Optional[torch.Tensor],
                     size: tp.Optional[int]) -> torch.Tensor:
    """``downsample_clip`` of a clip that must have the backbone's input shape (``cfg``: the backbone's config)."""
    expected = (cfg.in_chans, cfg.num_frames, cfg.img_size, cfg.img_size)
    if tuple(clip.shape[1:]) != expected:
        raise ValueError(f"clip {tuple(clip.shape)} does not have the backbone's input shape [B, "
                         f"{', '.join(map(str, expected))}]; downsample resamples that clip itself")
    return downsample_clip(clip, index, size)


def resample_pos_table(table: torch.Tensor, grid: tp.Tuple[int, int, int],
                       new_grid: tp.Tuple[int, int, int]) -> torch.Tensor:
    """A [1, T'H'W', C] positional table (time-major tokens) resampled to ``new_grid``.

    As OpenGVLab/VideoMAEv2 ``run_class_finetuning.py`` resamples the fixed sinusoid table of a
    model run at another input size: first each temporal slice over the spatial grid with bicubic
    interpolation (``align_corners=False``, no antialiasing), then each spatial position over time with
    linear interpolation (``align_corners=False``). An axis whose size does not change is left as is.
    """
    (t, h, w), (t2, h2, w2) = grid, new_grid
    c = table.shape[-1]
    x = table.reshape(t, h, w, c)
    if (h2, w2) != (h, w):
        x = F.interpolate(x.permute(0, 3, 1, 2), size=(h2, w2), mode="bicubic", align_corners=False)
        x = x.permute(0, 2, 3, 1)  # [t, h2, w2, c]
    if t2 != t:
        x = F.interpolate(x.permute(1, 2, 3, 0).reshape(1, h2 * w2 * c, t), size=t2, mode="linear",
                          align_corners=False)
        x = x.reshape(h2, w2, c, t2).permute(3, 0, 1, 2)
    return x.reshape(1, t2 * h2 * w2, c).contiguous()


def resample_space_nearest(table: torch.Tensor, side: tp.Tuple[int, int], new_side: tp.Tuple[int, int]) -> torch.Tensor:
    """A [1, 1 + H'W', C] table (class-token row first) with its spatial rows resampled to ``new_side`` by
    nearest interpolation, as transformers' ``TimesformerEmbeddings`` does for another input size."""
    (h, w), (h2, w2) = side, new_side
    if (h, w) == (h2, w2):
        return table
    c = table.shape[-1]
    grid = table[:, 1:].transpose(1, 2).reshape(1, c, h, w)
    grid = F.interpolate(grid, size=(h2, w2), mode="nearest").flatten(2).transpose(1, 2)
    return torch.cat((table[:, :1], grid), dim=1)


def resample_rope_grid(grid: tp.Tuple[int, int, int], new_grid: tp.Tuple[int, int, int],
                       mode: str = "interpolate") -> torch.Tensor:
    """[T''H''W'', 3] rotary (t, h, w) positions of the tokens of ``new_grid`` (time-major), for a
    rope3d model (V-JEPA 2) fed a downsampled clip.

    ``"regenerate"``: the smaller grid's own integer positions (what transformers' VJEPA2 computes for
    a model configured at that crop size and frame count). ``"interpolate"``: each token placed where
    its centre lies on the backbone's grid, ``(i + 1/2) * n / m - 1/2`` per axis (m new cells over n old
    ones), so a token keeps the position of the region of the clip it covers -- the rotary counterpart
    of resampling a positional table.
    """
    axes = []
    for n, m in zip(grid, new_grid):
        index = torch.arange(m, dtype=torch.float64)
        axes.append(index if mode == "regenerate" else (index + 0.5) * n / m - 0.5)
    t, h, w = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([t.reshape(-1), h.reshape(-1), w.reshape(-1)], dim=-1).to(torch.float32)
