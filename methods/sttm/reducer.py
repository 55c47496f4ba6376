"""STTM (re-implementation) wired into the video ViT through the TokenReducer hooks.

Once, after the whole block ``layer`` (attention + MLP, ``after_block``), on the hidden states
x [B, T' N_f, C] viewed frame by frame (methods.md §6.2; the tags are its reconstruction choices):

1. [R2] meta tokens: the K density peaks (DPC-kNN) of every frame, on the token cosines;
2. [R3] every token joins its most similar meta token, soft weight ``softmax_k(cos / tau)``;
3. [R4] spatial merging: each frame becomes its K clusters (weights w * size; sizes summed);
4. [R5] temporal merging: ToMe bipartite matching frame t -> t+1 for t = 0..T'-2, r merges per pair;
5. [R6] motion (``motion="learned"``): ``e_g = W_m [P_g, dc_g] + b_m`` added to every merged token,
   from the weighted member positions; W_m is zero-initialised, so a model fine-tuned from a dense
   checkpoint starts as the training-free variant (``motion="off"``, which has no parameters);
6. [R7] later blocks use proportional attention (``+ log size``); pooling is the size-weighted mean.

[Batching] K is per frame and r per frame pair, so every clip keeps T' K - (T'-1) r tokens.
With K = N_f and r = 0 (and zero W_m) the module returns its input up to rounding and token order.
"""
from __future__ import annotations

import typing as tp

import torch
import torch.nn.functional as F
from torch import nn

from harness.models.reduction import (AttentionOutput, TokenReducer, TokenState, initial_source,
                                      proportional_attention_bias, size_weighted_mean)
from methods.sttm import Budget, budget
from methods.sttm.merge import (assign_to_meta, cosine_matrix, dpc_knn, motion_feature_dim, motion_features,
                                position_moments, spatial_merge, temporal_merge)


class MotionProjection(nn.Module):
    """``e = W_m f + b_m`` ([R6]), zero-initialised.

    Not an ``nn.Linear`` on purpose: ``VideoViT`` re-initialises every ``nn.Linear`` (truncated normal)
    after the reducer is built, which would undo the zero init.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.linear(features, self.weight.to(features.dtype), self.bias.to(features.dtype))


class STTMReducer(TokenReducer):
    def __init__(self, params, *, depth: int, num_heads: int, embed_dim: int):
        super().__init__(params, depth=depth, num_heads=num_heads, embed_dim=embed_dim)
        self.budget: tp.Optional[Budget] = None  # set by bind(): the counts need the token grid
        self.motion_proj: tp.Optional[MotionProjection] = None

    def bind(self, cfg) -> None:
        self.budget = budget(self.params, cfg)
        frames, height, width = cfg.grid
        if self.params.motion == "learned":
            self.motion_proj = MotionProjection(motion_feature_dim(frames), self.embed_dim)
            self.register_buffer("moments", position_moments(frames, height, width), persistent=False)

    def _bound(self) -> Budget:
        if self.budget is None:
            raise RuntimeError("STTMReducer needs bind(cfg) (VideoViT calls it) to know the token grid")
        return self.budget

    def attention_bias(self, layer: int, state: TokenState) -> tp.Optional[torch.Tensor]:
        return proportional_attention_bias(state.size) if self.params.prop_attn else None

    def after_block(self, layer: int, x: torch.Tensor, state: TokenState,
                    attn: AttentionOutput) -> tp.Tuple[torch.Tensor, TokenState]:
        b = self._bound()
        if layer != b.layer:
            return x, state
        batch, _, channels = x.shape
        frames = x.reshape(batch, b.frames, b.tokens_per_frame, channels)
        size = None if state.size is None else state.size.reshape(batch, b.frames, b.tokens_per_frame, 1)
        cos = cosine_matrix(frames)
        meta = dpc_knn(cos.detach(), b.num_meta, b.knn_k)
        assign, weight = assign_to_meta(cos, meta, self.params.tau)
        if self.motion_proj is not None:  # positions travel with the features as extra channels
            moments = self.moments.to(x.dtype).view(1, b.frames, b.tokens_per_frame, -1)
            frames = torch.cat([frames, moments.expand(batch, -1, -1, -1)], dim=-1)
        merged, size = spatial_merge(frames, size, assign, weight, b.num_meta)
        source = None
        if self.track_source:  # patch membership: of each cluster (exact), then as channels that follow
            source = initial_source(x, state.source)  # the temporal merges (> 0: a member)
            source = source.reshape(batch, b.frames, b.tokens_per_frame, -1)
            source = source.new_zeros(*merged.shape[:3], source.shape[-1]).scatter_reduce(
                2, assign.unsqueeze(-1).expand_as(source), source, reduce="amax")
            merged = torch.cat([merged, source], dim=-1)
        merged, size = temporal_merge(merged, size, b.temporal_r, metric_dims=channels)
        if source is not None:
            merged, source = merged[..., :-source.shape[-1]], (merged[..., -source.shape[-1]:] > 0).to(x.dtype)
        x = merged[..., :channels]
        if self.motion_proj is not None:
            x = x + self.motion_proj(motion_features(merged[..., channels:], b.frames))
        return x, TokenState(size=size, source=source, extras=state.extras)

    def pool(self, x: torch.Tensor, state: TokenState) -> torch.Tensor:
        return size_weighted_mean(x, state.size)

    def overhead_macs(self, layer: int, tokens_in: int) -> int:
        """fvcore MACs of the module in block ``layer`` (0 elsewhere).

        Frame cosines ``T' N_f^2 C``; ToMe scores of each frame pair ``(T'-1) K^2 C`` (r > 0); the motion
        projection ``n_out (3 + 2 T') C`` (motion on). DPC-kNN, softmax and merging are not counted.
        """
        b = self._bound()
        if layer != b.layer:
            return 0
        c = self.embed_dim
        macs = b.frames * b.tokens_per_frame ** 2 * c
        if b.temporal_r > 0:
            macs += (b.frames - 1) * b.num_meta ** 2 * c
        if self.motion_proj is not None:
            macs += b.tokens_out * motion_feature_dim(b.frames) * c
        return macs

    def describe(self) -> dict:
        b = self._bound()
        p = self.params
        return {"reimplementation": True, "layer": b.layer, "num_meta_per_frame": b.num_meta,
                "temporal_r": b.temporal_r, "tau": p.tau, "knn_k": b.knn_k,
                "meta_selection": p.meta_selection, "motion": p.motion, "prop_attn": p.prop_attn,
                "tokens_in": b.tokens_in, "tokens_after_spatial": b.tokens_after_spatial,
                "tokens_after_module": b.tokens_out}
