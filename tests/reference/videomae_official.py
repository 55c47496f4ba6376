"""An independent reference of the official VideoMAE fine-tuning model (MCG-NJU/VideoMAE
modeling_finetune.py, VisionTransformer with use_mean_pooling=True), written for the tests from the
official semantics: explicit softmax attention, numpy sinusoid table kept outside the state dict,
official parameter names. It shares no code with ``harness.models``.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def official_sinusoid(n_position, d_hid):
    table = np.array([[pos / np.power(10000, 2 * (j // 2) / d_hid) for j in range(d_hid)]
                      for pos in range(n_position)])
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return torch.tensor(table, dtype=torch.float).unsqueeze(0)


class RefAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.randn(dim) * 0.02)
        self.v_bias = nn.Parameter(torch.randn(dim) * 0.02)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)).softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class RefMlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class RefBlock(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = RefAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = RefMlp(dim, 4 * dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class RefPatchEmbed(nn.Module):
    def __init__(self, dim, patch, tubelet):
        super().__init__()
        self.proj = nn.Conv3d(3, dim, (tubelet, patch, patch), (tubelet, patch, patch))

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class RefVideoMAE(nn.Module):
    def __init__(self, img_size, patch, tubelet, frames, dim, depth, heads, num_classes):
        super().__init__()
        self.patch_embed = RefPatchEmbed(dim, patch, tubelet)
        n = (img_size // patch) ** 2 * (frames // tubelet)
        self.pos_embed = official_sinusoid(n, dim)  # plain attribute: not in the state dict
        self.blocks = nn.ModuleList([RefBlock(dim, heads) for _ in range(depth)])
        self.fc_norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        with torch.no_grad():  # non-trivial norms so that a swapped key would show
            for m in self.modules():
                if isinstance(m, nn.LayerNorm):
                    m.weight.add_(torch.randn_like(m.weight) * 0.1)
                    m.bias.add_(torch.randn_like(m.bias) * 0.1)

    def forward(self, x):
        x = self.patch_embed(x)
        x = x + self.pos_embed.expand(x.shape[0], -1, -1).type_as(x)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.fc_norm(x.mean(1)))


def to_mmaction2(state):
    """The official names -> mmaction2's VisionTransformer + cls_head names (with its pos_embed buffer)."""
    out = {}
    for k, v in state.items():
        if k.startswith("head."):
            out["cls_head.fc_cls." + k[5:]] = v
            continue
        k = k.replace("patch_embed.proj.", "patch_embed.projection.")
        k = k.replace(".mlp.fc1.", ".mlp.layers.0.0.").replace(".mlp.fc2.", ".mlp.layers.1.")
        out["backbone." + k] = v
    return out
