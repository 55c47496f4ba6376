"""Mean-key pruning as pure tensor functions (no module state): scores, then the kept rows."""
from __future__ import annotations

import torch


def typicality(keys: torch.Tensor) -> torch.Tensor:
    """[B, N, d] head-averaged keys -> [B, N] cosine similarity of each key to the mean key direction.

    One matmul ([B, N, d] @ [B, d, 1]: N * d MACs per clip, ``mean_key_prune_macs``); the norms and the
    mean are not multiply-adds in fvcore's convention.
    """
    unit = keys / keys.norm(dim=-1, keepdim=True)
    mean = unit.mean(dim=1, keepdim=True)
    mean = mean / mean.norm(dim=-1, keepdim=True)
    return (unit @ mean.transpose(-1, -2))[..., 0]


def least_typical(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """[B, N] scores -> [B, keep] indices of the ``keep`` lowest, in ascending token order."""
    return scores.topk(keep, dim=1, largest=False).indices.sort(dim=1).values


def take_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` [B, K] of ``x`` [B, N, C] -> [B, K, C]."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def mean_key_prune_macs(tokens: int, head_dim: int) -> int:
    """MACs of ``typicality`` over ``tokens`` scored tokens."""
    return tokens * head_dim
