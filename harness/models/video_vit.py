"""VideoMAE-style joint space-time ViT (Tong et al., NeurIPS'22; MCG-NJU/VideoMAE modeling_finetune).

Tubelet Conv3d embedding, fixed 1-D sinusoid positions over the time-major token index, no CLS
token, pre-norm blocks with q/v biases, mean pool + fc_norm + head. Built on timm's ``Mlp``; the
attention is ours because it must return probabilities or head-averaged keys on demand and take an
additive bias, while using the fused kernel (``scaled_dot_product_attention``) whenever it can.
Token reduction plugs in through ``harness.models.reduction.TokenReducer``.
"""
from __future__ import annotations

import dataclasses
import typing as tp

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.models.timm_import import import_timm
from harness.measure.regions import reduction_region
from harness.models.presets import VideoViTConfig
from harness.models.reduction import AttentionOutput, TokenReducer, TokenState

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
    """Multi-head self-attention with VideoMAE's separate q/v biases (the k bias is zero)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, fused: bool = True):
        super().__init__()
        self.fused = fused  # False: always the explicit softmax path (bit-compatible with the official models)
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.v_bias = None
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, bias: tp.Optional[torch.Tensor] = None,
                needs: tp.FrozenSet[str] = frozenset()) -> AttentionOutput:
        B, N, C = x.shape
        qkv_bias = None
        if self.q_bias is not None:
            qkv_bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, qkv_bias).reshape(B, N, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
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


class Block(nn.Module):
    """Pre-norm transformer block with the reducer's two hook points."""

    def __init__(self, cfg: VideoViTConfig):
        super().__init__()
        dim = cfg.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn = Attention(dim, cfg.num_heads, qkv_bias=cfg.qkv_bias, fused=cfg.fused_attention)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio), act_layer=nn.GELU)

    def forward(self, x: torch.Tensor, layer: int, reducer: TokenReducer, state: TokenState,
                stats: "ForwardStats") -> tp.Tuple[torch.Tensor, TokenState]:
        needs = reducer.attention_needs(layer)
        stats.tokens_in.append(x.shape[1])
        stats.attention_kernel.append("sdpa" if self.attn.fused and "probs" not in needs else "explicit")
        with reduction_region(f"block{layer}/attention_bias"):
            bias = reducer.attention_bias(layer, state)
        a = self.attn(self.norm1(x), bias=bias, needs=needs)
        x = x + a.out
        with reduction_region(f"block{layer}/after_attention"):
            x, state = reducer.after_attention(layer, x, state, a)
        stats.tokens_mlp.append(x.shape[1])
        x = x + self.mlp(self.norm2(x))
        with reduction_region(f"block{layer}/after_block"):
            return reducer.after_block(layer, x, state, a)


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
        self.patch_embed = TubeletEmbed(cfg)
        self.register_buffer("pos_embed", sinusoid_table(cfg.num_tokens, cfg.embed_dim), persistent=False)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.depth)])
        fc_eps = cfg.norm_eps if cfg.fc_norm_eps is None else cfg.fc_norm_eps
        self.fc_norm = nn.LayerNorm(cfg.embed_dim, eps=fc_eps)
        self.head = nn.Linear(cfg.embed_dim, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self.reducer = reducer if reducer is not None else TokenReducer(
            depth=cfg.depth, num_heads=cfg.num_heads, embed_dim=cfg.embed_dim)
        self.reducer.bind(cfg)
        self.last_stats = ForwardStats()
        self.checkpoint_layout: tp.Optional[str] = None  # set by load_checkpoint
        self.class_names: tp.Optional[tp.List[str]] = None  # set by load_checkpoint from an HF id2label
        self.apply(_init_weights)

    @property
    def token_counts(self) -> tp.List[int]:
        """Tokens entering each block on the last forward."""
        return list(self.last_stats.tokens_in)

    def forward_features(self, clip: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(clip)
        if x.shape[1] != self.pos_embed.shape[1]:
            raise ValueError(
                f"clip {tuple(clip.shape)} gives {x.shape[1]} tokens but the model was built for "
                f"{self.pos_embed.shape[1]} ({self.cfg.num_frames} frames of {self.cfg.img_size}px)")
        x = x + self.pos_embed.to(dtype=x.dtype)
        stats = ForwardStats()
        state = self.reducer.init_state(x)
        for layer, block in enumerate(self.blocks):
            x, state = block(x, layer, self.reducer, state, stats)
        stats.tokens_out = x.shape[1]
        self.last_stats = stats
        return self.fc_norm(self.reducer.pool(x, state))

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(clip))

    # --- the harness protocol (harness/models/protocol.py) ---
    def describe(self) -> dict:
        return self.reducer.describe()

    def view_macs(self):
        from harness.measure.flops import count_macs

        stats = self.last_stats
        return count_macs(self.cfg, stats.tokens_in, stats.tokens_mlp, self.reducer.overhead_macs)

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
