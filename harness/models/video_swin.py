"""Video Swin Transformer (Liu et al., CVPR'22), equal to torchvision's ``swin3d_t/s/b`` on its weights.

Stage-1 tokens come from a Conv3d over (2, 4, 4) patches + LayerNorm; every stage runs blocks of
window attention over non-overlapping 3-D windows, every second block on windows shifted by half a
window (cyclic roll, with a mask that keeps the wrapped-around regions apart); a relative position
bias per head is added inside each window. Between stages, patch merging concatenates every 2x2
spatial neighbourhood (order (0,0), (1,0), (0,1), (1,1)), normalises and projects it to twice the
width. The head: LayerNorm on every token, mean over tokens, linear classifier.

Token pruning (``SwinPruner``; STA and random drop on Video Swin) works inside a stage: from the block
where a pruner removes tokens, the stage's remaining blocks run the token-wise layers (LayerNorms, qkv,
output projection, MLP) on the kept tokens only; window attention still runs on the full windows, with
the removed tokens masked out as keys (their queries are computed nowhere and their rows discarded),
so the attention matmuls are *not* reduced -- the MACs the harness reports are the ones that ran
(``swin_macs``). A removed token keeps the value it had when it was removed and re-enters at the
stage's patch merging (the grid must be whole there); the next stage starts with all its tokens.
See docs/sta_swin.md.
"""
from __future__ import annotations

import dataclasses
import typing as tp

import torch
import torch.nn.functional as F
from torch import nn

from harness.measure.flops import MacsCount
from harness.models.presets import TokenLayout, VideoSwinConfig
from harness.models.video_vit import add_residual

NORM_MACS_PER_ELEMENT = 5  # as harness.measure.flops


# --- pruning interface ----------------------------------------------------------------------------------------

class SwinPruner(nn.Module):
    """No pruning (the dense Video Swin). A subclass names the blocks after which it removes tokens
    (``prune_after``) and chooses the tokens to keep there (``select``)."""

    def __init__(self, params: tp.Any = None):
        super().__init__()
        self.params = params
        self.cfg: tp.Optional[VideoSwinConfig] = None

    def bind(self, cfg: VideoSwinConfig) -> None:
        self.cfg = cfg

    def prune_after(self) -> tp.Dict[tp.Tuple[int, int], int]:
        """``{(stage, block): tokens kept after that block}`` (0-based; counts per view). Block ``-1`` is the
        stage's entry: the tokens its first block runs on, chosen by ``carry`` from the merged grid."""
        return {}

    def carry(self, stage: int, x: torch.Tensor, children: torch.Tensor, keep: int) -> torch.Tensor:
        """Indices of the ``keep`` tokens the stage starts with, [B, keep]: ``x`` [B, N, C] is the merged grid
        (t-h-w order) and ``children`` [B, N] how many of each token's 2x2 children the previous stage kept."""
        raise NotImplementedError

    def select(self, stage: int, block: int, x: torch.Tensor, keys: torch.Tensor,
               kept: torch.Tensor, keep: int) -> torch.Tensor:
        """Indices (into the stage's flattened t-h-w grid) of the ``keep`` tokens to keep, [B, keep].

        ``x`` [B, n, C]: the block's output for the ``n`` tokens now kept, in grid order (``kept``
        [B, n], ascending); ``keys`` [B, n, d]: the block's keys of those tokens, averaged over heads."""
        raise NotImplementedError

    def describe(self) -> dict:
        return {}


def kept_counts(cfg: VideoSwinConfig, pruner: SwinPruner) -> tp.List[tp.List[int]]:
    """Tokens entering every block, per stage (what a forward runs; the same for every clip)."""
    plan = pruner.prune_after()
    out = []
    for s, depth in enumerate(cfg.depths):
        t, h, w = cfg.stage_grid(s)
        n, counts = plan.get((s, -1), t * h * w), []
        for b in range(depth):
            counts.append(n)
            n = plan.get((s, b), n)
        out.append(counts)
    return out


# --- MACs (fvcore's convention: 1 multiply-add = 1 MAC, LayerNorm 5 per element) ----------------------------

@dataclasses.dataclass
class SwinMacs(MacsCount):
    """``MacsCount`` (linear includes the patch-merging reductions; attention runs over the whole, padded windows;
    overhead is the pruner's own matmuls) plus everything counted inside each stage."""

    per_stage: tp.List[int]

    def as_record(self) -> dict:
        return {**super().as_record(), "gmacs_per_stage": [m / 1e9 for m in self.per_stage],
                "flops_convention": "1 MAC = 1 multiply-add (fvcore); GFLOPs = 2 x GMACs; LayerNorm 5/element; "
                                    "window attention counted over the whole (padded) windows, as it runs"}


def _padded(n: int, w: int) -> int:
    return -(-n // w) * w


def swin_macs(cfg: VideoSwinConfig, counts: tp.Optional[tp.Sequence[tp.Sequence[int]]] = None,
              overhead: tp.Callable[[int, int, int], int] = lambda s, b, n: 0) -> SwinMacs:
    """MACs of one view. ``counts[stage][block]``: tokens entering each block (default: all). A block
    entered by every token runs qkv and the projection on the padded grid (as torchvision does); a
    block entered by fewer runs them on those tokens only; attention always covers the padded windows."""
    pt, ph, pw = cfg.patch_size
    t, h, w = cfg.grid
    c0 = cfg.embed_dim
    patch = t * h * w * c0 * cfg.in_chans * pt * ph * pw
    norm = NORM_MACS_PER_ELEMENT * t * h * w * c0  # the patch embedding's LayerNorm
    linear = attention = extra = 0
    per_block, per_stage = [], []
    for s, depth in enumerate(cfg.depths):
        c = cfg.stage_dim(s)
        hidden = int(c * cfg.mlp_ratio)
        t, h, w = cfg.stage_grid(s)
        full = t * h * w
        stage_total = 0
        for b in range(depth):
            window, _ = cfg.stage_window(s)
            padded = _padded(t, window[0]) * _padded(h, window[1]) * _padded(w, window[2])
            vol = window[0] * window[1] * window[2]
            n = full if counts is None else counts[s][b]
            rows = padded if n == full else n  # qkv and proj rows
            blk_linear = rows * 4 * c * c + 2 * n * c * hidden
            blk_attention = 2 * padded * vol * c
            blk_norm = NORM_MACS_PER_ELEMENT * c * 2 * n
            blk_extra = overhead(s, b, n)
            linear, attention, norm, extra = (linear + blk_linear, attention + blk_attention,
                                              norm + blk_norm, extra + blk_extra)
            per_block.append(blk_linear + blk_attention + blk_norm + blk_extra)
            stage_total += per_block[-1]
        if s < cfg.num_stages - 1:  # patch merging to the next stage's grid
            merged = t * ((h + 1) // 2) * ((w + 1) // 2)
            linear += merged * 4 * c * 2 * c
            norm += NORM_MACS_PER_ELEMENT * merged * 4 * c
            stage_total += merged * 8 * c * c + NORM_MACS_PER_ELEMENT * merged * 4 * c
        per_stage.append(stage_total)
    c = cfg.stage_dim(cfg.num_stages - 1)
    t, h, w = cfg.stage_grid(cfg.num_stages - 1)
    head = NORM_MACS_PER_ELEMENT * t * h * w * c + c * cfg.num_classes
    return SwinMacs(patch, linear, attention, norm, extra, head, per_block, per_stage)


# --- layers -----------------------------------------------------------------------------------------------------

def relative_position_index(window: tp.Sequence[int]) -> torch.Tensor:
    """[V, V] index into the (2Wt-1)(2Wh-1)(2Ww-1) bias table of every (query, key) offset in a window."""
    coords = torch.stack(torch.meshgrid(*[torch.arange(n) for n in window], indexing="ij")).flatten(1)  # [3, V]
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # [V, V, 3]
    rel = rel + torch.tensor([n - 1 for n in window])
    strides = torch.tensor([(2 * window[1] - 1) * (2 * window[2] - 1), 2 * window[2] - 1, 1])
    return (rel * strides).sum(-1)


def shift_mask(grid: tp.Sequence[int], window: tp.Sequence[int], shift: tp.Sequence[int]) -> torch.Tensor:
    """[nW, V, V] additive mask (0 or -100) keeping the wrapped-around regions of shifted windows apart."""
    region = torch.zeros(*grid)
    label = 0
    cuts = [((0, -w), (-w, -s), (-s, None)) for w, s in zip(window, shift)]
    for a in cuts[0]:
        for b in cuts[1]:
            for c in cuts[2]:
                region[a[0]:a[1], b[0]:b[1], c[0]:c[1]] = label
                label += 1
    win = partition(region[None, ..., None], window)[..., 0]  # [nW, V]
    diff = win[:, None, :] - win[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


def partition(x: torch.Tensor, window: tp.Sequence[int]) -> torch.Tensor:
    """[B, T, H, W, C] (multiples of the window) -> [B * nW, V, C], windows in (t h w) order."""
    B, T, H, W, C = x.shape
    wt, wh, ww = window
    x = x.view(B, T // wt, wt, H // wh, wh, W // ww, ww, C)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, wt * wh * ww, C)


def unpartition(x: torch.Tensor, window: tp.Sequence[int], grid: tp.Sequence[int], batch: int) -> torch.Tensor:
    """Inverse of ``partition``: [B * nW, V, C] -> [B, T, H, W, C]."""
    T, H, W = grid
    wt, wh, ww = window
    x = x.view(batch, T // wt, H // wh, W // ww, wt, wh, ww, -1)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(batch, T, H, W, -1)


class WindowAttention(nn.Module):
    def __init__(self, dim: int, heads: int, window: tp.Sequence[int]):
        super().__init__()
        self.heads, self.window = heads, tuple(window)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        size = (2 * window[0] - 1) * (2 * window[1] - 1) * (2 * window[2] - 1)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(size, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)

    def position_bias(self, window: tp.Sequence[int]) -> torch.Tensor:
        """[1, heads, V, V] for ``window`` (a clamped window uses the leading part of the index, as torchvision)."""
        vol = window[0] * window[1] * window[2]
        index = self.relative_position_index[:vol, :vol].flatten()
        return self.relative_position_bias_table[index].view(vol, vol, -1).permute(2, 0, 1).unsqueeze(0)

    def attend(self, qkv: torch.Tensor, bias: torch.Tensor, num_windows: int,
               mask: tp.Optional[torch.Tensor], key_bias: tp.Optional[torch.Tensor]) -> torch.Tensor:
        """Window attention on [B * nW, V, 3C] -> [B * nW, V, C] (before the output projection)."""
        n, v, c3 = qkv.shape
        c = c3 // 3
        q, k, val = qkv.reshape(n, v, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q = q * (c // self.heads) ** -0.5
        logits = q @ k.transpose(-2, -1) + bias
        if mask is not None:
            logits = (logits.view(-1, num_windows, self.heads, v, v) + mask[None, :, None]).view(n, self.heads, v, v)
        if key_bias is not None:  # removed tokens are no keys
            logits = logits + key_bias[:, None, None, :]
        return (logits.softmax(dim=-1) @ val).transpose(1, 2).reshape(n, v, c)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1(x)  # without autograd GELU overwrites it (as the ViT blocks' ``BlockMlp``)
        return self.fc2(self.act(x) if torch.is_grad_enabled() else torch.ops.aten.gelu_(x))


class SwinBlock(nn.Module):
    def __init__(self, cfg: VideoSwinConfig, stage: int, index: int):
        super().__init__()
        dim = cfg.stage_dim(stage)
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn = WindowAttention(dim, cfg.heads[stage], cfg.window_size)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))
        self.shifted = index % 2 == 1
        self.heads = cfg.heads[stage]
        window, shift = cfg.stage_window(stage)
        self.window = window
        self.shift = shift if self.shifted and any(shift) else (0, 0, 0)
        grid = cfg.stage_grid(stage)
        self.padded = tuple(_padded(g, w) for g, w in zip(grid, window))
        if any(self.shift):
            self.register_buffer("mask", shift_mask(self.padded, window, self.shift), persistent=False)
        else:
            self.mask = None

    def _windows(self, grid_x: torch.Tensor) -> torch.Tensor:
        """[B, Tp, Hp, Wp, X] -> rolled, partitioned [B * nW, V, X]."""
        if any(self.shift):
            grid_x = torch.roll(grid_x, shifts=tuple(-s for s in self.shift), dims=(1, 2, 3))
        return partition(grid_x, self.window)

    def _unwindows(self, win: torch.Tensor, batch: int) -> torch.Tensor:
        out = unpartition(win, self.window, self.padded, batch)
        if any(self.shift):
            out = torch.roll(out, shifts=self.shift, dims=(1, 2, 3))
        return out

    def forward(self, x: torch.Tensor, kept: tp.Optional[torch.Tensor], need_keys: bool
                ) -> tp.Tuple[torch.Tensor, tp.Optional[torch.Tensor]]:
        """``x`` [B, T, H, W, C]; ``kept`` [B, n] grid indices of the tokens this block updates (None: all).
        Returns the new grid and, if asked, the head-mean keys of the updated tokens [B, n, d]."""
        if kept is None:
            return self._dense(x, need_keys)
        return self._pruned(x, kept, need_keys)

    def _dense(self, x: torch.Tensor, need_keys: bool) -> tp.Tuple[torch.Tensor, tp.Optional[torch.Tensor]]:
        B, T, H, W, C = x.shape
        Tp, Hp, Wp = self.padded
        h = F.pad(self.norm1(x), (0, 0, 0, Wp - W, 0, Hp - H, 0, Tp - T))
        win = self._windows(h)
        qkv = self.attn.qkv(win)
        out = self.attn.proj(self.attn.attend(qkv, self.attn.position_bias(self.window),
                                              win.shape[0] // B, self.mask, None))
        out = self._unwindows(out, B)[:, :T, :H, :W]
        x = x + out
        x = add_residual(self.mlp(self.norm2(x)), x)
        keys = None
        if need_keys:
            k = self._unwindows(qkv[..., C:2 * C], B)[:, :T, :H, :W].reshape(B, T * H * W, self.heads, -1)
            keys = k.mean(dim=2)
        return x, keys

    def _pruned(self, x: torch.Tensor, kept: torch.Tensor, need_keys: bool
                ) -> tp.Tuple[torch.Tensor, tp.Optional[torch.Tensor]]:
        B, T, H, W, C = x.shape
        Tp, Hp, Wp = self.padded
        flat = x.reshape(B, T * H * W, C)
        index = kept.unsqueeze(-1)
        xk = flat.gather(1, index.expand(-1, -1, C))
        qkv_k = self.attn.qkv(self.norm1(xk))  # [B, n, 3C]: only the kept tokens
        # padded grid: padding rows hold the qkv of a zero input (its bias), as in the dense block;
        # removed tokens are masked out as keys
        pos = _padded_index(kept, (T, H, W), self.padded)
        grid = self.attn.qkv.bias.to(qkv_k.dtype).expand(B, Tp * Hp * Wp, 3 * C).clone()
        grid = grid.scatter(1, pos.unsqueeze(-1).expand(-1, -1, 3 * C), qkv_k)
        removed = torch.full((B, T * H * W), torch.finfo(qkv_k.dtype).min, dtype=qkv_k.dtype, device=x.device)
        removed = removed.scatter(1, kept, torch.zeros_like(kept, dtype=qkv_k.dtype)).view(B, T, H, W, 1)
        removed = F.pad(removed, (0, 0, 0, Wp - W, 0, Hp - H, 0, Tp - T))  # padding stays a key
        win = self._windows(grid.view(B, Tp, Hp, Wp, 3 * C))
        key_bias = self._windows(removed)[..., 0]
        out = self.attn.attend(win, self.attn.position_bias(self.window), win.shape[0] // B, self.mask, key_bias)
        out = self._unwindows(out, B).reshape(B, Tp * Hp * Wp, C)
        out = out.gather(1, pos.unsqueeze(-1).expand(-1, -1, C))  # rows of the kept tokens
        xk = xk + self.attn.proj(out)
        xk = add_residual(self.mlp(self.norm2(xk)), xk)
        x = flat.scatter(1, index.expand(-1, -1, C), xk).view(B, T, H, W, C)
        keys = qkv_k[..., C:2 * C].reshape(B, -1, self.heads, C // self.heads).mean(dim=2) if need_keys else None
        return x, keys


def _children_kept(kept: tp.Optional[torch.Tensor], batch: int, grid: tp.Sequence[int],
                   device: torch.device) -> torch.Tensor:
    """[B, N'] how many of each merged token's 2x2 children (previous stage's ``grid``) are in ``kept``
    (all four when nothing was removed), in the merged grid's t-h-w order."""
    T, H, W = grid
    if kept is None:
        mask = torch.ones(batch, T * H * W, device=device)
    else:
        mask = torch.zeros(batch, T * H * W, device=device).scatter(1, kept, 1.0)
    mask = F.pad(mask.view(batch, T, H, W), (0, W % 2, 0, H % 2))
    return mask.unfold(2, 2, 2).unfold(3, 2, 2).sum(dim=(-1, -2)).reshape(batch, -1)


def _padded_index(kept: torch.Tensor, grid: tp.Sequence[int], padded: tp.Sequence[int]) -> torch.Tensor:
    """Grid indices of ``grid`` -> indices into the padded grid."""
    T, H, W = grid
    _, Hp, Wp = padded
    if (H, W) == (Hp, Wp):
        return kept
    t, rest = kept // (H * W), kept % (H * W)
    return t * Hp * Wp + (rest // W) * Wp + rest % W


class PatchMerging(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=eps)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[2:4]
        x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        x = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x))


class PatchEmbed(nn.Module):
    def __init__(self, cfg: VideoSwinConfig):
        super().__init__()
        self.patch = tuple(cfg.patch_size)
        self.proj = nn.Conv3d(cfg.in_chans, cfg.embed_dim, kernel_size=self.patch, stride=self.patch)
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        T, H, W = clip.shape[2:]
        pad = [(p - n % p) % p for n, p in zip((T, H, W), self.patch)]
        clip = F.pad(clip, (0, pad[2], 0, pad[1], 0, pad[0]))
        return self.norm(self.proj(clip).permute(0, 2, 3, 4, 1))  # [B, T', H', W', C]


class SwinStage(nn.Module):
    def __init__(self, cfg: VideoSwinConfig, stage: int):
        super().__init__()
        self.blocks = nn.ModuleList([SwinBlock(cfg, stage, i) for i in range(cfg.depths[stage])])


@dataclasses.dataclass
class SwinStats:
    """What the last forward ran: tokens entering every block, per stage (per view, the same for the batch)."""

    tokens_per_stage: tp.List[tp.List[int]] = dataclasses.field(default_factory=list)

    @property
    def tokens_in(self) -> tp.List[int]:
        return [n for stage in self.tokens_per_stage for n in stage]

    @property
    def tokens_mlp(self) -> tp.List[int]:
        return self.tokens_in

    @property
    def attention_kernel(self) -> tp.List[str]:
        return ["explicit"] * len(self.tokens_in)

    @property
    def tokens_out(self) -> int:
        return self.tokens_per_stage[-1][-1] if self.tokens_per_stage else 0

    tokens_per_sample = None


class VideoSwin(nn.Module):
    """Video Swin with an optional ``SwinPruner``; follows ``harness/models/protocol.py``."""

    def __init__(self, cfg: VideoSwinConfig, pruner: tp.Optional[SwinPruner] = None,
                 input_cfg: tp.Optional[VideoSwinConfig] = None):
        super().__init__()
        self.net_cfg = cfg  # what the network runs
        self.cfg = input_cfg or cfg  # the clip the data pipeline delivers (downsample: a larger one)
        self.layout: TokenLayout = cfg.layout
        self.patch_embed = PatchEmbed(cfg)
        self.stages = nn.ModuleList([SwinStage(cfg, s) for s in range(cfg.num_stages)])
        self.merges = nn.ModuleList([PatchMerging(cfg.stage_dim(s), cfg.norm_eps)
                                     for s in range(cfg.num_stages - 1)])
        width = cfg.stage_dim(cfg.num_stages - 1)
        self.norm = nn.LayerNorm(width, eps=cfg.norm_eps)
        self.head = nn.Linear(width, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self.pruner = pruner if pruner is not None else SwinPruner()
        self.pruner.bind(cfg)
        self.stages_grid = [cfg.stage_grid(s) for s in range(cfg.num_stages)]
        self.last_stats = SwinStats()
        self.checkpoint_layout: tp.Optional[str] = None
        self.class_names: tp.Optional[tp.List[str]] = None
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def token_counts(self) -> tp.List[int]:
        return self.last_stats.tokens_in

    def forward_features(self, clip: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(clip)
        net = self.net_cfg
        if tuple(x.shape[1:4]) != net.grid:
            raise ValueError(f"clip {tuple(clip.shape)} gives a {tuple(x.shape[1:4])} token grid but the model "
                             f"was built for {net.grid} ({net.num_frames} frames of {net.img_size}px)")
        plan = self.pruner.prune_after()
        stats = SwinStats()
        kept = None
        for s, stage in enumerate(self.stages):
            B, T, H, W, _ = x.shape
            counts = []
            entry = plan.get((s, -1))
            if entry is not None:  # the stage starts with the tokens the pruner carries over the merging
                children = _children_kept(kept, B, self.stages_grid[s - 1], x.device)
                kept = self.pruner.carry(s, x.reshape(B, T * H * W, -1), children, entry).sort(dim=1).values
            else:
                kept = None
            for b, block in enumerate(stage.blocks):
                counts.append(int(T * H * W if kept is None else kept.shape[1]))
                keep = plan.get((s, b))
                x, keys = block(x, kept, need_keys=keep is not None)
                if keep is not None:
                    if kept is None:
                        kept = torch.arange(T * H * W, device=x.device).expand(B, -1)
                    tokens = x.reshape(B, T * H * W, -1).gather(1, kept.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
                    kept = self.pruner.select(s, b, tokens, keys, kept, keep).sort(dim=1).values
            stats.tokens_per_stage.append(counts)
            if s < len(self.merges):
                x = self.merges[s](x)
        self.last_stats = stats
        return self.norm(x).mean(dim=(1, 2, 3))

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(clip))

    # --- the harness protocol (harness/models/protocol.py) ---
    def describe(self) -> dict:
        net = self.net_cfg
        return {**self.pruner.describe(), "tokens_per_stage": kept_counts(net, self.pruner),
                "stage_grids": [list(net.stage_grid(s)) for s in range(net.num_stages)],
                "removal": "token-wise layers on kept tokens; window attention masked (not reduced)"
                           if self.pruner.prune_after() else "none"}

    def view_macs(self) -> SwinMacs:
        """MACs of one view as the model runs it (the token counts are fixed by the pruner's plan)."""
        overhead = getattr(self.pruner, "overhead_macs", lambda s, b, n: 0)
        return swin_macs(self.net_cfg, kept_counts(self.net_cfg, self.pruner), overhead)

    def sample_macs(self) -> tp.Optional[tp.List[float]]:
        return None

    def training_loss(self, batch: tp.Mapping[str, torch.Tensor]) -> tp.Tuple[torch.Tensor, dict]:
        logits = self(batch["clips"])
        smoothing = float(batch.get("label_smoothing", 0.0))
        loss = F.cross_entropy(logits, batch["labels"], label_smoothing=smoothing)
        return loss, {"ce": loss.item(), "top1": (logits.argmax(-1) == batch["labels"]).float().mean().item()}

    def load_checkpoint(self, path: str) -> str:
        from harness.models.swin_checkpoint import load_swin_checkpoint

        self.checkpoint_layout = load_swin_checkpoint(self, path)
        return self.checkpoint_layout

    def init_from(self, path: str) -> dict:
        from harness.models.swin_checkpoint import load_swin_checkpoint

        return {"layout": load_swin_checkpoint(self, path), "new": []}


def build_video_swin(cfg: VideoSwinConfig, pruner: tp.Optional[SwinPruner] = None) -> VideoSwin:
    return VideoSwin(cfg, pruner)


def build_dense(cfg: VideoSwinConfig, params: tp.Any = None) -> VideoSwin:
    """``methods.dense``'s Video Swin entry point: no pruner."""
    return VideoSwin(cfg)
