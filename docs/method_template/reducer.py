"""Mean-key pruning wired into the video ViT through the ``TokenReducer`` hooks
(``harness/models/reduction.py``): it asks for the head-averaged keys in the blocks that prune and
drops tokens after their attention residual, before the MLP (the dropped tokens skip the MLP)."""
from __future__ import annotations

import typing as tp

import torch

from harness.models.reduction import AttentionOutput, TokenReducer, TokenState, initial_source
from methods.mean_key_prune.prune import least_typical, mean_key_prune_macs, take_rows, typicality

_KEYS = frozenset({"keys"})


class MeanKeyPruneReducer(TokenReducer):
    def __init__(self, params, *, depth: int, num_heads: int, embed_dim: int):
        super().__init__(params, depth=depth, num_heads=num_heads, embed_dim=embed_dim)
        self.layers = frozenset(params.layers) if params.r > 0 else frozenset()

    def attention_needs(self, layer: int) -> tp.FrozenSet[str]:
        return _KEYS if layer in self.layers else frozenset()

    def _dropped(self, layer: int, tokens_in: int) -> int:
        """Tokens block ``layer`` drops from ``tokens_in`` (class tokens kept, at least one other kept)."""
        if layer not in self.layers:
            return 0
        return max(min(self.params.r, tokens_in - self.protected - 1), 0)

    def after_attention(self, layer: int, x: torch.Tensor, state: TokenState,
                        attn: AttentionOutput) -> tp.Tuple[torch.Tensor, TokenState]:
        drop = self._dropped(layer, x.shape[1])
        if drop == 0:
            return x, state
        p = self.protected  # leading class tokens: never scored, never dropped
        keep = least_typical(typicality(attn.keys[:, p:]), x.shape[1] - p - drop) + p
        if p:
            keep = torch.cat([torch.arange(p, device=x.device).expand(x.shape[0], p), keep], dim=1)
        size = None if state.size is None else take_rows(state.size, keep)  # after a merging step, if any
        source = take_rows(initial_source(x, state.source), keep) if self.track_source else None
        return take_rows(x, keep), TokenState(size=size, source=source, extras=state.extras)

    def overhead_macs(self, layer: int, tokens_in: int) -> int:
        if self._dropped(layer, tokens_in) == 0:
            return 0
        return mean_key_prune_macs(tokens_in - self.protected, self.embed_dim // self.num_heads)

    def describe(self) -> dict:
        return {"r": self.params.r, "layers": sorted(self.layers)}
