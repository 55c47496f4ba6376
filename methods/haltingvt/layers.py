"""HaltingVT's blocks (our code; numerics of dun-research/HaltingVT @ 4830e2a).

Token layout of a clip with T temporal positions and S patches per frame, as in the official code:
``[CLS, patch (s, t) at 1 + s*T + t]`` (space-major, time-minor). After the Glimpser keeps k
patches per frame, patch (rank r, t) sits at ``1 + r*T + t``.
"""
from __future__ import annotations

import dataclasses
import typing as tp

import torch
import torch.nn.functional as F
from torch import nn

from harness.models.timm_import import import_timm
from harness.models.varlen import varlen_attention
from harness.measure.regions import reduction_region

import_timm()
from timm.layers import DropPath  # noqa: E402  (after the torchvision fix)

from harness.models.video_vit import BlockMlp, add_residual  # noqa: E402


class PatchEmbed(nn.Module):
    """[B, 3, T, H, W] -> [B, T', S, C] with a Conv3d of kernel (tubelet, p, p).

    Tubelet 1 is the official per-frame Conv2d (its [C, 3, p, p] weight gains a time axis).
    """

    def __init__(self, in_chans: int, dim: int, patch_size: int, tubelet_size: int):
        super().__init__()
        kernel = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, dim, kernel_size=kernel, stride=kernel)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        x = self.proj(clip)  # [B, C, T', h, w]
        return x.flatten(3).permute(0, 2, 3, 1)


@dataclasses.dataclass
class Halted:
    """The halted tokens a ``packed``/``varlen`` halting block left out, as the official (``masked``) batch
    still holds them: zero vectors, so every one enters attention as the same input ``norm1(0)``
    (LayerNorm's bias; ``input`` [1, C]). ``log_counts`` [B]: log of each clip's number of them (-inf for none)."""

    input: torch.Tensor
    log_counts: torch.Tensor


class Attention(nn.Module):
    """Multi-head self-attention, qkv with a full bias (DeiT/TimeSformer), optional probabilities.

    The explicit path scales the logits after ``q k^T`` as the official code does; the fused path
    (``scaled_dot_product_attention``) is used when no probabilities are needed and ``fused``.
    """

    def __init__(self, dim: int, num_heads: int, fused: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.fused = fused
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    varlen_impl = "auto"  # forward_varlen: harness.models.varlen.VARLEN_IMPLS (an execution choice, same numbers)

    def kernel(self, need_probs: bool) -> str:
        return "sdpa" if self.fused and not need_probs else "explicit"

    def forward(self, x: torch.Tensor, need_probs: bool = False, attn_mask: tp.Optional[torch.Tensor] = None,
                halted: tp.Optional[Halted] = None) -> tp.Tuple[torch.Tensor, tp.Optional[torch.Tensor]]:
        """``attn_mask`` (bool, broadcastable to [B, H, N, N], True = may attend) hides padded keys;
        ``halted`` stands for each clip's removed halted tokens (``halted_keys``)."""
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        if halted is not None:  # one more key per clip: the halted tokens' shared key/value, weighted by their count
            k0, v0 = self.halted_kv(halted.input)
            k = torch.cat([k, k0[None, :, None].expand(B, -1, 1, -1)], dim=2)
            v = torch.cat([v, v0[None, :, None].expand(B, -1, 1, -1)], dim=2)
            bias = q.new_zeros(B, 1, 1, N)
            if attn_mask is not None:  # padding: bool [B, 1, 1, N]
                bias = bias.masked_fill(~attn_mask, float("-inf"))
            attn_mask = torch.cat([bias, halted.log_counts.to(q.dtype).view(B, 1, 1, 1).expand(*bias.shape[:-1], 1)], -1)
        out, probs = self._attend(q, k, v, need_probs, attn_mask)
        return self.proj(out.transpose(1, 2).reshape(B, N, C)), probs

    def halted_kv(self, x0: torch.Tensor) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """Key and value [H, D] of a token whose attention input is ``x0`` [1, C] (a halted token's)."""
        C = x0.shape[-1]
        _, k0, v0 = self.qkv(x0).reshape(3, self.num_heads, C // self.num_heads).unbind(0)
        return k0, v0

    def forward_varlen(self, x: torch.Tensor, lengths: tp.Sequence[int], halted: tp.Optional[Halted] = None
                       ) -> torch.Tensor:
        """Self-attention within each of the sequences concatenated in ``x`` [1, sum(lengths), C]
        (``harness.models.varlen``: no token is padded, no sequence sees another's tokens).
        With ``halted``, each clip also attends to its halted tokens' shared key (a per-clip loop)."""
        _, N, C = x.shape
        q, k, v = self.qkv(x).reshape(N, 3, self.num_heads, C // self.num_heads).unbind(1)
        if halted is not None:
            return self.proj(self._varlen_with_halted(q, k, v, lengths, halted).reshape(1, N, C))
        explicit = None if self.fused else (lambda q, k, v: self._attend(q, k, v, False, None)[0])
        out = varlen_attention(q, k, v, lengths, impl=self.varlen_impl, explicit=explicit)
        return self.proj(out.reshape(1, N, C))

    def _varlen_with_halted(self, q, k, v, lengths, halted: Halted) -> torch.Tensor:
        k0, v0 = self.halted_kv(halted.input)  # [H, D]
        parts = []
        for i, (qi, ki, vi) in enumerate(zip(q.split(list(lengths)), k.split(list(lengths)), v.split(list(lengths)))):
            if qi.shape[0] == 0:
                continue
            qi, ki, vi = (t.transpose(0, 1)[None] for t in (qi, ki, vi))  # [1, H, n, D]
            ki, vi = torch.cat([ki, k0[None, :, None]], dim=2), torch.cat([vi, v0[None, :, None]], dim=2)
            bias = torch.cat([qi.new_zeros(qi.shape[2]), halted.log_counts[i:i + 1].to(qi.dtype)]).view(1, 1, 1, -1)
            parts.append(self._attend(qi, ki, vi, False, bias)[0][0])  # [H, n, D]
        return torch.cat(parts, dim=1).transpose(0, 1)

    def _attend(self, q, k, v, need_probs: bool, attn_mask: tp.Optional[torch.Tensor]):
        """``attn_mask``: bool (True = may attend) or an additive float bias."""
        if self.kernel(need_probs) == "sdpa":
            return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask), None
        logits = (q @ k.transpose(-2, -1)) * self.scale
        if attn_mask is not None:
            logits = logits.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else logits + attn_mask
        probs = logits.softmax(dim=-1)
        return probs @ v, probs


class GlimpserBlock(nn.Module):
    """TimeSformer divided space-time block that may keep only ``keep`` patches per frame.

    Modifications over TimeSformer's ``Block`` (official ``glimpser_helpers.GlimpserBlock``):
    - with ``keep < S`` the spatial attention returns its probabilities; each frame keeps the
      ``keep`` patches its (frame-replicated) CLS query attends to most, averaged over heads
      (``topk``, sorted by score), taken from the residual stream after both attentions;
    - quirk reproduced: when pruning, the new CLS is the frame-averaged CLS attention output only,
      *without* the CLS residual; the MLP residual then applies normally.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, eps: float, keep: int,
                 drop_path: float = 0.0, fused: bool = True):
        super().__init__()
        self.keep = keep  # patches kept per frame (== S: no pruning)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, fused)
        self.temporal_norm1 = nn.LayerNorm(dim, eps=eps)
        self.temporal_attn = Attention(dim, num_heads, fused)
        self.temporal_fc = nn.Linear(dim, dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = BlockMlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)

    def prunes(self, tokens_per_frame: int) -> bool:
        return self.keep < tokens_per_frame

    def forward(self, x: torch.Tensor, frames: int) -> tp.Tuple[torch.Tensor, tp.Optional[torch.Tensor]]:
        """x [B, 1 + S*T, C] -> (x [B, 1 + keep*T, C], kept patch indices [B, T, keep] or None)."""
        B, N, C = x.shape
        T, S = frames, (N - 1) // frames
        cls, patches = x[:, :1], x[:, 1:]
        res = self.temporal_attn(self.temporal_norm1(patches.reshape(B * S, T, C)))[0]
        xt = patches + self.temporal_fc(self.drop_path(res).reshape(B, S * T, C))

        per_frame = xt.reshape(B, S, T, C).transpose(1, 2).reshape(B * T, S, C)
        xs = torch.cat((cls.expand(B, T, C).reshape(B * T, 1, C), per_frame), dim=1)
        prune = self.prunes(S)
        res, probs = self.attn(self.norm1(xs), need_probs=prune)
        res = self.drop_path(res)
        cls_res = res[:, 0].reshape(B, T, C).mean(dim=1, keepdim=True)
        patch_res = res[:, 1:].reshape(B, T, S, C).transpose(1, 2).reshape(B, S * T, C)
        idx = None
        if not prune:
            x = torch.cat((cls, xt), dim=1) + torch.cat((cls_res, patch_res), dim=1)
        else:
            with reduction_region("glimpser/topk_gather"):
                score = probs[:, :, 0, 1:].mean(dim=1)  # [B*T, S]
                idx = torch.topk(score, self.keep, dim=1, largest=True, sorted=True).indices
                stream = (xt + patch_res).reshape(B, S, T, C).transpose(1, 2).reshape(B * T, S, C)
                kept = torch.gather(stream, 1, idx.unsqueeze(-1).expand(-1, -1, C))
                kept = kept.reshape(B, T, self.keep, C).transpose(1, 2).reshape(B, self.keep * T, C)
                x = torch.cat((cls_res, kept), dim=1)  # the official CLS-residual quirk
                idx = idx.reshape(B, T, self.keep)
        x = add_residual(self.drop_path(self.mlp(self.norm2(x))), x)
        return x, idx


class JointHaltBlock(nn.Module):
    """Pre-norm joint space-time block that also returns the halting score of every token.

    ``h = sigmoid(halt_scale * y[..., 0] - halt_center)`` from channel 0 of the block output y.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, eps: float, halt_scale: float,
                 halt_center: float, drop_path: float = 0.0, fused: bool = True):
        super().__init__()
        self.halt_scale, self.halt_center = halt_scale, halt_center
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, fused)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = BlockMlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, x: torch.Tensor, attn_mask: tp.Optional[torch.Tensor] = None,
                lengths: tp.Optional[tp.Sequence[int]] = None, halted_counts: tp.Optional[torch.Tensor] = None
                ) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """``attn_mask`` hides padded keys of a padded batch; ``lengths``: ``x`` [1, N, C] holds
        sequences of these lengths one after the other (``Attention.forward_varlen``);
        ``halted_counts`` [B]: halted tokens removed from each clip, attended to as the official
        batch's zero vectors (one shared key, weighted by the count)."""
        halted = None
        if halted_counts is not None:
            # a zero vector leaves LayerNorm as its bias: every halted token has the same key and value
            halted = Halted(self.norm1(x.new_zeros(1, x.shape[-1])), halted_counts.to(x.dtype).log())
        if lengths is not None:
            x = x + self.drop_path(self.attn.forward_varlen(self.norm1(x), lengths, halted))
        else:
            x = x + self.drop_path(self.attn(self.norm1(x), attn_mask=attn_mask, halted=halted)[0])
        x = add_residual(self.drop_path(self.mlp(self.norm2(x))), x)
        return x, torch.sigmoid(x[..., 0] * self.halt_scale - self.halt_center)
