"""Video ViTs of the registered families (``harness.models.families``), one pre-norm block stack each.

- ``videomae`` (Tong et al., NeurIPS'22; MCG-NJU/VideoMAE modeling_finetune): tubelet Conv3d embedding,
  fixed 1-D sinusoid positions over the time-major token index, no CLS token, q/v biases, mean pool +
  fc_norm + head.
- ``vivit`` (transformers ``VivitForVideoClassification``): the same joint blocks with full qkv biases and
  a CLS token, learned positions (CLS included), final LayerNorm and the head on the CLS token.
- ``timesformer`` (transformers ``TimesformerForVideoClassification``, divided space-time): per-frame
  patch embedding (a Conv3d with tubelet 1), learned space positions added per frame plus a learned time
  embedding, tokens in patch-major order ``(h w t)``; each block runs temporal attention per patch
  position, then spatial attention per frame with the CLS token copied into every frame and averaged
  back, then the MLP; final LayerNorm, head on the CLS token.
- ``vjepa2`` (transformers ``VJEPA2ForVideoClassification``): tubelet Conv3d embedding, no CLS token and
  nothing added to the tokens; 3-D rotary positions inside every attention (``Rope3d``: q and k rotated,
  v not); full qkv biases; final LayerNorm, then the attentive probe (``AttentiveProbe``: self-attention
  blocks, one learned query cross-attending to the tokens, an MLP) and the head.

Built on timm's ``Mlp``; the attention is ours because it must return probabilities or head-averaged keys
on demand and take an additive bias, while using the fused kernel (``scaled_dot_product_attention``)
whenever it can. Token reduction plugs in through ``harness.models.reduction.TokenReducer``; what a
reducer is handed follows the family's ``TokenLayout`` (under divided attention: the patch tokens of
each frame, frames folded into the batch).
"""
from __future__ import annotations

import dataclasses
import typing as tp

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.models import families
from harness.models.timm_import import import_timm
from harness.measure.regions import reduction_region
from harness.models.presets import PROBE_MLP_RATIO, TokenLayout, VideoViTConfig
from harness.models.reduction import AttentionOutput, TokenReducer, TokenState, proportional_attention_bias

import_timm()
from timm.layers import Mlp  # noqa: E402  (after the torchvision fix)


def sinusoid_table(num_positions: int, dim: int) -> torch.Tensor:
    """[1, P, C] with pe[p, 2i] = sin(p / 10000^(2i/C)), pe[p, 2i+1] = cos(...), computed in float64."""
    pos = np.arange(num_positions, dtype=np.float64)[:, None]
    j = np.arange(dim)
    angles = pos / np.power(10000.0, 2 * (j // 2) / dim)
    table = np.where(j % 2 == 0, np.sin(angles), np.cos(angles))
    return torch.tensor(table, dtype=torch.float32).unsqueeze(0)  # follows a device context


class TubeletEmbed(nn.Module):
    """[B, 3, T, H, W] -> [B, N, C], tokens in time-major order t'*H'*W' + h*W' + w."""

    def __init__(self, cfg: VideoViTConfig):
        super().__init__()
        kernel = (cfg.tubelet_size, cfg.patch_size, cfg.patch_size)
        self.proj = nn.Conv3d(cfg.in_chans, cfg.embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        # contiguous: a transposed view would pass its layout on through every residual add, and each
        # LayerNorm and linear would then copy its input
        return self.proj(clip).flatten(2).transpose(1, 2).contiguous()


class Attention(nn.Module):
    """Multi-head self-attention. ``bias``: "qv" = VideoMAE's separate q/v biases (the k bias is zero),
    "qkv" = one bias on the stacked projection (ViViT, TimeSformer), None = no bias."""

    def __init__(self, dim: int, num_heads: int, bias: tp.Optional[str] = "qv", fused: bool = True):
        super().__init__()
        self.fused = fused  # False: always the explicit softmax path (bit-compatible with the official models)
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=bias == "qkv")
        if bias == "qv":
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.v_bias = None
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, bias: tp.Optional[torch.Tensor] = None,
                needs: tp.FrozenSet[str] = frozenset(), rope: tp.Optional["RopeTables"] = None) -> AttentionOutput:
        B, N, C = x.shape
        qkv_bias = self.qkv.bias
        if self.q_bias is not None:
            qkv_bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, qkv_bias).reshape(B, N, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if rope is not None:  # V-JEPA 2: queries and keys rotated by each token's (t, h, w)
            q, k = rope.rotate(q), rope.rotate(k)
        probs = None
        if "probs" in needs or not self.fused:
            logits = (q * self.scale) @ k.transpose(-2, -1)
            weights = logits.softmax(dim=-1)
            if "probs" in needs:
                probs = weights
            out = (weights if bias is None else (logits + bias).softmax(dim=-1)) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        out = self.proj(out.transpose(1, 2).reshape(B, N, C))
        keys = k.mean(dim=1) if "keys" in needs else None
        return AttentionOutput(out=out, probs=probs, keys=keys)


class FastGELU(nn.Module):
    """transformers' ``gelu_fast`` (FastGELUActivation), its constants as written there (ViViT's MLP)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))

    @staticmethod
    def inplace(x: torch.Tensor) -> torch.Tensor:
        """``forward``'s operations in its order (the same numbers) into two buffers and ``x`` itself,
        which it overwrites (no autograd)."""
        inner = (x * 0.044715).mul_(x).add_(1.0)
        outer = (x * 0.7978845608).mul_(inner).tanh_().add_(1.0)
        return x.mul_(0.5).mul_(outer)


def attention_bias_kind(cfg: VideoViTConfig) -> tp.Optional[str]:
    if not cfg.qkv_bias:
        return None
    return families.get_family(cfg.family).biases


class BlockMlp(Mlp):
    """timm's ``Mlp`` (same parameters, same numbers). Without autograd the activation (GELU, or ViViT's
    ``FastGELU``) overwrites fc1's output instead of allocating buffers of the 4x-wide hidden size (its
    backward would need that input, so with autograd it runs as usual)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1(x)
        if torch.is_grad_enabled():
            x = self.act(x)
        elif type(self.act) is nn.GELU:
            x = torch.ops.aten.gelu_(x, approximate=self.act.approximate)
        elif type(self.act) is FastGELU:
            x = FastGELU.inplace(x)
        else:
            x = self.act(x)
        return self.drop2(self.fc2(self.norm(self.drop1(x))))


def make_mlp(cfg: VideoViTConfig, ratio: tp.Optional[float] = None) -> nn.Module:
    ratio = cfg.mlp_ratio if ratio is None else ratio
    return BlockMlp(cfg.embed_dim, int(cfg.embed_dim * ratio),
                    act_layer=FastGELU if cfg.act == "gelu_fast" else nn.GELU)


class Block(nn.Module):
    """Pre-norm transformer block (joint attention) with the reducer's two hook points."""

    def __init__(self, cfg: VideoViTConfig):
        super().__init__()
        dim = cfg.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn = Attention(dim, cfg.num_heads, bias=attention_bias_kind(cfg), fused=cfg.fused_attention)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.mlp = make_mlp(cfg)

    def forward(self, x: torch.Tensor, layer: int, reducer: TokenReducer, state: TokenState,
                stats: "ForwardStats", rope: tp.Optional["RopeTables"] = None) -> tp.Tuple[torch.Tensor, TokenState]:
        needs = reducer.attention_needs(layer)
        stats.tokens_in.append(x.shape[1])
        stats.attention_kernel.append("sdpa" if self.attn.fused and "probs" not in needs else "explicit")
        with reduction_region(f"block{layer}/attention_bias"):
            bias = reducer.attention_bias(layer, state)
        a = self.attn(self.norm1(x), bias=bias, needs=needs, rope=rope)
        x = x + a.out
        with reduction_region(f"block{layer}/after_attention"):
            x, state = reducer.after_attention(layer, x, state, a)
        stats.tokens_mlp.append(x.shape[1])
        x = add_residual(self.mlp(self.norm2(x)), x)
        with reduction_region(f"block{layer}/after_block"):
            return reducer.after_block(layer, x, state, a)


def add_residual(branch: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``x + branch``; without autograd written into ``branch`` (a fresh tensor no one else holds) instead
    of a new buffer, where that gives the same tensor (same dtype -- autocast may differ -- and shape; a
    contiguous branch, so no broadcast view)."""
    if (torch.is_grad_enabled() or branch.dtype != x.dtype or branch.shape != x.shape
            or not branch.is_contiguous()):
        return x + branch
    return branch.add_(x)


class DividedBlock(nn.Module):
    """TimeSformer's divided space-time block (transformers ``TimesformerLayer``, ``divided_space_time``).

    Temporal attention over the T tokens of each patch position (+ ``temporal_fc``), then spatial
    attention over each frame's patch tokens with the CLS token copied into every frame (its outputs
    averaged over frames), then the MLP. The reducer is handed each frame's patch tokens, frames folded
    into the batch ([B*T, P, C]; the CLS token stays with the block), after both attention residuals and
    before the MLP, with the spatial attention's keys/probabilities without the CLS token -- so a method
    keeps the (patch, time) grid aligned by acting on every frame alike (Pollard & Wray's per-frame
    ToMe). A proportional-attention bias from the reducer ([B*T, 1, 1, P]) is added to the patch rows and
    columns of the spatial logits only, as Pollard & Wray do; temporal attention is never biased.
    """

    def __init__(self, cfg: VideoViTConfig):
        super().__init__()
        dim, bias = cfg.embed_dim, attention_bias_kind(cfg)
        self.frames = cfg.grid[0]
        self.norm_t = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn_t = Attention(dim, cfg.num_heads, bias=bias, fused=cfg.fused_attention)
        self.temporal_fc = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn = Attention(dim, cfg.num_heads, bias=bias, fused=cfg.fused_attention)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.mlp = make_mlp(cfg)

    def forward(self, x: torch.Tensor, layer: int, reducer: TokenReducer, state: TokenState,
                stats: "ForwardStats") -> tp.Tuple[torch.Tensor, TokenState]:
        B, N, C = x.shape
        T = self.frames
        P = (N - 1) // T  # patch tokens per frame, order (p t)
        needs = reducer.attention_needs(layer)
        stats.tokens_in.append(N)
        stats.attention_kernel.append("sdpa" if self.attn.fused and "probs" not in needs else "explicit")
        cls, patches = x[:, :1], x[:, 1:]
        xt = patches.reshape(B * P, T, C)
        res_t = self.attn_t(self.norm_t(xt)).out.reshape(B, P * T, C)
        patches = patches + self.temporal_fc(res_t)
        xs = patches.reshape(B, P, T, C).transpose(1, 2).reshape(B * T, P, C)
        xs = torch.cat((cls.repeat_interleave(T, dim=0), xs), dim=1)
        with reduction_region(f"block{layer}/attention_bias"):
            bias = reducer.attention_bias(layer, state)
            if bias is not None:  # keys (and queries) of the patch tokens only
                bias = F.pad(bias.expand(-1, -1, P, -1), (1, 0, 1, 0)).to(xs.dtype)
        a = self.attn(self.norm1(xs), bias=bias, needs=needs)
        res_cls = a.out[:, :1].reshape(B, T, C).mean(dim=1, keepdim=True)
        res_s = a.out[:, 1:].reshape(B, T, P, C).transpose(1, 2).reshape(B, P * T, C)
        cls, patches = cls + res_cls, patches + res_s
        frames = patches.reshape(B, P, T, C).transpose(1, 2).reshape(B * T, P, C)
        spatial = AttentionOutput(out=a.out[:, 1:],
                                  probs=None if a.probs is None else a.probs[:, :, 1:, 1:],
                                  keys=None if a.keys is None else a.keys[:, 1:])
        with reduction_region(f"block{layer}/after_attention"):
            frames, state = reducer.after_attention(layer, frames, state, spatial)
        x = torch.cat((cls, _frames_to_tokens(frames, B, T)), dim=1)
        stats.tokens_mlp.append(x.shape[1])
        x = add_residual(self.mlp(self.norm2(x)), x)
        if type(reducer).after_block is TokenReducer.after_block:
            return x, state
        frames = x[:, 1:].reshape(B, -1, T, C).transpose(1, 2).reshape(B * T, -1, C)
        with reduction_region(f"block{layer}/after_block"):
            frames, state = reducer.after_block(layer, frames, state, spatial)
        return torch.cat((x[:, :1], _frames_to_tokens(frames, B, T)), dim=1), state


def _frames_to_tokens(frames: torch.Tensor, batch: int, num_frames: int) -> torch.Tensor:
    """[B*T, P, C] per-frame tokens -> [B, P*T, C] in (p t) order."""
    _, p, c = frames.shape
    return frames.reshape(batch, num_frames, p, c).transpose(1, 2).reshape(batch, p * num_frames, c)


def grid_positions(grid: tp.Tuple[int, int, int]) -> torch.Tensor:
    """[T'H'W', 3] (t, h, w) of each patch token in time-major order, float32 (follows a device context)."""
    t, h, w = grid
    axes = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([a.reshape(-1) for a in axes], dim=-1).to(torch.float32)


def rope_axis_dim(head_dim: int) -> int:
    """Channels of a head each rotary axis (t, h, w) takes: the even number nearest below head_dim / 3
    (transformers ``VJEPA2RopeAttention.d_dim``); the channels left over are not rotated."""
    return 2 * ((head_dim // 3) // 2)


@dataclasses.dataclass
class RopeTables:
    """V-JEPA 2's 3-D rotary embedding for one set of token positions (transformers
    ``VJEPA2RopeAttention.apply_rotary_embeddings`` / ``rotate_queries_or_keys``).

    The head's channels are split into three consecutive chunks of ``rope_axis_dim`` channels for t, h and
    w (the remainder stays as it is). In a chunk of d channels, channel pair (2i, 2i+1) is rotated, but
    the angle of channel j is ``pos * 10000^-(j mod d/2) / (d/2)`` -- the frequencies are tiled, not
    interleaved, exactly as the official code does. Positions may be fractional (merged tokens).
    """

    cos: tp.Tuple[torch.Tensor, ...]  # per axis [B or 1, 1, N, d]
    sin: tp.Tuple[torch.Tensor, ...]
    dim: int  # channels per axis

    @classmethod
    def build(cls, positions: torch.Tensor, head_dim: int) -> "RopeTables":
        """``positions``: [N, 3] or [B, N, 3] (t, h, w) per token."""
        d = rope_axis_dim(head_dim)
        if positions.dim() == 2:
            positions = positions[None]
        omega = torch.arange(d // 2, dtype=positions.dtype, device=positions.device)
        omega = omega / (d / 2.0)
        omega = 1.0 / 10000 ** omega
        cos, sin = [], []
        for axis in range(3):
            freq = positions[..., axis, None] * omega  # [B, N, d/2]
            cos.append(freq.cos().repeat(1, 1, 2)[:, None])
            sin.append(freq.sin().repeat(1, 1, 2)[:, None])
        return cls(tuple(cos), tuple(sin), d)

    def rotate(self, x: torch.Tensor) -> torch.Tensor:
        """[B, H, N, D] queries or keys -> the same, rotated."""
        d = self.dim
        parts = []
        for axis in range(3):
            chunk = x[..., axis * d:(axis + 1) * d]
            pairs = chunk.unflatten(-1, (-1, 2))
            turned = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
            parts.append(chunk * self.cos[axis].to(x.dtype) + turned * self.sin[axis].to(x.dtype))
        if 3 * d < x.shape[-1]:
            parts.append(x[..., 3 * d:])
        return torch.cat(parts, dim=-1)


class ProbeBlock(nn.Module):
    """A self-attention layer of V-JEPA 2's attentive probe (``VJEPA2PoolerSelfAttentionLayer``): pre-norm
    attention (no positions) and MLP."""

    def __init__(self, cfg: VideoViTConfig):
        super().__init__()
        dim = cfg.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn = Attention(dim, cfg.num_heads, bias="qkv", fused=cfg.fused_attention)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.mlp = make_mlp(cfg, PROBE_MLP_RATIO)

    def forward(self, x: torch.Tensor, bias: tp.Optional[torch.Tensor]) -> torch.Tensor:
        x = add_residual(self.attn(self.norm1(x), bias=bias).out, x)
        return add_residual(self.mlp(self.norm2(x)), x)


class ProbeCrossAttention(nn.Module):
    """The probe's cross-attention (``VJEPA2PoolerCrossAttention``): queries from the learned query token,
    keys and values from the tokens; no output projection."""

    def __init__(self, dim: int, num_heads: int, fused: bool = True):
        super().__init__()
        self.num_heads, self.head_dim, self.fused = num_heads, dim // num_heads, fused
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)

    def project_query(self, query: torch.Tensor) -> torch.Tensor:
        """The query projection, called apart: its input is a parameter (module hooks, e.g. torch's
        FlopCounterMode, cannot take a parameter's view made under inference mode as a module input)."""
        return F.linear(query, self.q.weight, self.q.bias)

    def forward(self, q: torch.Tensor, x: torch.Tensor, bias: tp.Optional[torch.Tensor]) -> torch.Tensor:
        """``q`` [1 or B, L, C] projected queries (``project_query``), ``x`` [B, N, C] -> [B, L, C]."""
        B, N, C = x.shape
        L = q.shape[1]
        q = q.expand(B, -1, -1).reshape(B, L, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k(x).reshape(B, N, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.v(x).reshape(B, N, self.num_heads, self.head_dim).transpose(1, 2)
        if self.fused:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        else:
            logits = (q * self.head_dim ** -0.5) @ k.transpose(-2, -1)
            out = (logits if bias is None else logits + bias).softmax(dim=-1) @ v
        return out.transpose(1, 2).reshape(B, L, C)


class AttentiveProbe(nn.Module):
    """V-JEPA 2's attentive probe (transformers ``VJEPA2AttentivePooler``): ``probe_layers`` self-attention
    layers over the tokens, then one learned query token cross-attends to them (keys normed, the query
    not), plus an MLP; [B, N, C] -> [B, C].

    Merged tokens (the rule of this harness): when the reducer tracks sizes (``TokenState.size``, the
    input patches each token stands for), ``log(size)`` is added to the key logits of every probe
    attention -- its self-attention layers and its cross-attention -- as ToMe's proportional attention
    does, so a token standing for k patches weighs as k identical tokens would (exactly so for k equal
    tokens); this is the probe's counterpart of the size-weighted mean pool of the mean-pooled families.
    Pruned tokens simply are not there; without sizes the probe runs as in transformers.
    """

    def __init__(self, cfg: VideoViTConfig):
        super().__init__()
        dim = cfg.embed_dim
        self.query_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList([ProbeBlock(cfg) for _ in range(cfg.probe_layers)])
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.cross = ProbeCrossAttention(dim, cfg.num_heads, fused=cfg.fused_attention)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.mlp = make_mlp(cfg, PROBE_MLP_RATIO)

    def forward(self, x: torch.Tensor, size: tp.Optional[torch.Tensor] = None) -> torch.Tensor:
        bias = proportional_attention_bias(size)
        if bias is not None:
            bias = bias.to(x.dtype)
        for block in self.blocks:
            x = block(x, bias)
        query = self.query_token  # [1, 1, C]: projected once, shared by the batch
        out = query + self.cross(self.cross.project_query(query), self.norm1(x), bias)
        out = add_residual(self.mlp(self.norm2(out)), out)
        return out[:, 0]


@dataclasses.dataclass
class ForwardStats:
    """What the last forward did, block by block (token counts are per sample, shared by the batch)."""

    tokens_in: tp.List[int] = dataclasses.field(default_factory=list)  # tokens entering each block
    tokens_mlp: tp.List[int] = dataclasses.field(default_factory=list)  # tokens entering each MLP
    attention_kernel: tp.List[str] = dataclasses.field(default_factory=list)  # "sdpa" | "explicit"
    tokens_out: int = 0  # tokens after the last block (pooled)
    # adaptive methods only: tokens each sample really needed entering each block, [B][L]
    tokens_per_sample: tp.Optional[tp.List[tp.List[int]]] = None


class VideoViT(nn.Module):
    def __init__(self, cfg: VideoViTConfig, reducer: tp.Optional[TokenReducer] = None):
        super().__init__()
        self.cfg = cfg
        self.layout: TokenLayout = cfg.layout
        dim = cfg.embed_dim
        self.patch_embed = TubeletEmbed(cfg)
        if self.layout.cls_tokens:
            self.cls_token = nn.Parameter(torch.zeros(1, self.layout.cls_tokens, dim))
        if self.layout.position == "sinusoid":
            self.register_buffer("pos_embed", sinusoid_table(cfg.num_tokens, dim), persistent=False)
        elif self.layout.position == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, self.layout.cls_tokens + cfg.num_tokens, dim))
        elif self.layout.position == "learned_space_time":  # per frame: CLS + H'W' positions; per patch: T' times
            t, h, w = cfg.grid
            self.pos_embed = nn.Parameter(torch.zeros(1, 1 + h * w, dim))
            self.time_embed = nn.Parameter(torch.zeros(1, t, dim))
        elif self.layout.position == "rope3d":  # (t, h, w) of each input patch; rotations inside attention
            self.register_buffer("rope_grid", grid_positions(cfg.grid), persistent=False)
        block = DividedBlock if self.layout.attention == "divided" else Block
        self.blocks = nn.ModuleList([block(cfg) for _ in range(cfg.depth)])
        if self.layout.pooling == "mean":
            fc_eps = cfg.norm_eps if cfg.fc_norm_eps is None else cfg.fc_norm_eps
            self.fc_norm = nn.LayerNorm(dim, eps=fc_eps)
        else:
            self.norm = nn.LayerNorm(dim, eps=cfg.norm_eps)
        if self.layout.pooling == "attentive":
            self.probe = AttentiveProbe(cfg)
        self.head = nn.Linear(dim, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self.reducer = reducer if reducer is not None else TokenReducer(
            depth=cfg.depth, num_heads=cfg.num_heads, embed_dim=dim)
        self.reducer.layout = self.layout
        if self.layout.position == "rope3d" and type(self.reducer) is not TokenReducer:
            self.reducer.track_source = True  # every remaining token's patches give its rotary position
        self.reducer.bind(cfg)
        self.last_stats = ForwardStats()
        self.checkpoint_layout: tp.Optional[str] = None  # set by load_checkpoint
        self.class_names: tp.Optional[tp.List[str]] = None  # set by load_checkpoint from an HF id2label
        self.apply(_init_weights)

    @property
    def token_counts(self) -> tp.List[int]:
        """Tokens entering each block on the last forward."""
        return list(self.last_stats.tokens_in)

    def embed(self, clip: torch.Tensor) -> torch.Tensor:
        """[B, 3, T, H, W] -> [B, cls + N, C]: tokens with their positions, in the layout's order."""
        x = self.patch_embed(clip)
        position = self.layout.position
        expected = (self.pos_embed.shape[1] if position == "sinusoid" else
                    self.rope_grid.shape[0] if position == "rope3d" else self.cfg.num_tokens)
        if x.shape[1] != expected:
            raise ValueError(
                f"clip {tuple(clip.shape)} gives {x.shape[1]} tokens but the model was built for "
                f"{expected} ({self.cfg.num_frames} frames of {self.cfg.img_size}px)")
        if position == "sinusoid":
            return x + self.pos_embed.to(dtype=x.dtype)
        if position == "rope3d":
            return x  # positions enter every attention (``rope_tables``)
        B, _, C = x.shape
        cls = self.cls_token.expand(B, -1, -1) if self.layout.cls_tokens else x[:, :0]
        if position == "learned":
            return torch.cat((cls, x), dim=1) + self.pos_embed.to(dtype=x.dtype)
        if position == "learned_space_time":  # transformers' TimesformerEmbeddings, in its order of adds
            t, h, w = self.cfg.grid
            pos = self.pos_embed.to(dtype=x.dtype)
            patches = (x.reshape(B, t, h * w, C) + pos[:, None, 1:]).transpose(1, 2)  # [B, h*w, t, C]
            patches = (patches + self.time_embed.to(dtype=x.dtype)).reshape(B, h * w * t, C)
            return torch.cat((cls + pos[:, :1], patches), dim=1)
        return torch.cat((cls, x), dim=1)

    def forward_features(self, clip: torch.Tensor) -> torch.Tensor:
        x = self.embed(clip)
        stats = ForwardStats()
        state = self.reducer.init_state(x)
        rope = self.layout.position == "rope3d"
        dense_rope = self.rope_tables(x, state) if rope else None
        for layer, block in enumerate(self.blocks):
            if rope:
                tables = dense_rope if x.shape[1] == self.rope_grid.shape[0] else self.rope_tables(x, state)
                x, state = block(x, layer, self.reducer, state, stats, rope=tables)
            else:
                x, state = block(x, layer, self.reducer, state, stats)
        stats.tokens_out = x.shape[1]
        self.last_stats = stats
        if self.layout.pooling == "mean":
            return self.fc_norm(self.reducer.pool(x, state))
        if self.layout.pooling == "attentive":
            return self.probe(self.norm(x), state.size)
        return self.norm(x)[:, 0]

    def token_positions(self, x: torch.Tensor, state: TokenState) -> torch.Tensor:
        """(t, h, w) of each token of ``x``: [N0, 3] or [B, N, 3].

        The rule: a token's position is the mean (t, h, w) of the input patches it stands for, read from
        the reducer's membership matrix ``TokenState.source`` [B, N, N0] as
        ``(source @ grid) / source.sum(-1)``. A kept (pruned-around) token thus keeps exactly its own
        position and rotation; a merged token gets the centroid of its patches (fractional rotary
        positions are well defined). While the token count is the input's (dense, or before any
        reduction) the grid itself is used, with no matmul; the matmul (N x N0 x 3 MACs) is counted in
        the block's overhead GMACs (``harness.measure.flops.count_macs``).
        """
        grid = self.rope_grid
        if x.shape[1] == grid.shape[0]:
            return grid.to(torch.float64 if x.dtype == torch.float64 else torch.float32)
        if state.source is None:
            raise RuntimeError(
                f"{type(self.reducer).__name__} changed the token count ({grid.shape[0]} -> {x.shape[1]}) "
                "without keeping TokenState.source; a rope3d model needs the input patches of every token")
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        source = state.source.to(dtype)
        return (source @ grid.to(dtype)) / source.sum(dim=-1, keepdim=True)

    def rope_tables(self, x: torch.Tensor, state: TokenState) -> RopeTables:
        return RopeTables.build(self.token_positions(x, state), self.cfg.embed_dim // self.cfg.num_heads)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(clip))

    # --- the harness protocol (harness/models/protocol.py) ---
    def describe(self) -> dict:
        return self.reducer.describe()

    def view_macs(self):
        from harness.measure.flops import count_macs

        stats = self.last_stats
        return count_macs(self.cfg, stats.tokens_in, stats.tokens_mlp, self.reducer.overhead_macs,
                          tokens_out=stats.tokens_out)

    def sample_macs(self) -> tp.Optional[tp.List[float]]:
        return None  # token counts are the same for every clip of a batch

    def training_loss(self, batch: tp.Mapping[str, torch.Tensor]) -> tp.Tuple[torch.Tensor, dict]:
        """Cross-entropy (``batch["label_smoothing"]`` optional) plus the reducer's own losses, if any."""
        logits = self(batch["clips"])
        smoothing = float(batch.get("label_smoothing", 0.0))
        loss = F.cross_entropy(logits, batch["labels"], label_smoothing=smoothing)
        logs = {"ce": loss.item(), "top1": (logits.argmax(-1) == batch["labels"]).float().mean().item()}
        return loss, logs

    def load_checkpoint(self, path: str) -> str:
        from harness.models.checkpoint import load_checkpoint

        from harness.models import hf

        self.checkpoint_layout = load_checkpoint(self, path)
        if hf.is_hf_reference(path):
            self.class_names = hf.class_names(hf.read_config(path))
        return self.checkpoint_layout

    def init_from(self, path: str) -> dict:
        """Load a checkpoint of this backbone, leaving the reducer's own parameters (if any) new."""
        from harness.models.checkpoint import load_checkpoint

        return {"layout": load_checkpoint(self, path, allow_missing_prefix="reducer."),
                "new": sorted(k for k in self.state_dict() if k.startswith("reducer."))}


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
