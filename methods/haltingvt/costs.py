"""MACs of HaltingVT in fvcore's convention (``harness/measure/flops.py``): 1 multiply-add = 1 MAC,
linear/conv/both attention matmuls, LayerNorm at 5 per element; softmax, GELU, sigmoid, top-k,
gathers and the ACT bookkeeping are free.

A view costs ``fixed + sum_l f(n_l)`` over the halting blocks (methods.md 5.6):
- fixed = patch embedding + the two Glimpser blocks + final LayerNorm and classifier on the CLS;
- f(n) = (4 + 2 * mlp_ratio) n C^2 + 2 n^2 C + 10 n C for a joint block over n tokens (CLS included).
"""
from __future__ import annotations

import typing as tp

from harness.measure.flops import NORM_MACS_PER_ELEMENT, MacsCount


def glimpser_macs(dim: int, hidden: int, frames: int, per_frame: int, keep: int) -> tp.Tuple[int, int, int]:
    """(linear, attention, norm) MACs of one divided space-time block of one view.

    Temporal attention over T tokens at each of the S positions (+ ``temporal_fc``), spatial attention
    over 1 + S tokens in each frame (the CLS is replicated per frame), MLP over 1 + keep*T tokens.
    """
    T, S, C = frames, per_frame, dim
    temporal, spatial, mlp = S * T, T * (1 + S), 1 + keep * T
    linear = (temporal * 5 * C * C  # qkv, proj, temporal_fc
              + spatial * 4 * C * C  # qkv, proj
              + mlp * 2 * C * hidden)
    attention = 2 * S * T * T * C + 2 * T * (1 + S) ** 2 * C
    norm = NORM_MACS_PER_ELEMENT * C * (temporal + spatial + mlp)
    return linear, attention, norm


def joint_macs(dim: int, hidden: int, n: int) -> tp.Tuple[int, int, int]:
    """(linear, attention, norm) MACs of one joint space-time block over ``n`` tokens."""
    return n * (4 * dim * dim + 2 * dim * hidden), 2 * n * n * dim, 2 * NORM_MACS_PER_ELEMENT * n * dim


def halted_keys_macs(dim: int, queries: tp.Sequence[int]) -> tp.Tuple[int, int]:
    """(norm, overhead) MACs per view of one ``packed``/``varlen`` halting block that attends to the removed
    halted tokens (``halted_keys: zeros``): LayerNorm and qkv of one zero token per batch, shared by its
    clips, plus one more key in both attention matmuls for each query row (``queries``: per clip)."""
    B = len(queries)
    return round(NORM_MACS_PER_ELEMENT * dim / B), round((3 * dim * dim + 2 * dim * sum(queries)) / B)


def view_macs(cfg: tp.Any, keep: tp.Sequence[int], joint_tokens: tp.Sequence[float]) -> MacsCount:
    """MACs of one view: Glimpser blocks keeping ``keep[i]`` patches per frame, then joint blocks over
    ``joint_tokens[l]`` tokens each (0 for a block that ran on no token)."""
    C, hidden = cfg.embed_dim, int(cfg.embed_dim * cfg.mlp_ratio)
    T, side = cfg.num_frames // cfg.tubelet_size, cfg.img_size // cfg.patch_size
    S = side * side
    patch = T * S * C * cfg.in_chans * cfg.tubelet_size * cfg.patch_size ** 2
    linear = attention = norm = 0
    per_block = []
    per_frame = S
    for k in keep:
        block = glimpser_macs(C, hidden, T, per_frame, k)
        per_frame = k
        per_block.append(sum(block))
        linear, attention, norm = linear + block[0], attention + block[1], norm + block[2]
    for n in joint_tokens:
        block = joint_macs(C, hidden, int(n))
        per_block.append(sum(block))
        linear, attention, norm = linear + block[0], attention + block[1], norm + block[2]
    head = NORM_MACS_PER_ELEMENT * C + C * cfg.num_classes  # final LayerNorm of the CLS + fc_cls
    return MacsCount(patch, linear, attention, norm, 0, head, per_block)


def mean_macs(counts: tp.Sequence[MacsCount]) -> MacsCount:
    """Field-wise mean (rounded to whole MACs) of per-sample counts."""
    n = len(counts)

    def avg(values: tp.Iterable[int]) -> int:
        return round(sum(values) / n)

    fields = ("patch_embed", "linear", "attention", "norm", "overhead", "head")
    means = {f: avg(getattr(c, f) for c in counts) for f in fields}
    per_block = [avg(blocks) for blocks in zip(*(c.per_block for c in counts))]
    return MacsCount(**means, per_block=per_block)
