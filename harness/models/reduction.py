"""The model's extension point: a ``TokenReducer`` decides what happens to the tokens in each block.

The backbone calls the reducer at fixed places of every block and threads a fresh ``TokenState``
through one forward; nothing is shared between forwards or hidden in module attributes.

    x = patch_embed(clip) + pos            state = reducer.init_state(x)
    for layer, block in enumerate(blocks):
        a = Attn(LN1(x), bias=reducer.attention_bias(layer, state),
                 probs/keys as reducer.attention_needs(layer) asks)
        x = x + a.out
        x, state = reducer.after_attention(layer, x, state, a)    # ToMe, vid-TLDR merge here
        x = x + MLP(LN2(x))
        x, state = reducer.after_block(layer, x, state, a)        # STA prunes here
    pooled = reducer.pool(x, state)          -> fc_norm -> head

The base class is the dense model (it changes nothing). A reducer is an ``nn.Module`` so that
trained methods can own parameters. Its ``overhead_macs`` states, in MACs, the matmuls of its own
scoring/matching for a block, so that GMACs can be computed from token counts alone.
"""
from __future__ import annotations

import dataclasses
import typing as tp

import torch
from torch import nn


@dataclasses.dataclass
class TokenState:
    """Per-forward token bookkeeping, created by ``TokenReducer.init_state``."""

    size: tp.Optional[torch.Tensor] = None  # [B, N, 1]: input patches each token stands for (None = all 1)
    source: tp.Optional[torch.Tensor] = None  # [B, N, N0]: 0/1 membership of input patches (optional)
    extras: dict = dataclasses.field(default_factory=dict)  # method-owned values for this forward only


@dataclasses.dataclass
class AttentionOutput:
    out: torch.Tensor  # [B, N, C] after the output projection
    probs: tp.Optional[torch.Tensor] = None  # [B, H, N, N] softmax(q k^T d^-1/2), before any bias, if asked
    keys: tp.Optional[torch.Tensor] = None  # [B, N, d] keys averaged over heads, if asked


def size_weighted_mean(x: torch.Tensor, size: tp.Optional[torch.Tensor]) -> torch.Tensor:
    """[B, N, C] -> [B, C]: sum_i s_i x_i / sum_i s_i (the plain mean when ``size`` is None)."""
    if size is None:
        return x.mean(dim=1)
    size = size.to(x.dtype)
    return (x * size).sum(dim=1) / size.sum(dim=1)


def initial_source(x: torch.Tensor, source: tp.Optional[torch.Tensor]) -> torch.Tensor:
    """``source`` or, before any reduction, the identity membership [B, N, N] of ``x``'s N tokens."""
    if source is not None:
        return source
    n, t, _ = x.shape
    return torch.eye(t, device=x.device, dtype=x.dtype)[None].expand(n, t, t)


def proportional_attention_bias(size: tp.Optional[torch.Tensor]) -> tp.Optional[torch.Tensor]:
    """ToMe's proportional attention: ``log(size)`` of each key, broadcastable to [B, H, N, N] (None: no bias)."""
    return None if size is None else size.log()[:, None, None, :, 0]


class TokenReducer(nn.Module):
    """No reduction: the dense model. Subclasses override the hooks they need.

    ``track_source`` (off by default, so a normal forward pays nothing): when set (``harness.viz``
    does), a reducer that removes tokens keeps ``TokenState.source`` up to date: after each of its
    steps, row i holds the input patches token i stands for (merged patches: several; a pruned or
    deleted patch: in no row). It must not change the forward's output.
    """

    track_source: bool = False

    def __init__(self, params: tp.Any = None, *, depth: int, num_heads: int, embed_dim: int):
        super().__init__()
        self.params = params
        self.depth, self.num_heads, self.embed_dim = depth, num_heads, embed_dim
        self.layout = None  # the backbone's TokenLayout, set by the model before ``bind``

    @property
    def protected(self) -> int:
        """Leading tokens of the sequence this reducer is handed that it must keep as they are (class
        tokens under joint attention; ``harness.models.presets.TokenLayout.protected``)."""
        return self.layout.protected if self.layout is not None else 0

    def bind(self, cfg: tp.Any) -> None:
        """Called once by the model with its ``VideoViTConfig`` (for reducers that need the input grid),
        after ``self.layout`` is set. Under divided attention the reducer is handed each frame's patch
        tokens with frames folded into the batch (``layout.tokens_handed``)."""

    def init_state(self, x: torch.Tensor) -> TokenState:
        return TokenState()

    def attention_needs(self, layer: int) -> tp.FrozenSet[str]:
        """Which of ``{"probs", "keys"}`` block ``layer`` must return (probs disable the fused kernel).

        ``probs`` are the softmax of the unbiased logits (what saliency scores such as vid-TLDR's read);
        the block output still uses the biased attention when ``attention_bias`` returns a bias.
        """
        return frozenset()

    def attention_bias(self, layer: int, state: TokenState) -> tp.Optional[torch.Tensor]:
        """Additive attention-logit bias broadcastable to [B, H, N, N] (e.g. log size), or None."""
        return None

    def after_attention(self, layer: int, x: torch.Tensor, state: TokenState,
                        attn: AttentionOutput) -> tp.Tuple[torch.Tensor, TokenState]:
        return x, state

    def after_block(self, layer: int, x: torch.Tensor, state: TokenState,
                    attn: AttentionOutput) -> tp.Tuple[torch.Tensor, TokenState]:
        """After the MLP residual; ``attn`` is this block's attention (keys/probs of its input tokens)."""
        return x, state

    def pool(self, x: torch.Tensor, state: TokenState) -> torch.Tensor:
        """[B, N, C] -> [B, C]; the dense model takes the plain mean over tokens."""
        return x.mean(dim=1)

    def overhead_macs(self, layer: int, tokens_in: int) -> int:
        """MACs of this method's own matmuls in block ``layer`` entered by ``tokens_in`` tokens."""
        return 0

    def describe(self) -> dict:
        """What goes into a record about this reducer (e.g. the expanded per-layer schedule)."""
        return {}
