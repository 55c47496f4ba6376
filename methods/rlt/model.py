"""The VideoViT fed Run-Length-Tokenized clips (our code; execution of rccchoudhury/rlt @ 69ec8b4,
``src/models/tokenizer.py`` + ``vit_helpers.py``).

    clip -> kept mask (``tokens.static_keep_mask``) -> the kept patches only are embedded (the tubelet
         Conv3d as a linear map) + the sinusoid position of each kept token (+ run-length embedding)
         -> the blocks -> mean over each clip's kept tokens -> fc_norm -> head

Two executions of the same numerics (``RLTParams.mode``):
- ``varlen`` (official): the kept tokens of all clips are concatenated into one sequence for the
  token-wise layers and attention runs per clip (the official code's xformers BlockDiagonalMask), so
  every clip computes exactly its own tokens (``view_macs`` = mean of ``sample_macs``);
- ``padded``: [B, max kept, C], shorter clips padded, padding hidden from attention as keys and left
  out of the pooling; every clip of a batch runs the batch's largest count.
"""
from __future__ import annotations

import dataclasses
import typing as tp

import torch
import torch.nn.functional as F
from torch import nn

from harness.measure.flops import MacsCount, count_macs
from harness.measure.regions import reduction_region
from harness.models.presets import VideoViTConfig
from harness.models.reduction import TokenReducer, TokenState
from harness.models.varlen import varlen_attention
from harness.models.video_vit import Block, ForwardStats, VideoViT
from methods.rlt import IMAGENET_STD, RLTParams
from methods.rlt.tokens import patchify, run_lengths, static_keep_mask


class RLTReducer(TokenReducer):
    """RLT's parameters (the optional run-length embedding) and the padded execution's hooks."""

    def bind(self, cfg: VideoViTConfig) -> None:
        self.length_embed: tp.Optional[nn.Parameter] = None
        if self.params.length_encoding:  # official: trunc_normal(0.02), one row per run length 1..T'
            self.length_embed = nn.Parameter(torch.empty(1, cfg.grid[0], cfg.embed_dim))
            nn.init.trunc_normal_(self.length_embed, std=0.02)

    def attention_bias(self, layer: int, state: TokenState) -> tp.Optional[torch.Tensor]:
        return state.extras.get("key_bias")  # [B, 1, 1, m]: 0 for tokens, -inf for padding

    def pool(self, x: torch.Tensor, state: TokenState) -> torch.Tensor:
        valid = state.extras.get("valid")
        if valid is None:
            return x.mean(dim=1)
        w = valid.to(x.dtype)[..., None]
        return (x * w).sum(dim=1) / w.sum(dim=1)

    def describe(self) -> dict:
        p = self.params
        return {"threshold": p.threshold, "mode": p.mode, "length_encoding": p.length_encoding,
                "input_std": list(p.input_std), "pixel_scale": "ImageNet-normalised (official)"}


class RLTViT(VideoViT):
    def __init__(self, cfg: VideoViTConfig, params: RLTParams):
        reducer = RLTReducer(params, depth=cfg.depth, num_heads=cfg.num_heads, embed_dim=cfg.embed_dim)
        super().__init__(cfg, reducer)
        self.params = params
        scale = None
        if tuple(params.input_std) != IMAGENET_STD:  # difference in official units = ours * std / std_ImageNet
            scale = torch.tensor([s / r for s, r in zip(params.input_std, IMAGENET_STD)], device="cpu")
        self.scale = scale
        self.last_keep: tp.Optional[torch.Tensor] = None  # [B, N] kept mask of the last forward
        self._counts: tp.Optional[tp.List[int]] = None  # kept tokens per clip of the last forward
        self._executed: int = cfg.num_tokens  # padded: tokens per clip each block ran on (the batch's max)
        self.varlen_impl = "auto"  # varlen mode's attention: harness.models.varlen (same numbers either way)

    def keep_mask(self, clip: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        return static_keep_mask(clip, self.params.threshold, cfg.tubelet_size, cfg.patch_size, self.scale)

    def forward_features(self, clip: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        expected = (cfg.in_chans, cfg.num_frames, cfg.img_size, cfg.img_size)
        if tuple(clip.shape[1:]) != expected:
            raise ValueError(f"clip {tuple(clip.shape)} does not have the backbone's input shape "
                             f"[B, {', '.join(map(str, expected))}]")
        with reduction_region("rlt/tokenize"):
            keep = self.keep_mask(clip)
            counts = keep.sum(dim=1)
            patches = patchify(clip, cfg.tubelet_size, cfg.patch_size)  # [B, N, D]
            lengths = run_lengths(keep, cfg.grid) if self.reducer.length_embed is not None else None
        stats = ForwardStats()
        if self.params.mode == "varlen":
            x = self._varlen(patches, keep, counts, lengths, stats)
        else:
            x = self._padded(patches, keep, counts, lengths, stats)
        count_list = [int(c) for c in counts.tolist()]
        stats.tokens_per_sample = [[c] * cfg.depth for c in count_list]
        self.last_stats, self.last_keep, self._counts = stats, keep, count_list
        return self.fc_norm(x)

    def _embed(self, patches: torch.Tensor, flat_index: torch.Tensor,
               lengths: tp.Optional[torch.Tensor]) -> torch.Tensor:
        """Embed the gathered patches [..., D] of flat token indices ``flat_index`` (b * N + n)."""
        proj = self.patch_embed.proj
        x = F.linear(patches, proj.weight.flatten(1), proj.bias)
        pos = self.pos_embed[0].index_select(0, flat_index.flatten() % self.cfg.num_tokens)
        x = x + pos.view(*flat_index.shape, -1).to(x.dtype)
        if lengths is not None:
            run = lengths.flatten().index_select(0, flat_index.flatten()).clamp(min=1) - 1
            x = x + self.reducer.length_embed[0].index_select(0, run).view(*flat_index.shape, -1).to(x.dtype)
        return x

    def _varlen(self, patches, keep, counts, lengths, stats: ForwardStats) -> torch.Tensor:
        B, N, D = patches.shape
        with reduction_region("rlt/pack"):
            idx = keep.view(-1).nonzero().view(-1)  # (clip, token) order
            x = self._embed(patches.reshape(B * N, D).index_select(0, idx), idx, lengths).unsqueeze(0)
            sizes = [int(c) for c in counts.tolist()]
        mean = sum(sizes) / len(sizes)
        for block in self.blocks:
            stats.tokens_in.append(mean)
            stats.tokens_mlp.append(mean)
            stats.attention_kernel.append("sdpa" if block.attn.fused else "explicit")
            x = varlen_block(block, x, sizes, self.varlen_impl)
        stats.tokens_out = mean
        return torch.stack([part.mean(dim=1)[0] for part in x.split(sizes, dim=1)])

    def _padded(self, patches, keep, counts, lengths, stats: ForwardStats) -> torch.Tensor:
        B, N, D = patches.shape
        with reduction_region("rlt/pack"):
            m = int(counts.max())
            order = torch.argsort((~keep).to(torch.uint8), dim=1, stable=True)[:, :m]  # kept first, in order
            valid = torch.arange(m, device=keep.device) < counts[:, None]
            gathered = torch.gather(patches, 1, order[..., None].expand(B, m, D))
            flat = order + torch.arange(B, device=order.device)[:, None] * N
            x = self._embed(gathered, flat, lengths)
            extras = {}
            if not bool(valid.all()):
                bias = torch.zeros(B, 1, 1, m, dtype=x.dtype, device=x.device)
                extras = {"valid": valid, "key_bias": bias.masked_fill(~valid[:, None, None, :], float("-inf"))}
        state = TokenState(extras=extras)
        for layer, block in enumerate(self.blocks):
            x, state = block(x, layer, self.reducer, state, stats)
        stats.tokens_out = m
        self._executed = m
        return self.reducer.pool(x, state)

    # --- the harness protocol (harness/models/protocol.py) ---
    def describe(self) -> dict:
        return {**self.reducer.describe(), "tokens_max": self.cfg.num_tokens,
                "tokens_always_kept": self.cfg.grid[1] * self.cfg.grid[2]}

    def clip_macs(self, tokens: int) -> MacsCount:
        """MACs of one clip with ``tokens`` kept tokens: each embedded once and run through every block."""
        cfg = self.cfg
        macs = count_macs(cfg, [tokens] * cfg.depth, [tokens] * cfg.depth)
        per_token = cfg.embed_dim * cfg.in_chans * cfg.tubelet_size * cfg.patch_size ** 2
        return dataclasses.replace(macs, patch_embed=tokens * per_token)

    def view_macs(self) -> MacsCount:
        """What one view executed on the last forward: varlen, the mean of the clips' own counts;
        padded, the batch's largest count; before any forward, every token (the upper bound)."""
        if self._counts is None:
            return self.clip_macs(self.cfg.num_tokens)
        if self.params.mode == "padded":
            return self.clip_macs(self._executed)
        return _mean_macs([self.clip_macs(c) for c in self._counts])

    def sample_macs(self) -> tp.Optional[tp.List[float]]:
        """Theoretical MACs of each clip of the last forward, from its own kept-token count."""
        if self._counts is None:
            return None
        return [float(self.clip_macs(c).total) for c in self._counts]


def varlen_block(block: Block, x: torch.Tensor, lengths: tp.Sequence[int], impl: str = "auto") -> torch.Tensor:
    """A VideoViT ``Block`` over ``x`` [1, sum(lengths), C] holding sequences of these lengths one after
    the other: token-wise layers once over all tokens, attention within each sequence."""
    x = x + vit_varlen_attention(block.attn, block.norm1(x), lengths, impl)
    return x + block.mlp(block.norm2(x))


def vit_varlen_attention(attn: nn.Module, x: torch.Tensor, lengths: tp.Sequence[int], impl: str = "auto") -> torch.Tensor:
    """``harness.models.video_vit.Attention`` (q/v biases, zero k bias) within each sequence."""
    _, n, c = x.shape
    bias = None
    if attn.q_bias is not None:
        bias = torch.cat((attn.q_bias, torch.zeros_like(attn.v_bias), attn.v_bias))
    q, k, v = F.linear(x, attn.qkv.weight, bias).reshape(n, 3, attn.num_heads, attn.head_dim).unbind(1)
    explicit = None if attn.fused else (lambda q, k, v: ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v)
    out = varlen_attention(q, k, v, lengths, impl=impl, explicit=explicit)  # [n, H, d]
    return attn.proj(out.reshape(1, n, c))


def _mean_macs(counts: tp.Sequence[MacsCount]) -> MacsCount:
    """Field-wise mean (rounded to whole MACs) of per-clip counts."""
    fields = ("patch_embed", "linear", "attention", "norm", "overhead", "head")
    means = {f: round(sum(getattr(c, f) for c in counts) / len(counts)) for f in fields}
    per_block = [round(sum(b) / len(counts)) for b in zip(*(c.per_block for c in counts))]
    return MacsCount(**means, per_block=per_block)


def build_rlt(cfg: VideoViTConfig, params: RLTParams) -> RLTViT:
    """``build_model``'s entry point for ``architecture="methods.rlt.model:build_rlt"``."""
    return RLTViT(cfg, params)
