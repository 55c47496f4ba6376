"""Attention within sequences concatenated along the token axis: variable-length batches, no padding.

HaltingVT's ``varlen`` mode (each clip's active tokens) and RLT's (each clip's kept tokens) lay a batch
out as one sequence ``[sum(sizes), ...]``; the token-wise layers run once over it and attention must
stay within each clip. ``varlen_attention`` is that attention, with two executions of the same numbers:

- ``"nested"``: one call for all sequences: q, k, v become nested jagged tensors and
  ``scaled_dot_product_attention`` dispatches to CUDA's variable-length flash (fp16/bf16) or
  memory-efficient (fp32) kernel;
- ``"loop"``: one attention call per sequence;
- ``"auto"``: ``"nested"`` on CUDA, ``"loop"`` elsewhere. On CPU torch has no variable-length kernel:
  nested tensors go through SDPA's math path, measured 9x slower than the loop at 8 clips of ViT-S and
  60x at 32 (docs/measurement.md, ``scripts/bench_varlen_attention.py``).

An explicit softmax (``explicit=``, for models run bit-compatible with official code) and ``torch.jit``
tracing (fvcore cannot trace nested tensors) always loop.
"""
from __future__ import annotations

import typing as tp

import torch
import torch.nn.functional as F

VARLEN_IMPLS = ("auto", "nested", "loop")
Attend = tp.Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def resolve_varlen_impl(impl: str, device: torch.device) -> str:
    """``"nested"`` or ``"loop"`` for ``impl`` on ``device``."""
    if impl not in VARLEN_IMPLS:
        raise ValueError(f"varlen attention impl must be one of {VARLEN_IMPLS}, got {impl!r}")
    if impl == "auto":
        return "nested" if device.type == "cuda" else "loop"
    return impl


def varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sizes: tp.Sequence[int], *,
                     impl: str = "auto", explicit: tp.Optional[Attend] = None) -> torch.Tensor:
    """Self-attention within each sequence: ``q, k, v`` are ``[N, H, D]`` holding sequences of ``sizes``
    (summing to N, zeros allowed) one after the other; returns ``[N, H, D]``.

    ``explicit(q, k, v)`` (``[1, H, n, D]`` each) replaces SDPA for each sequence when given.
    """
    sizes = [int(n) for n in sizes if int(n) > 0]
    if explicit is None and resolve_varlen_impl(impl, q.device) == "nested" and not torch.jit.is_tracing():
        offsets = torch.tensor([0, *sizes], device=q.device).cumsum(0)
        nested = [torch.nested.nested_tensor_from_jagged(t.contiguous(), offsets, min_seqlen=min(sizes),
                                                         max_seqlen=max(sizes)).transpose(1, 2)
                  for t in (q, k, v)]  # [B, H, j, D] each
        return F.scaled_dot_product_attention(*nested).transpose(1, 2).values()
    attend = explicit or F.scaled_dot_product_attention
    parts = [attend(*(t.permute(1, 0, 2).unsqueeze(0) for t in part))[0]  # [H, n, D]
             for part in zip(q.split(sizes), k.split(sizes), v.split(sizes))]
    return torch.cat(parts, dim=1).transpose(0, 1)
