"""ToMe wired into the video ViT through the TokenReducer hooks.

Follows facebookresearch/ToMe tome/patch/timm.py (ToMeBlock, ToMeAttention) and tome/patch/mae.py:
- merge in every block between the attention residual and the MLP, r from the per-block schedule;
- metric = keys averaged over heads, from the same attention call;
- proportional attention (``+ log size`` on the logits) only when ``prop_attn`` (off by default,
  as ToMe's MAE patch for off-the-shelf models);
- size-weighted mean pooling before fc_norm (tome/patch/mae.py global pool);
- a class token (ViViT) is kept out of matching as ToMe's ``class_token`` rule does; under divided
  attention (TimeSformer) the model hands over each frame's patch tokens, so the same r merges in
  every frame with the spatial attention's keys (Pollard & Wray's per-frame rule).
Unlike ToMe's patch, the per-forward state is the explicit ``TokenState``; nothing is popped from a
shared dict.
"""
from __future__ import annotations

import typing as tp

import torch

from harness.models.reduction import (AttentionOutput, TokenReducer, TokenState, proportional_attention_bias,
                                      size_weighted_mean)
from methods.tome.merge import bipartite_soft_matching, merge_source, merge_wavg, parse_r

_KEYS = frozenset({"keys"})


class ToMeReducer(TokenReducer):
    def __init__(self, params, *, depth: int, num_heads: int, embed_dim: int):
        super().__init__(params, depth=depth, num_heads=num_heads, embed_dim=embed_dim)
        self.schedule = parse_r(depth, params.r, params.inflection)

    def attention_needs(self, layer: int) -> tp.FrozenSet[str]:
        return _KEYS if self.schedule[layer] > 0 else frozenset()

    def attention_bias(self, layer: int, state: TokenState) -> tp.Optional[torch.Tensor]:
        return proportional_attention_bias(state.size) if self.params.prop_attn else None

    def after_attention(self, layer: int, x: torch.Tensor, state: TokenState,
                        attn: AttentionOutput) -> tp.Tuple[torch.Tensor, TokenState]:
        r = self.schedule[layer]
        if r <= 0:
            return x, state
        merge = bipartite_soft_matching(attn.keys, r, class_token=self.protected > 0)
        track = self.params.trace_source or self.track_source
        source = merge_source(merge, x, state.source) if track else None
        x, size = merge_wavg(merge, x, state.size)
        return x, TokenState(size=size, source=source, extras=state.extras)

    def pool(self, x: torch.Tensor, state: TokenState) -> torch.Tensor:
        return size_weighted_mean(x, state.size)

    def overhead_macs(self, layer: int, tokens_in: int) -> int:
        r = min(self.schedule[layer], (tokens_in - self.protected) // 2)
        if r <= 0:
            return 0
        head_dim = self.embed_dim // self.num_heads
        return ((tokens_in + 1) // 2) * (tokens_in // 2) * head_dim  # cosine scores a @ b^T

    def describe(self) -> dict:
        return {"r_per_block": list(self.schedule)}
