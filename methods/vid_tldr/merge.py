"""vid-TLDR's scoring and merging as pure tensor functions (our implementation of
mlvlab/vid-TLDR multi_modality/utils/vid_TLDR.py: get_objective_score, vidTLDR, merging, merge_wavg).

Shapes: ``x`` [B, N, C] hidden states, ``probs`` [B, H, N, N] attention probabilities before any size
bias, ``saliency`` and ``size`` [B, N, 1]. No Python loop over samples and no host synchronisation:
the token count after a merge depends only on N and r, so every sample of a batch keeps the same
count and gets exactly what it would get alone (up to batched-matmul rounding).
"""
from __future__ import annotations

import typing as tp

import torch


def parse_r(depth: int, r: tp.Union[float, tp.Sequence[float]]) -> tp.List[float]:
    """The per-block r list zero-padded to ``depth`` (ValueError if it is longer); a bare number is
    used in every block."""
    r = [r] * depth if isinstance(r, (int, float)) else list(r)
    if len(r) > depth:
        raise ValueError(f"vid_tldr: r has {len(r)} entries but the model has {depth} blocks")
    if any(v < 0 for v in r):
        raise ValueError(f"vid_tldr: r entries must be >= 0, got {r}")
    return [0 if v == 0 else float(v) if v < 1 else int(v) for v in r] + [0] * (depth - len(r))


def merge_count(num_tokens: int, r: float) -> int:
    """Tokens merged away in a block entered by ``num_tokens`` tokens (official rule).

    ``r < 1``: ``int(N * r)`` (a fraction of the current tokens); ``r >= 1``: ``r`` itself; then
    clipped to ``[0, N // 2]``.
    """
    count = int(num_tokens * r) if r < 1 else int(r)
    return max(min(count, num_tokens // 2), 0)


def token_schedule(num_tokens: int, schedule: tp.Sequence[float]) -> tp.List[int]:
    """Tokens entering each block, then the tokens left after the last one (len(schedule) + 1 values).

    >>> token_schedule(2352, [600, 200, 100, 0])
    [2352, 1752, 1552, 1452, 1452]
    """
    counts = [num_tokens]
    for r in schedule:
        counts.append(counts[-1] - merge_count(counts[-1], r))
    return counts


def saliency(probs: torch.Tensor) -> torch.Tensor:
    """Per-token saliency [B, N, 1] from attention probabilities [B, H, N, N] (taken before any bias).

    1. head average ``P = mean_h probs``; sharpness ``e_i = sum_j P_ij log P_ij`` (negative entropy);
    2. background removal: ``e`` min-max normalised over the tokens of each sample; tokens below the
       per-sample mean of the normalised value are background;
    3. foreground sharpening: ``(e - mean) / max(e - mean)``, background set to 0.
    Result: 0 for background, in (0, 1] for foreground (the sharpest token gets 1).

    NaN guards (the official code has none; both guards are inactive, i.e. the result is bit-identical,
    wherever the official result is finite):
    * a probability that underflows to exactly 0 contributes ``0 log 0 = 0`` (official: NaN);
    * if every token of a sample has the same sharpness (both normalisers are 0; official: 0/0 = NaN)
      no token is background and every saliency is 1, so the merge becomes a plain size-weighted average.
    """
    p = probs.mean(dim=1)
    plogp = torch.where(p > 0, p * p.log(), torch.zeros((), dtype=p.dtype, device=p.device))
    e = plogp.sum(dim=2).unsqueeze(-1)  # [B, N, 1], <= 0

    # (max with a dim, min as -max(-e), ==, > rather than amax/amin and <: the same values, written
    # with ops that fvcore / harness.measure.flops already know to be free, so GMACs checks see no
    # unknown op)
    e = e + e.neg().max(dim=1, keepdim=True).values
    spread = e.max(dim=1, keepdim=True).values
    degenerate = spread == 0  # [B, 1, 1]: all tokens equally sharp (then e == 0 everywhere)
    e = e / torch.where(degenerate, torch.ones_like(spread), spread)
    background = e.mean(dim=1, keepdim=True) > e  # never true in the degenerate case

    f = e - e.mean(dim=1, keepdim=True)
    top = f.max(dim=1, keepdim=True).values  # > 0 unless degenerate
    f = f / torch.where(degenerate, torch.ones_like(top), top)
    f = torch.where(degenerate, torch.ones_like(f), f)
    return f.masked_fill(background, 0.0)


def bipartite_match(x: torch.Tensor, r: int) -> tp.Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Match even tokens (set A) to their most similar odd token (set B) by cosine of the hidden states.

    Returns ``(keep, src, dst)`` as [B, k, 1] index tensors into A (kept, ascending), into A (the r
    sources, by descending best similarity) and into B (the destination of each source).
    The score is the official ``(cos + 1) / 2`` (same values, same rounding, hence the same ties).
    """
    with torch.no_grad():
        metric = x / x.norm(dim=-1, keepdim=True)
        a, b = metric[:, ::2], metric[:, 1::2]
        scores = (a @ b.transpose(-1, -2) + 1) / 2
        best, best_dst = scores.max(dim=-1)  # [B, NA]
        order = best.argsort(dim=-1, descending=True)[..., None]  # [B, NA, 1]
        src = order[:, :r]
        keep = order[:, r:].sort(dim=1)[0]
        dst = best_dst[..., None].gather(dim=1, index=src)
    return keep, src, dst


def _reduce(y: torch.Tensor, keep: torch.Tensor, src: torch.Tensor, dst: torch.Tensor,
            weight: torch.Tensor) -> torch.Tensor:
    """[kept A rows, B rows + sum of their weighted sources], computed in float32, cast back."""
    dtype = y.dtype
    y = y.float()
    a, b = y[:, ::2], y[:, 1::2]
    c = y.shape[-1]
    kept = a.gather(dim=1, index=keep.expand(-1, -1, c))
    moved = a.gather(dim=1, index=src.expand(-1, -1, c)) * weight
    b = b.scatter_reduce(1, dst.expand(-1, -1, c), moved, reduce="sum")
    return torch.cat([kept, b], dim=1).to(dtype)


def saliency_merge(x: torch.Tensor, sal: torch.Tensor, size: tp.Optional[torch.Tensor],
                   r: int, match: tp.Optional[tp.Tuple[torch.Tensor, ...]] = None) -> tp.Tuple[torch.Tensor, torch.Tensor]:
    """Merge ``r`` tokens of ``x`` with saliency weights; returns ``(x', size')`` with N - r tokens.

    Matching on ``x`` itself (``bipartite_match``); each source i -> destination j contributes with
    weight ``sal_i * size_i``: ``size'_j = size_j + sum sal_i size_i`` and
    ``x'_j = (size_j x_j + sum sal_i size_i x_i) / size'_j``. A background source (sal = 0) disappears
    without a trace. Kept A tokens come first (ascending index), then all B tokens. ``size`` None = ones.
    The arithmetic follows the official order (inputs pre-scaled by size / max size) so that the
    result agrees with it to the last bit. ``match``: ``bipartite_match(x, r)`` when the caller has it already.
    """
    if size is None:
        size = torch.ones_like(x[..., :1])
    if r <= 0:
        return x, size
    dtype = x.dtype
    keep, src, dst = match if match is not None else bipartite_match(x, r)
    weight = sal[:, ::2].gather(dim=1, index=src).float()  # [B, r, 1]
    size_max = size.max(dim=1, keepdim=True).values
    x = _reduce(x * (size / size_max), keep, src, dst, weight)
    size = _reduce(size, keep, src, dst, weight)
    return (x / (size / size_max)).to(dtype), size


def saliency_merge_source(x: torch.Tensor, sal: torch.Tensor, source: torch.Tensor, r: int,
                          match: tp.Optional[tp.Tuple[torch.Tensor, ...]] = None) -> torch.Tensor:
    """Patch membership [B, N - r, N0] (0/1) after ``saliency_merge(x, sal, size, r)`` (visualisation only).

    The same matching on the same ``x``: a destination holds its own patches and those of its sources
    with non-zero saliency; a background source (sal = 0) is deleted, so its patches belong to no token.
    """
    if r <= 0:
        return source
    keep, src, dst = match if match is not None else bipartite_match(x, r)
    foreground = (sal[:, ::2].gather(dim=1, index=src) > 0).float()
    return (_reduce(source, keep, src, dst, foreground) > 0).to(source.dtype)

