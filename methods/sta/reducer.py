"""STA wired into the video ViT: our implementation of Mark12Ding/STA model_vit.py (``VisionTransformer.merge``).

One stage (after the whole block, attention + MLP) splits the time-major tokens into G contiguous
temporal groups of N tokens and keeps N - r tokens of every group:

- keys = head-averaged keys of the block's input tokens (``k.mean(1)``), L2-normalised per token;
- the first visited group is pruned by bipartite redundancy (``tome_drop``): even tokens A, odd
  tokens B, every A token scored by its best cosine similarity to a B token; the group is reordered as
  [B tokens, A tokens by ascending best similarity] and its first N - r tokens are kept;
- every later group (in visiting order) gets an accumulated redundancy ``s`` by transporting the previous
  group's redundancy with ``P = softmax over current tokens of (K_cur K_ref^T)`` (``accumulate``); the
  second group's reference is the whole reordered first group (dropped tokens included) with unit mass
  per reference token, later references are the kept tokens of the previous group with the kept
  redundancy renormalised to sum 1;
- score = s * (1 - min-max normalised L1 activation of the block output); keep the N - r smallest, in
  ascending score order;
- groups are concatenated back in temporal order.

Stages: after blocks 0, depth//3, 2*depth//3 with 8 / 4 / 2 groups visited 0..7 / 3,2,1,0 / 0,1, the
same r at every stage. Pooling is the plain mean of the survivors (the base class's ``pool``).

Everything runs batched (no per-sample loop, no host synchronisation). The forward only uses ops that
fvcore does not count (and that ``harness.measure.flops.IGNORED_OPS`` lists) besides its matmuls, so
``|x|`` is written ``max(x, -x)``, ``min`` as ``-max(-a)`` and ``1 - a`` as ``-a + 1`` — all bitwise
equal to the plain forms.
"""
from __future__ import annotations

import typing as tp

import torch

from harness.models.reduction import AttentionOutput, TokenReducer, TokenState, initial_source
from methods.sta import NUM_SLICES, STAGE_GROUPS, stage_layers, stage_token_counts

# (groups, visiting order) of the three stages (official ``merge``: T = 8 / 4 / 2, perm)
STAGES: tp.Tuple[tp.Tuple[int, tp.Tuple[int, ...]], ...] = (
    (8, tuple(range(8))),
    (4, (3, 2, 1, 0)),
    (2, (0, 1)),
)
assert tuple(g for g, _ in STAGES) == STAGE_GROUPS

_KEYS = frozenset({"keys"})


def _gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` [B, K] of ``x`` [B, N, C] -> [B, K, C]."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def tome_drop(x: torch.Tensor, keys: torch.Tensor) -> tp.Tuple[torch.Tensor, torch.Tensor]:
    """Reorder one reference group for the redundancy drop: ([B, N, C], [B, N, d]) -> same shapes.

    ``keys`` L2-normalised. A = even tokens, B = odd tokens; ``best(a) = max_b <a, b>``. The group is
    returned as [B tokens in order, A tokens by ascending ``best``] (tokens and keys alike): its first
    N - r tokens are the ones STA keeps, the last r the A tokens most redundant with some B token.
    """
    a, b = keys[:, ::2], keys[:, 1::2]
    best = (a @ b.transpose(-1, -2)).max(dim=-1).values  # [B, ceil(N/2)]
    a_order = best.argsort(dim=-1)  # ascending, as the official argsort(descending=False)
    x = torch.cat([x[:, 1::2], _gather_tokens(x[:, ::2], a_order)], dim=1)
    keys = torch.cat([b, _gather_tokens(a, a_order)], dim=1)
    return x, keys


def accumulate(keys: torch.Tensor, ref_keys: torch.Tensor,
               ref_score: tp.Optional[torch.Tensor] = None) -> torch.Tensor:
    """Accumulated redundancy [B, N, 1] of the current group's tokens.

    ``keys`` [B, N, d] (current group), ``ref_keys`` [B, M, d] (reference tokens), both normalised.
    ``P = softmax over the N current tokens of keys @ ref_keys^T`` [B, N, M]: every reference token
    spreads its mass over the current tokens. Without ``ref_score`` each reference token carries mass 1
    (``s = P 1``); otherwise ``s = P @ ref_score`` with ``ref_score`` [B, M, 1].
    """
    transport = (keys @ ref_keys.transpose(-1, -2)).softmax(dim=1)
    if ref_score is None:
        return transport.sum(dim=-1, keepdim=True)
    return transport @ ref_score


def activation_importance(x: torch.Tensor) -> torch.Tensor:
    """Min-max normalised L1 magnitude of every token within its group: x [B, G, N, C] -> [B, G, N]."""
    mag = torch.max(x, -x).sum(dim=-1)  # |x| summed over channels
    lo = mag.neg().max(dim=-1, keepdim=True).values.neg()
    hi = mag.max(dim=-1, keepdim=True).values
    return (mag - lo) / (hi - lo)


def sta_stage(x: torch.Tensor, keys: torch.Tensor, r: int, num_groups: int, order: tp.Sequence[int],
              source: tp.Optional[torch.Tensor] = None
              ) -> tp.Union[torch.Tensor, tp.Tuple[torch.Tensor, torch.Tensor]]:
    """One STA stage: [B, G*N, C] block output and [B, G*N, d] head-mean keys -> [B, G*(N-r), C].

    Groups are ``num_groups`` contiguous runs of N tokens (time-major), visited in ``order``; the result
    holds the kept tokens of every group, groups in temporal order, each group's tokens in the order
    STA keeps them (``tome_drop`` for the first visited group, ascending score for the others).
    With ``source`` [B, G*N, N0] (patch membership, ``track_source`` only) returns ``(x', source')``:
    the rows of the kept tokens, in the same order.
    """
    B, L, C = x.shape
    if r <= 0:
        return x if source is None else (x, source)
    n = L // num_groups
    keep = n - r
    xg = x.reshape(B, num_groups, n, C)
    kg = keys.reshape(B, num_groups, n, keys.shape[-1])
    kg = kg / kg.norm(dim=-1, keepdim=True)
    redundancy_weight = activation_importance(xg).neg().add(1)  # 1 - normalised activation

    first = order[0]
    sg = None if source is None else source.reshape(B, num_groups, n, source.shape[-1])
    if sg is None:
        first_x, ref_keys = tome_drop(xg[:, first], kg[:, first])  # ref: all n tokens, dropped ones included
        kept_source = {}
    else:  # the source rows ride along as extra channels: one similarity matmul, the same order
        both, ref_keys = tome_drop(torch.cat([xg[:, first], sg[:, first].to(x.dtype)], dim=-1), kg[:, first])
        first_x = both[..., :C]
        kept_source = {first: both[:, :keep, C:].to(sg.dtype)}
    kept: tp.Dict[int, torch.Tensor] = {first: first_x[:, :keep]}
    ref_score = None
    for g in order[1:]:
        s = accumulate(kg[:, g], ref_keys, ref_score)  # [B, n, 1]
        score = s[..., 0] * redundancy_weight[:, g]
        idx = score.topk(keep, dim=1, largest=False).indices  # ascending score
        kept[g] = _gather_tokens(xg[:, g], idx)
        if sg is not None:
            kept_source[g] = _gather_tokens(sg[:, g], idx)
        ref_keys = _gather_tokens(kg[:, g], idx)
        ref_score = s.gather(1, idx.unsqueeze(-1))
        ref_score = ref_score / ref_score.sum(dim=1, keepdim=True)
    x = torch.cat([kept[g] for g in range(num_groups)], dim=1)
    return x if sg is None else (x, torch.cat([kept_source[g] for g in range(num_groups)], dim=1))


def sta_stage_macs(tokens: int, r: int, num_groups: int, head_dim: int) -> int:
    """fvcore MACs of ``sta_stage``'s matmuls for one view entered by ``tokens`` tokens.

    tome_drop ``a @ b^T``: ceil(n/2) * floor(n/2) * d; second group ``K K0^T``: n * n * d; every
    later group ``K K_prev^T``: n * (n - r) * d plus the transport ``P @ s``: n * (n - r).
    """
    if r <= 0:
        return 0
    n = tokens // num_groups
    macs = ((n + 1) // 2) * (n // 2) * head_dim
    if num_groups >= 2:
        macs += n * n * head_dim
    macs += max(num_groups - 2, 0) * (n * (n - r) * head_dim + n * (n - r))
    return macs


class STAReducer(TokenReducer):
    def __init__(self, params, *, depth: int, num_heads: int, embed_dim: int):
        super().__init__(params, depth=depth, num_heads=num_heads, embed_dim=embed_dim)
        self.r = int(params.r)
        # layer -> (groups, visiting order); none at r = 0 (the official model skips ``merge`` then)
        self.stages = {layer: STAGES[stage] for layer, stage in stage_layers(depth)} if self.r > 0 else {}
        self._num_tokens = NUM_SLICES * 196  # the model's input length, set by bind(); 16x224 until then

    def bind(self, cfg) -> None:
        self._num_tokens = cfg.num_tokens

    def attention_needs(self, layer: int) -> tp.FrozenSet[str]:
        return _KEYS if layer in self.stages else frozenset()

    def after_block(self, layer: int, x: torch.Tensor, state: TokenState,
                    attn: AttentionOutput) -> tp.Tuple[torch.Tensor, TokenState]:
        stage = self.stages.get(layer)
        if stage is None:
            return x, state
        groups, order = stage
        if self.track_source:
            x, source = sta_stage(x, attn.keys, self.r, groups, order, initial_source(x, state.source))
            return x, TokenState(size=state.size, source=source, extras=state.extras)
        return sta_stage(x, attn.keys, self.r, groups, order), state

    def overhead_macs(self, layer: int, tokens_in: int) -> int:
        stage = self.stages.get(layer)
        if stage is None:
            return 0
        return sta_stage_macs(tokens_in, self.r, stage[0], self.embed_dim // self.num_heads)

    def describe(self) -> dict:
        per_slice = self._num_tokens // STAGES[0][0]
        return {
            "r": self.r,
            "stage_layers": sorted(self.stages),
            "groups_per_stage": [self.stages[layer][0] for layer in sorted(self.stages)],
            "visit_order_per_stage": [list(self.stages[layer][1]) for layer in sorted(self.stages)],
            "tokens_in": per_slice * STAGES[0][0],
            "tokens_after_stage": stage_token_counts(per_slice, self.r, self.depth),
        }
