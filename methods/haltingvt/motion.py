"""The Motion Loss batch: every training clip is paired with a static clip made from one of its frames.

Official behaviour (datasets/rawframe_fakevid_dataset.py, ``from_same_vid=True``): the dataset runs
the frame sampler again on the same video, picks one of the sampled frame indices at random,
decodes that frame, repeats it ``clip_len`` times and sends it through the augmentation part of the
pipeline on its own. For an already decoded clip this is the same as repeating one of its own
frames, which is what ``add_static_clips`` does; the trainer then augments every clip of the
returned batch independently. Real clips get motion label 1, static clips 0, and both keep the
action label (both enter the classification loss). The recogniser flattens the pairs so that the
batch reads real0, fake0, real1, fake1, ...
"""
from __future__ import annotations

import typing as tp

import torch

MOTION_REAL, MOTION_STATIC = 1, 0


def static_clip(clip: torch.Tensor, frame: int) -> torch.Tensor:
    """``clip`` [T, ...] with every frame replaced by frame ``frame``."""
    return clip[frame:frame + 1].expand_as(clip).clone()


def add_static_clips(clips: torch.Tensor, labels: torch.Tensor, gen: torch.Generator
                     ) -> tp.Tuple[torch.Tensor, torch.Tensor, tp.Dict[str, torch.Tensor]]:
    """Interleave each clip with a static copy of one of its frames.

    Args:
        clips: [B, T, H, W, 3] decoded clips (any dtype, usually uint8).
        labels: [B] action labels.
        gen: the random generator choosing the repeated frame of each clip.

    Returns:
        clips [2B, T, H, W, 3] ordered real0, static0, real1, static1, ...; labels [2B] (each
        label twice); ``{"motion_labels": [2B]}`` with 1 for real and 0 for static clips.
    """
    if clips.dim() != 5:
        raise ValueError(f"expected clips [B, T, H, W, C], got shape {tuple(clips.shape)}")
    if labels.shape[0] != clips.shape[0]:
        raise ValueError(f"{clips.shape[0]} clips but {labels.shape[0]} labels")
    b, t = clips.shape[:2]
    frames = torch.randint(t, (b,), generator=gen, device=gen.device).tolist()
    static = torch.stack([static_clip(clip, f) for clip, f in zip(clips, frames)])
    out = torch.stack((clips, static), dim=1).flatten(0, 1)
    motion = torch.tensor([MOTION_REAL, MOTION_STATIC], dtype=torch.long).repeat(b)
    return out, labels.repeat_interleave(2), {"motion_labels": motion.to(labels.device)}
