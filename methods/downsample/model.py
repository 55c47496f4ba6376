"""The backbone fed a downsampled clip (``methods.downsample``): the same VideoViT weights, a smaller
input, positions for the smaller token grid.

``model.cfg`` stays the backbone's (the clip the data pipeline delivers, e.g. 16 x 224); the network
runs on ``reduced_cfg`` (e.g. 8 x 160), and its GMACs are counted from that grid's token count.
Positions per family: VideoMAE's sinusoid table is resampled as VideoMAE V2 does (or regenerated);
ViViT's learned table the same way, its class-token row kept; TimeSformer's space table and time
embedding with nearest interpolation, as transformers' ``TimesformerEmbeddings`` does at another size;
V-JEPA 2's rotary positions of the smaller grid (``resample_rope_grid``).
"""
from __future__ import annotations

import dataclasses

import torch

from harness.measure.flops import count_macs
from harness.models.presets import VideoViTConfig
from harness.models.video_vit import VideoViT, sinusoid_table
from methods.downsample import DownsampleParams
from methods.downsample.resample import (downsample_input, frame_indices, resample_pos_table,
                                         resample_rope_grid, resample_space_nearest)


class DownsampledViT(VideoViT):
    def __init__(self, cfg: VideoViTConfig, params: DownsampleParams):
        super().__init__(cfg)
        self.params = params
        frames = cfg.num_frames if params.frames is None else params.frames
        size = cfg.img_size if params.size is None else params.size
        self.reduced_cfg = dataclasses.replace(cfg, num_frames=frames, img_size=size)
        self.frame_index = frame_indices(cfg.num_frames, frames) if frames != cfg.num_frames else None
        if self.frame_index is not None:
            self.register_buffer("frame_index_t", torch.tensor(self.frame_index), persistent=False)
        self.size = size if size != cfg.img_size else None
        if self.reduced_cfg.grid != cfg.grid and self.layout.position == "rope3d":
            self.register_buffer("rope_grid", resample_rope_grid(cfg.grid, self.reduced_cfg.grid, params.pos_embed),
                                 persistent=False)
        elif self.reduced_cfg.grid != cfg.grid and self.layout.position == "sinusoid":
            if params.pos_embed == "interpolate":
                table = resample_pos_table(self.pos_embed, cfg.grid, self.reduced_cfg.grid)
            else:
                table = sinusoid_table(self.reduced_cfg.num_tokens, cfg.embed_dim)
            self.register_buffer("pos_embed", table, persistent=False)
        for block in self.blocks:  # divided attention folds the (fewer) frames
            if hasattr(block, "frames"):
                block.frames = self.reduced_cfg.grid[0]

    def embed(self, clip: torch.Tensor) -> torch.Tensor:
        grid, reduced = self.cfg.grid, self.reduced_cfg.grid
        position = self.layout.position
        if grid == reduced or position in ("sinusoid", "rope3d"):  # rope3d: rope_grid is the reduced grid's
            return super().embed(clip)
        x = self.patch_embed(clip)
        B, _, C = x.shape
        cls = self.cls_token.expand(B, -1, -1)
        pos, time = (p.to(dtype=x.dtype) if p is not None else None for p in self.reduced_positions())
        if position == "learned":
            return torch.cat((cls, x), dim=1) + pos
        t, h, w = reduced
        patches = (x.reshape(B, t, h * w, C) + pos[:, None, 1:]).transpose(1, 2)
        patches = (patches + time).reshape(B, h * w * t, C)
        return torch.cat((cls + pos[:, :1], patches), dim=1)

    def reduced_positions(self):
        """(positions, time embedding or None) of the reduced grid, resampled from the current weights
        once per weight version (weights are loaded after construction; the forward stays free of it)."""
        params = [self.pos_embed] + ([self.time_embed] if hasattr(self, "time_embed") else [])
        version = tuple((p.data_ptr(), p._version) for p in params)
        if getattr(self, "_positions_version", None) != version:
            grid, reduced = self.cfg.grid, self.reduced_cfg.grid
            with torch.no_grad():
                if self.layout.position == "learned":
                    pos = self.pos_embed
                    cached = (torch.cat((pos[:, :1], resample_pos_table(pos[:, 1:], grid, reduced)), dim=1), None)
                else:
                    time = torch.nn.functional.interpolate(self.time_embed.transpose(1, 2), size=reduced[0],
                                                           mode="nearest").transpose(1, 2)
                    cached = (resample_space_nearest(self.pos_embed, grid[1:], reduced[1:]), time)
            self._positions, self._positions_version = cached, version
        return self._positions

    def forward_features(self, clip: torch.Tensor) -> torch.Tensor:
        index = self.frame_index_t if self.frame_index is not None else None
        return super().forward_features(downsample_input(clip, self.cfg, index, self.size))

    def describe(self) -> dict:
        r = self.reduced_cfg
        return {"frames": r.num_frames, "size": r.img_size, "frame_indices": self.frame_index
                or list(range(self.cfg.num_frames)), "pos_embed": self.params.pos_embed,
                "tokens": r.num_tokens, "grid": list(r.grid)}

    def view_macs(self):
        stats = self.last_stats
        tokens_in, tokens_mlp = stats.tokens_in, stats.tokens_mlp
        if not tokens_in:  # before any forward (e.g. `run --dry-run` on the meta device)
            tokens_in = tokens_mlp = [self.reduced_cfg.num_tokens] * self.cfg.depth
        return count_macs(self.reduced_cfg, tokens_in, tokens_mlp)


def build_downsampled(cfg: VideoViTConfig, params: DownsampleParams) -> DownsampledViT:
    """``build_model``'s entry point for ``architecture="methods.downsample.model:build_downsampled"``."""
    return DownsampledViT(cfg, params)
