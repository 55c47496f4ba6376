"""A cell's CPU peak memory, alone, at its evaluation batch: the model's weights plus the peak RSS increase of one
forward (``run.group``'s memory per cell on CPU).

Other models of a shared-decoding group are resident in the running process, so its peak RSS is first reset
(Linux: ``/proc/self/clear_refs``). Where it cannot be (not Linux), the cell is built in a fresh process as
every run builds it (``run.cell.prepare_cell``) and measured there:

    python -m harness.run.memory_probe '{"cell": <CellSpec.to_json()>, "store_root": "results"}'

In the fresh process the increase is over the process's peak so far, which holds the build's own transient peak
(e.g. a checkpoint held twice while it loads): a lower bound where the forward needs less than the build did.
"""
from __future__ import annotations

import sys
import typing as tp

FRESH_KIND = "cpu_weights_plus_forward_peak_rss_fresh_process"


def weight_bytes(model) -> int:
    return sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))


def cpu_peak_memory(spec, model, shape: tp.Sequence[int], store_root: str) -> dict:
    """``{"peak_mem_gib", "peak_mem_kind"}`` of ``model`` (the built ``spec``) on one forward at ``shape``."""
    peak = forward_peak_reset(model, shape)
    if peak is None:  # no resettable peak RSS (not Linux): a fresh process
        peak = measure_in_fresh_process(spec, store_root)
    return peak


def forward_peak_reset(model, shape: tp.Sequence[int]) -> tp.Optional[dict]:
    """Weights plus the peak RSS increase of one forward at ``shape``, the peak reset through
    /proc/self/clear_refs first so other resident models do not count; None where that is impossible."""
    import torch

    def rss_kib(field: str) -> int:
        with open("/proc/self/status") as f:
            return int(next(line for line in f if line.startswith(field)).split()[1])

    try:
        x = torch.randn(*shape)
        before = rss_kib("VmRSS:")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        with torch.inference_mode():
            model(x)
        peak = rss_kib("VmHWM:")
    except (OSError, StopIteration, ValueError):
        return None
    return {"peak_mem_gib": (weight_bytes(model) + max(0, peak - before) * 1024) / 2 ** 30,
            "peak_mem_kind": "cpu_weights_plus_forward_peak_rss"}


def measure_in_fresh_process(spec, store_root: str, timeout_s: float = 600) -> dict:
    """``probe`` of ``spec`` (a ``CellSpec``) in a fresh process; raises ``MemoryError`` when it ran out."""
    from harness.run.fresh import run_fresh

    result = run_fresh("harness.run.memory_probe", {"cell": spec.to_json(), "store_root": store_root}, timeout_s)
    if result.get("oom"):
        raise MemoryError(f"out of memory in the memory probe: {result.get('error')}")
    return result


def probe(request: dict) -> dict:
    """The fresh process's side: build the request's cell, one forward at its evaluation batch (batch x views
    clips, random normal)."""
    import torch

    from harness.measure.speed import max_rss_bytes
    from harness.run.cell import Progress, prepare_cell
    from harness.suite import CellSpec

    spec = CellSpec.from_json(request["cell"])
    setup = prepare_cell(spec, Progress(None), request.get("store_root", "results"))
    x = torch.randn(*setup.clip_shape(spec.eval.batch_size * setup.dataset.views), device=setup.device)
    before = max_rss_bytes()
    with torch.inference_mode():
        setup.model(x)
    increase = max(0, max_rss_bytes() - before)
    return {"peak_mem_gib": (weight_bytes(setup.model) + increase) / 2 ** 30, "peak_mem_kind": FRESH_KIND}


if __name__ == "__main__":
    from harness.run.fresh import serve

    sys.exit(serve(probe, sys.argv[1:]))
