"""ToMe's merge functions, our implementation of facebookresearch/ToMe tome/merge.py and utils.parse_r.

Pure tensor functions: ``bipartite_soft_matching`` returns a ``merge`` closure that applies the same
reduction to any per-token tensor, and ``do_nothing`` when there is nothing to merge.
"""
from __future__ import annotations

import math
import typing as tp

import torch

Merge = tp.Callable[..., torch.Tensor]


def do_nothing(x: torch.Tensor, mode: str = "") -> torch.Tensor:
    return x


def bipartite_soft_matching(metric: torch.Tensor, r: int, class_token: bool = False,
                            distill_token: bool = False) -> Merge:
    """Merge ``r`` tokens: even tokens (set A) into their most similar odd token (set B).

    ``metric`` [B, N, d]. The r A-tokens with the highest cosine similarity to any B-token are merged
    into it; the other A-tokens stay, in descending-similarity order (ascending index order only when a
    class token must stay first). The merged sequence is [unmerged A, all B]; its length is N - r.
    """
    protected = int(class_token) + int(distill_token)
    r = min(r, (metric.shape[1] - protected) // 2)
    if r <= 0:
        return do_nothing

    with torch.no_grad():
        metric = metric / metric.norm(dim=-1, keepdim=True)
        a, b = metric[..., ::2, :], metric[..., 1::2, :]
        scores = a @ b.transpose(-1, -2)
        if class_token:
            scores[..., 0, :] = -math.inf
        if distill_token:
            scores[..., :, 0] = -math.inf
        node_max, node_idx = scores.max(dim=-1)
        edge_idx = node_max.argsort(dim=-1, descending=True)[..., None]
        unm_idx = edge_idx[..., r:, :]
        src_idx = edge_idx[..., :r, :]
        dst_idx = node_idx[..., None].gather(dim=-2, index=src_idx)
        if class_token:
            unm_idx = unm_idx.sort(dim=1)[0]

    def merge(x: torch.Tensor, mode: str = "mean") -> torch.Tensor:
        src, dst = x[..., ::2, :], x[..., 1::2, :]
        n, t1, c = src.shape
        unm = src.gather(dim=-2, index=unm_idx.expand(n, t1 - r, c))
        src = src.gather(dim=-2, index=src_idx.expand(n, r, c))
        dst = dst.scatter_reduce(-2, dst_idx.expand(n, r, c), src, reduce=mode)
        if distill_token:
            return torch.cat([unm[:, :1], dst[:, :1], unm[:, 1:], dst[:, 1:]], dim=1)
        return torch.cat([unm, dst], dim=1)

    return merge


def merge_wavg(merge: Merge, x: torch.Tensor,
               size: tp.Optional[torch.Tensor] = None) -> tp.Tuple[torch.Tensor, torch.Tensor]:
    """Size-weighted merge: each destination becomes the size-weighted mean of itself and its sources."""
    if size is None:
        size = torch.ones_like(x[..., 0, None])
    x = merge(x * size, mode="sum")
    size = merge(size, mode="sum")
    return x / size, size


def merge_source(merge: Merge, x: torch.Tensor,
                 source: tp.Optional[torch.Tensor] = None) -> torch.Tensor:
    """Track which input patches each token holds: [B, N, N0] 0/1 rows, merged with ``amax``."""
    if source is None:
        n, t, _ = x.shape
        source = torch.eye(t, device=x.device, dtype=x.dtype)[None, ...].expand(n, t, t)
    return merge(source, mode="amax")


def parse_r(num_layers: int, r: tp.Union[int, tp.Sequence[int], tp.Tuple[int, float]],
            inflection: float = 0.0) -> tp.List[int]:
    """Expand ToMe's compact ``r`` into one value per layer.

    int r with inflection: linear from r(1-inflection) to r(1+inflection) across layers, truncated to
    int as ToMe's ``parse_r``; a list is used as is and zero-padded to ``num_layers``.
    """
    if isinstance(r, tuple):
        r, inflection = r
    if isinstance(r, (list, tuple)):
        if len(r) > num_layers:
            raise ValueError(f"r has {len(r)} entries but the model has {num_layers} blocks")
        return [int(v) for v in r] + [0] * (num_layers - len(r))
    min_val = int(r * (1.0 - inflection))
    max_val = 2 * r - min_val
    if num_layers == 1:
        return [min_val]
    step = (max_val - min_val) / (num_layers - 1)
    return [int(min_val + step * i) for i in range(num_layers)]
