"""Pure tensor functions of Run-Length Tokenization (our code; rule of rccchoudhury/rlt @ 69ec8b4,
``src/models/static_token_utils.py``)."""
from __future__ import annotations

import typing as tp

import torch
import torch.nn.functional as F


def static_keep_mask(clip: torch.Tensor, threshold: float, tubelet_size: int, patch_size: int,
                     scale: tp.Optional[torch.Tensor] = None) -> torch.Tensor:
    """[B, C, T, H, W] -> [B, T' H' W'] bool (time-major token order): True = the patch is kept.

    A patch of tubelet k >= 1 is dropped when the mean over its pixels and channels of
    ``|last frame of tubelet k - first frame of tubelet k-1|`` is not above ``threshold`` (as the
    official ``batched_find_idxs_to_keep``: the "front" of the earlier token against the "back" of
    the later one, in float32, mean over the patch then over channels, kept iff ``> threshold``).
    Every patch of tubelet 0 is kept. ``scale`` [C] multiplies each channel first (to bring clips
    normalised with another std to the official ImageNet-normalised scale).
    """
    x = clip.to(torch.float32)
    if scale is not None:
        x = x * scale.to(x)[None, :, None, None, None]
    t = tubelet_size
    diffs = (x[:, :, 2 * t - 1::t] - x[:, :, :-t:t]).abs()  # [B, C, T'-1, H, W]
    per_patch = F.avg_pool3d(diffs, (1, patch_size, patch_size)).mean(dim=1)  # [B, T'-1, H', W']
    moving = per_patch > threshold
    first = torch.ones_like(moving[:, :1])
    return torch.cat((first, moving), dim=1).flatten(1)


def run_lengths(keep: torch.Tensor, grid: tp.Tuple[int, int, int]) -> torch.Tensor:
    """[B, N] kept mask -> [B, N] int64: for a kept token at (t, h, w), the tubelets it stands for,
    ``t_next - t`` with ``t_next`` the next kept tubelet at (h, w) (T' if none); 0 for a dropped token.

    These are the official ``batched_get_token_lengths`` values, but in token order: the official
    function lists them in (h, w, t) order while the kept tokens are in (t, h, w) order.
    """
    b = keep.shape[0]
    frames = grid[0]
    k = keep.view(b, frames, -1)
    t = torch.arange(frames, device=keep.device).view(1, frames, 1)
    kept_t = torch.where(k, t, torch.full_like(t, frames))
    after = torch.cat((kept_t[:, 1:], torch.full_like(kept_t[:, :1], frames)), dim=1)  # kept index at t+1
    next_kept = after.flip(1).cummin(dim=1).values.flip(1)  # first kept tubelet after t
    return torch.where(k, next_kept - t, torch.zeros_like(next_kept)).view(b, -1)


def patchify(clip: torch.Tensor, tubelet_size: int, patch_size: int) -> torch.Tensor:
    """[B, C, T, H, W] -> [B, T' H' W', C tubelet p p]: each token's pixels in the layout of the
    tubelet Conv3d's weight [C_out, C, tubelet, p, p], tokens time-major."""
    b, c, t, h, w = clip.shape
    tt, p = tubelet_size, patch_size
    x = clip.reshape(b, c, t // tt, tt, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, (t // tt) * (h // p) * (w // p), c * tt * p * p)
