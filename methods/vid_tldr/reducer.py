"""vid-TLDR wired into the video ViT through the TokenReducer hooks.

Follows mlvlab/vid-TLDR multi_modality/models/backbones/vit/vit.py (Attention.forward, Block.forward):
- in a block whose r entry is non-zero, the attention probabilities before the size bias are taken
  (``attention_needs`` asks for ``probs`` only there; other blocks keep the fused kernel);
- the merge sits between the attention residual and the MLP, on the hidden state x itself;
- once a merge has happened, every later block adds ``log size`` to its attention logits
  (proportional attention), with the non-integer sizes vid-TLDR produces;
- pooling: plain mean over the remaining tokens (official ``pool_norm(x.mean(1))``), or the
  size-weighted mean as a documented option (``pool="size_weighted"``).
The per-forward state is the explicit ``TokenState`` (the official code keeps it in a shared dict).
"""
from __future__ import annotations

import typing as tp

import torch

from harness.models.reduction import (AttentionOutput, TokenReducer, TokenState, initial_source,
                                      proportional_attention_bias, size_weighted_mean)
from methods.vid_tldr.merge import (bipartite_match, merge_count, parse_r, saliency, saliency_merge,
                                    saliency_merge_source)

_PROBS = frozenset({"probs"})


class VidTLDRReducer(TokenReducer):
    def __init__(self, params, *, depth: int, num_heads: int, embed_dim: int):
        super().__init__(params, depth=depth, num_heads=num_heads, embed_dim=embed_dim)
        self.schedule = parse_r(depth, params.r)

    def attention_needs(self, layer: int) -> tp.FrozenSet[str]:
        return _PROBS if self.schedule[layer] > 0 else frozenset()

    def attention_bias(self, layer: int, state: TokenState) -> tp.Optional[torch.Tensor]:
        return proportional_attention_bias(state.size)

    def after_attention(self, layer: int, x: torch.Tensor, state: TokenState,
                        attn: AttentionOutput) -> tp.Tuple[torch.Tensor, TokenState]:
        r = merge_count(x.shape[1], self.schedule[layer])
        if r <= 0:
            return x, state
        if attn.probs is None:
            raise RuntimeError(f"vid_tldr: block {layer} merges but got no attention probabilities")
        sal = saliency(attn.probs)
        source = None
        match = None
        if self.track_source:  # one matching for the tokens and their patch membership (counted once)
            match = bipartite_match(x, r)
            source = saliency_merge_source(x, sal, initial_source(x, state.source), r, match)
        x, size = saliency_merge(x, sal, state.size, r, match)
        return x, TokenState(size=size, source=source, extras=state.extras)

    def pool(self, x: torch.Tensor, state: TokenState) -> torch.Tensor:
        return x.mean(dim=1) if self.params.pool == "mean" else size_weighted_mean(x, state.size)

    def overhead_macs(self, layer: int, tokens_in: int) -> int:
        """The cosine scores of the matching, ``a @ b^T`` on C-dim hidden states (fvcore counts them).

        Entropy, normalisation, sorting and scatter are elementwise/index work fvcore does not count.
        """
        if merge_count(tokens_in, self.schedule[layer]) <= 0:
            return 0
        return ((tokens_in + 1) // 2) * (tokens_in // 2) * self.embed_dim

    def describe(self) -> dict:
        return {"r_per_block": list(self.schedule), "pool": self.params.pool}
