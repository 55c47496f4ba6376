"""One measurement in this process: build the cell's model, time it at one batch size, measure memory
and (optionally) the time spent in the method's own operations.

Run as ``python -m harness.bench.worker '<json request>'``; prints one JSON line (the result).
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time
import typing as tp


def measure(request: dict) -> dict:
    import torch

    from harness.build import build_from_config
    from harness.measure.compiled import compile_for_timing, count_after, public
    from harness.measure.device import resolve_device
    from harness.measure.kernels import check_sdpa_backend_runs, probe_attention_kernels
    from harness.measure.regime import (PrecisionError, SdpaBackendError, regime_context, regime_record,
                                        validate_precision)
    from harness.measure.speed import measure_throughput, peak_memory, reset_peak_memory
    from harness.training import resolve_checkpoint

    threads = request.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(request.get("seed", 0))
    device = resolve_device(request.get("device") or "auto")
    backbone = dict(request["backbone"])
    checkpoint = resolve_checkpoint(request, request.get("store_root", "results"))
    # Static methods are timed on random input and random weights (their cost does not depend on
    # either); adaptive ones (HaltingVT) on real clips with their trained weights.
    if request.get("fused_attention") is not None:
        backbone["fused_attention"] = request["fused_attention"]
    method = request["method"]
    model = build_from_config(backbone, method,
                              checkpoint=checkpoint if request.get("load_checkpoint") else None).to(device)
    cfg = model.cfg
    shape = (cfg.in_chans, cfg.num_frames, cfg.img_size, cfg.img_size)
    bs = int(request["batch_size"])
    inputs = _inputs(request, bs, device)
    x = inputs if inputs is not None else torch.randn(bs, *shape, device=device)
    precision, sdpa = request.get("precision") or "fp32", request.get("sdpa_backend") or "auto"
    regime = regime_record(device, precision, sdpa)
    try:
        validate_precision(precision, device)
    except PrecisionError as err:  # e.g. bf16 on a GPU without it: that row's error, the others run
        return {"oom": False, "failed": True, "batch_size": int(request["batch_size"]), "error": str(err), **regime}
    context = lambda: regime_context(device, precision, sdpa)
    rss_before = _rss_gib()
    reset_peak_memory(device)
    t = request["timing"]
    try:
        if sdpa != "auto":
            try:
                check_sdpa_backend_runs(model, x, sdpa, context)
            except SdpaBackendError as err:
                return {"oom": False, "failed": True, "batch_size": bs, "error": str(err), **regime}
        # the eager model, once, outside timing: which kernel each block ran, and what it executed
        kernels = probe_attention_kernels(model, x, context)
        stats = {"attention_kernel_per_block": list(model.last_stats.attention_kernel),
                 "sdpa_backend_per_block": kernels, "gmacs_per_view": model.view_macs().total / 1e9}
        adaptive = bool(request.get("real_inputs"))
        timed, info = compile_for_timing(model, x, mode=request.get("compile") or "off",
                                         dynamic=True if adaptive else None, context=context,
                                         backend=request.get("compile_backend") or "inductor")
        if timed is None:
            if _is_oom(RuntimeError(info["compile_error"])):
                return {"oom": True, "batch_size": bs, "error": info["compile_error"]}
            return {"oom": False, "failed": True, "batch_size": bs, "error": info["compile_error"],
                    **public(info), **regime, **stats}
        result = measure_throughput(timed, shape, device=device, batch_size=bs, warmup_iters=t["warmup_iters"],
                                    warmup_s=t["warmup_s"], timed_iters=t["timed_iters"],
                                    min_timed_s=t["min_timed_s"], repeats=1, inputs=x, precision=precision,
                                    sdpa_backend=sdpa, energy=bool(request.get("energy", True)),
                                    on_warmup_done=lambda: count_after(info, "recompiles"))
        count_after(info, "recompiles_during_timing")
    except RuntimeError as err:  # CUDA OOM is a RuntimeError subclass; CPU allocators raise RuntimeError
        if _is_oom(err):
            return {"oom": True, "batch_size": bs, "error": str(err).splitlines()[0][:300]}
        raise
    times = result["iteration_times_s"][0]
    out = {"oom": False, "batch_size": bs, "clips_per_s": result["clips_per_s"], "iteration_times_s": times,
           "warmup_iters": result["warmup_iters"], "timer": result["timer"],
           "timing_input": result["timing_input"] if inputs is not None else "random normal", **peak_memory(device),
           **stats, "energy_j_per_clip": result["energy_j_per_clip"], "energy_how": result["energy_how"],
           **public(info), **regime, "torch_threads": torch.get_num_threads(),
           "device": str(device), "loadavg": os.getloadavg()}
    if device.type == "cpu":
        out["peak_rss_increase_gib"] = max(0.0, out["peak_mem_gib"] - rss_before)
    if request.get("overhead"):
        out["overhead"] = overhead(model, x, device, iters=int(request.get("overhead_iters", 5)), context=context)
    return out


def overhead(model, x, device, iters: int = 5, context: tp.Callable[[], tp.ContextManager] = None) -> dict:
    """Share of the forward spent in ``reduction_region``s, per region and in total (median over iters)."""
    import statistics

    import torch

    from harness.measure.regions import RegionTimer

    import contextlib

    sync = device.type == "cuda"
    forwards, shares, per_region = [], [], {}
    with torch.inference_mode(), (context or contextlib.nullcontext)():
        model(x)
        for _ in range(iters):
            with RegionTimer(sync=sync) as timer:
                if sync:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                model(x)
                if sync:
                    torch.cuda.synchronize()
                total = time.perf_counter() - t0
            forwards.append(total)
            shares.append(sum(timer.seconds.values()) / total)
            for k, v in timer.seconds.items():
                per_region.setdefault(k, []).append(v / total)
    return {"share": statistics.median(shares), "forward_s": statistics.median(forwards),
            "per_region_share": {k: statistics.median(v) for k, v in sorted(per_region.items())},
            "how": "perf_counter around each reduction_region" + (" with CUDA syncs" if sync else "")}


def _inputs(request: dict, bs: int, device):
    """Real clips for adaptive methods (their work depends on the data), else None (random input)."""
    if not request.get("real_inputs"):
        return None
    from harness.data import build_dataset
    from harness.data.video_dataset import real_clips

    return real_clips(build_dataset(request["dataset"]), bs).to(device)


def _is_oom(err: BaseException) -> bool:
    text = str(err).lower()
    return "out of memory" in text or "not enough memory" in text or "can't allocate" in text


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def main(argv: tp.Sequence[str]) -> int:
    request = json.loads(argv[0])
    try:
        result = measure(request)
    except MemoryError as err:
        result = {"oom": True, "batch_size": request["batch_size"], "error": f"MemoryError: {err}"}
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
