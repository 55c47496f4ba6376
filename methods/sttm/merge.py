"""STTM's merge steps as pure tensor functions (our reconstruction, methods.md §6.2; no official code).

Shapes: a clip's tokens are viewed frame by frame, ``x`` [B, T, N, D] (T temporal token slices of N
tokens, VideoMAE's time-major order), ``size`` [B, T, N, 1] input patches per token. Every function
works batched with no host synchronisation: the token count after each step depends only on
(T, N, K, r), so every clip of a batch keeps the same count.

Cost convention (``harness.measure.flops``): the only matmuls are ``cosine_matrix`` (T N^2 C per view),
ToMe's ``a @ b^T`` in ``temporal_merge`` ((T - 1) K^2 C) and the motion projection in the reducer;
everything else is elementwise, sorting or scatter work that fvcore does not count.
"""
from __future__ import annotations

import typing as tp

import torch

from methods.tome.merge import bipartite_soft_matching, merge_wavg


def cosine_matrix(x: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every token pair inside each frame: [B, T, N, C] -> [B, T, N, N]."""
    unit = x / x.norm(dim=-1, keepdim=True)
    return unit @ unit.transpose(-1, -2)


def dpc_knn(cos: torch.Tensor, num_meta: int, k: int) -> torch.Tensor:
    """Density peaks (DPC-kNN, as in TCFormer) of every frame: [..., N, N] cosines -> [..., K] indices.

    On unit-normalised features the squared distance is ``d2 = 2 - 2 cos`` ([R2]: TCFormer uses raw
    features / sqrt(C); unit features keep the density well scaled and share the matmul with [R3]).
    Density ``rho_i = exp(-mean of d2 to its k nearest tokens, itself included)``; ``delta_i`` = the
    distance to the nearest token of higher density (the largest distance in the frame for the densest
    token); the K tokens with the largest ``rho * delta`` are returned, highest score first (so the
    order does not depend on the token order within a frame).
    """
    d2 = cos.mul(-2.0).add(2.0).clamp(min=0.0)
    knn = d2.topk(min(k, d2.shape[-1]), dim=-1, largest=False).values
    density = knn.mean(dim=-1).neg().exp()  # [..., N]
    dist = d2.sqrt()
    higher = density.unsqueeze(-2) > density.unsqueeze(-1)  # [..., i, j]: rho_j > rho_i
    farthest = dist.flatten(-2).max(dim=-1).values[..., None, None]
    delta = torch.where(higher, dist, farthest).min(dim=-1).values
    return (density * delta).topk(num_meta, dim=-1).indices


def assign_to_meta(cos: torch.Tensor, meta_idx: torch.Tensor,
                   tau: float) -> tp.Tuple[torch.Tensor, torch.Tensor]:
    """Token-meta assignment and soft weight ([R3]): ([..., N, N] cosines, [..., K]) -> ([..., N], [..., N]).

    ``S_ik = cos(x_i, m_k)``; ``a(i) = argmax_k S_ik``, except that a meta token always belongs to its
    own cluster (so no cluster is empty and every frame keeps exactly K tokens); the weight of token i
    is ``w_i = softmax_k(S_ik / tau)`` at ``k = a(i)``. Gradients flow through ``w`` only.
    """
    k = meta_idx.shape[-1]
    sim = cos.gather(-1, meta_idx.unsqueeze(-2).expand(*cos.shape[:-1], k))  # [..., N, K]
    soft = (sim / tau).softmax(dim=-1)
    assign = sim.detach().argmax(dim=-1)
    own = torch.arange(k, device=meta_idx.device).expand(meta_idx.shape)
    assign = assign.scatter(-1, meta_idx, own)
    weight = soft.gather(-1, assign.unsqueeze(-1)).squeeze(-1)
    return assign, weight


def spatial_merge(x: torch.Tensor, size: tp.Optional[torch.Tensor], assign: torch.Tensor,
                  weight: torch.Tensor, num_meta: int) -> tp.Tuple[torch.Tensor, torch.Tensor]:
    """Average the tokens of each cluster inside every frame ([R4]): -> ([B, T, K, D], [B, T, K, 1]).

    ``x`` [B, T, N, D] (any per-token channels: features, position moments), ``assign`` [B, T, N] in
    ``[0, K)``, ``weight`` [B, T, N]. Cluster k becomes ``sum_i w_i s_i x_i / sum_i w_i s_i`` over its
    members; its size is ``sum_i s_i`` (so sizes still count input patches).
    """
    if size is None:
        size = torch.ones_like(x[..., :1])
    omega = weight.unsqueeze(-1) * size  # [B, T, N, 1]
    index = assign.unsqueeze(-1)
    shape = (*x.shape[:2], num_meta)
    total = x.new_zeros(*shape, x.shape[-1]).scatter_reduce(
        2, index.expand(-1, -1, -1, x.shape[-1]), x * omega, reduce="sum")
    mass = omega.new_zeros(*shape, 1).scatter_reduce(2, index, omega, reduce="sum")
    merged_size = size.new_zeros(*shape, 1).scatter_reduce(2, index, size, reduce="sum")
    return total / mass, merged_size


def _interleave(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[B, K, D] x 2 -> [B, 2K, D] as a0, b0, a1, b1, ... (ToMe's even/odd split gives back a, b)."""
    return torch.cat([a.unsqueeze(2), b.unsqueeze(2)], dim=2).flatten(1, 2)


def temporal_merge(x: torch.Tensor, size: torch.Tensor, r: int,
                   metric_dims: tp.Optional[int] = None) -> tp.Tuple[torch.Tensor, torch.Tensor]:
    """Merge across consecutive frames ([R5], budget form): [B, T, K, D] -> [B, T K - (T - 1) r, D].

    For t = 0 .. T-2 (in order): ToMe's ``bipartite_soft_matching`` with set A = the K tokens frame t
    holds now and set B = frame t+1's K tokens, on the cosine of ``x[..., :metric_dims]`` (the hidden
    state; the other channels just follow); the r A-tokens most similar to some B-token are merged into
    it (``merge_wavg``: size-weighted). A merged token sits in frame t+1 and may move on into frame t+2,
    so an object can be followed along the clip. Output: frames in temporal order, frame t holding its
    K - r unmerged tokens (K for the last frame); sizes are summed.
    """
    if r <= 0:
        return x.flatten(1, 2), size.flatten(1, 2)
    frames, k = x.shape[1], x.shape[2]
    keep = k - min(r, k)
    kept_x, kept_size = [], []
    cur_x, cur_size = x[:, 0], size[:, 0]
    for t in range(1, frames):
        pair = _interleave(cur_x, x[:, t])
        merge = bipartite_soft_matching(pair[..., :metric_dims], r)
        pair, pair_size = merge_wavg(merge, pair, _interleave(cur_size, size[:, t]))
        kept_x.append(pair[:, :keep])
        kept_size.append(pair_size[:, :keep])
        cur_x, cur_size = pair[:, keep:], pair_size[:, keep:]
    return torch.cat(kept_x + [cur_x], dim=1), torch.cat(kept_size + [cur_size], dim=1)


def grid_positions(frames: int, height: int, width: int) -> torch.Tensor:
    """Normalised positions (t, y, x) in [0, 1] of the time-major token grid: [T H W, 3]."""
    axes = [torch.arange(n, dtype=torch.float32) / max(n - 1, 1) for n in (frames, height, width)]
    t, y, x = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([t, y, x], dim=-1).reshape(-1, 3)


def position_moments(frames: int, height: int, width: int) -> torch.Tensor:
    """Per-token position moments before any merge: [T H W, T * 3].

    For each frame t' the triple ``(Omega(t'), Omega y, Omega x)`` where ``Omega(t')`` is the share of
    the token's weight lying in frame t': one-hot at the token's own frame. Merging moments with the
    same normalised weights as the features (``spatial_merge``, then size-weighted in
    ``temporal_merge``) gives, for a merged token g with member weights ``omega_i`` (sum 1),
    ``Omega_g(t) = sum_{i in g, t_i = t} omega_i`` and ``Y_g(t) = sum_{i in g, t_i = t} omega_i (y_i, x_i)``.
    """
    pos = grid_positions(frames, height, width)
    frame = torch.arange(frames).repeat_interleave(height * width)
    onehot = (frame[:, None] == torch.arange(frames)[None, :]).float()  # [N, T]
    moments = torch.cat([onehot[..., None], onehot[..., None] * pos[:, None, 1:]], dim=-1)
    return moments.reshape(-1, frames * 3)


def motion_features(moments: torch.Tensor, frames: int) -> torch.Tensor:
    """The motion feature ``[P_g, dc_g]`` of every merged token ([R6]): [..., T * 3] -> [..., 3 + 2 T].

    ``P_g = sum_i omega_i p_i`` = (sum_t Omega(t) t / (T - 1), sum_t Y(t)) — the weighted mean
    (t, y, x) of its members; per-frame centroids ``c_g(t) = Y(t) / Omega(t)`` where ``Omega(t) > 0``;
    ``dc_g(t) = c_g(t + 1) - c_g(t)`` where both frames hold members, else 0, for t = 0 .. T-2, then
    zero-padded to T entries (2 T values).
    """
    m = moments.reshape(*moments.shape[:-1], frames, 3)
    omega, weighted = m[..., 0], m[..., 1:]  # [..., T], [..., T, 2]
    t_norm = torch.arange(frames, device=m.device, dtype=m.dtype) / max(frames - 1, 1)
    centre = torch.cat([(omega * t_norm).sum(dim=-1, keepdim=True), weighted.sum(dim=-2)], dim=-1)
    present = (omega > 0).to(m.dtype)
    centroid = weighted / omega.clamp(min=1e-12).unsqueeze(-1)
    both = (present[..., 1:] * present[..., :-1]).unsqueeze(-1)
    step = (centroid[..., 1:, :] - centroid[..., :-1, :]) * both  # [..., T-1, 2]
    step = torch.cat([step, torch.zeros_like(step[..., :1, :])], dim=-2)
    return torch.cat([centre, step.flatten(-2)], dim=-1)


def motion_feature_dim(frames: int) -> int:
    """Width of ``motion_features``: 3 (P_g) + 2 T (dc_g, zero-padded)."""
    return 3 + 2 * frames
