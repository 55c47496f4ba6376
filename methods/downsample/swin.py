"""``downsample`` on Video Swin: the same weights run on a resampled clip (fewer frames and/or a smaller
side). Video Swin has no positional table (its relative position bias is per window offset), so nothing
is resampled but the clip; ``pos_embed`` does not apply."""
from __future__ import annotations

import dataclasses

import torch

from harness.models.video_swin import VideoSwin
from methods.downsample.resample import downsample_input, frame_indices


class DownsampledSwin(VideoSwin):
    def __init__(self, cfg, params):
        frames = cfg.num_frames if params.frames is None else params.frames
        size = cfg.img_size if params.size is None else params.size
        super().__init__(dataclasses.replace(cfg, num_frames=frames, img_size=size), input_cfg=cfg)
        self.params = params
        self.frame_index = frame_indices(cfg.num_frames, frames) if frames != cfg.num_frames else None
        if self.frame_index is not None:
            self.register_buffer("frame_index_t", torch.tensor(self.frame_index), persistent=False)
        self.size = size if size != cfg.img_size else None

    def forward_features(self, clip: torch.Tensor) -> torch.Tensor:
        index = self.frame_index_t if self.frame_index is not None else None
        return super().forward_features(downsample_input(clip, self.cfg, index, self.size))

    def describe(self) -> dict:
        net = self.net_cfg
        return {**super().describe(), "frames": net.num_frames, "size": net.img_size,
                "frame_indices": self.frame_index or list(range(self.cfg.num_frames)), "tokens": net.num_tokens,
                "grid": list(net.grid), "pos_embed": "n/a (relative position bias)"}


def build(cfg, params) -> DownsampledSwin:
    """``downsample``'s Video Swin entry point."""
    return DownsampledSwin(cfg, params)
