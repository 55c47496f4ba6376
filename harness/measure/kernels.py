"""Which attention kernel each block really ran: one profiled forward, outside the timed loop.

``scaled_dot_product_attention`` picks its backend at run time (dtype, head dim, mask, device, the
``sdpa_kernel`` restriction), so the model cannot say which one ran; the profiler can: each backend
is its own ATen op. ``probe_attention_kernels`` runs one forward under ``torch.profiler`` with a
``record_function`` range around every ``model.blocks[i]`` and reads, per block, the backend ops
found inside that range, plus "explicit" where the model says it ran its own softmax (the blocks
that return attention probabilities: ``last_stats.attention_kernel``).

Names: "flash" (CUDA FlashAttention), "cpu_flash" (the fused CPU kernel
``_scaled_dot_product_flash_attention_for_cpu``), "efficient" (memory-efficient / xformers-style),
"cudnn", "math" (SDPA's unfused reference path), "explicit" (the model's own softmax(q k^T) v).
A block running two attentions (HaltingVT's Glimpser: temporal then spatial) lists both, "+"-joined.
The probe runs the eager model; a compiled model runs what inductor chose (it keeps SDPA as an
ATen call on CUDA, so normally the same backend).
"""
from __future__ import annotations

import contextlib
import typing as tp

import torch

# profiler op name -> backend (the CUDA SDPA wrappers call the *_forward ops; both map to one name)
OP_BACKENDS = {
    "aten::_scaled_dot_product_flash_attention_for_cpu": "cpu_flash",
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_flash_attention_forward": "flash",
    "aten::_scaled_dot_product_efficient_attention": "efficient",
    "aten::_efficient_attention_forward": "efficient",
    "aten::_scaled_dot_product_cudnn_attention": "cudnn",
    "aten::_scaled_dot_product_attention_math": "math",
}
SLOWNESS = ("explicit", "math", "efficient", "cudnn", "flash", "cpu_flash")  # slowest first (typical)
_PREFIX = "harness_block"


def probe_attention_kernels(model, x: torch.Tensor, context: tp.Callable[[], tp.ContextManager] = contextlib.nullcontext
                            ) -> tp.List[str]:
    """Per block of ``model.blocks``, the attention kernels one forward on ``x`` ran ("+"-joined)."""
    from torch.profiler import ProfilerActivity, profile

    blocks = list(getattr(model, "blocks", []))
    ranges: tp.Dict[int, tp.Any] = {}

    def enter(i):
        def hook(module, args):
            ranges[i] = torch.autograd.profiler.record_function(f"{_PREFIX}{i}")
            ranges[i].__enter__()
        return hook

    def leave(i):
        def hook(module, args, output):
            ranges.pop(i).__exit__(None, None, None)
        return hook

    handles = [h for i, b in enumerate(blocks)
               for h in (b.register_forward_pre_hook(enter(i)), b.register_forward_hook(leave(i)))]
    try:
        with torch.inference_mode(), context(), profile(activities=[ProfilerActivity.CPU]) as prof:
            model(x)
    finally:
        for h in handles:
            h.remove()
        for r in ranges.values():  # a forward that raised inside a block
            r.__exit__(None, None, None)
    found: tp.List[tp.List[str]] = [[] for _ in blocks]
    for event in prof.events():
        backend = OP_BACKENDS.get(event.name)
        if backend is None:
            continue
        parent = event.cpu_parent
        while parent is not None and not parent.name.startswith(_PREFIX):
            parent = parent.cpu_parent
        if parent is not None:
            i = int(parent.name[len(_PREFIX):])
            if backend not in found[i]:
                found[i].append(backend)
    explicit = list(getattr(getattr(model, "last_stats", None), "attention_kernel", []) or [])
    out = []
    for i, kinds in enumerate(found):
        if i < len(explicit) and explicit[i] == "explicit":
            kinds = kinds + ["explicit"]
        out.append("+".join(kinds) if kinds else "none")
    return out


def kernel_set(per_block: tp.Iterable[str]) -> tp.List[str]:
    """The distinct kernels of a per-block list, slowest first."""
    kinds = {k for entry in per_block for k in entry.split("+") if k and k != "none"}
    return sorted(kinds, key=lambda k: SLOWNESS.index(k) if k in SLOWNESS else len(SLOWNESS))


def check_sdpa_backend_runs(model, x: torch.Tensor, sdpa_backend: str,
                            context: tp.Callable[[], tp.ContextManager]) -> None:
    """Run one forward under the forced backend; a backend that cannot run becomes one clear error."""
    from harness.measure.regime import SdpaBackendError

    try:
        with torch.inference_mode(), context():
            model(x)
    except RuntimeError as err:
        text = str(err)
        if "No viable backend" not in text and "No available kernel" not in text:
            raise
        device = x.device.type
        hint = ("on CPU only flash (the fused CPU kernel) and math exist" if device == "cpu" else
                "the backend's constraints (dtype, head dim, mask, GPU architecture) are not met by this model")
        raise SdpaBackendError(f"sdpa_backend {sdpa_backend!r} cannot run this model on {device}: {hint} "
                               f"(torch: {text.splitlines()[0][:200]})") from None
