"""One measurement in this process: build the cell as a run does (``run.cell.prepare_cell``), time its
throughput subject (``run.cell.throughput_subject``) at one batch size, measure memory and (optionally) the
time spent in the method's own operations.

Run as ``python -m harness.bench.worker '<json request>'`` (``harness.run.fresh``); prints one ``RESULT`` line.
The request: ``{"cell": CellSpec.to_json() of the target (its regime, attention, device, threads and timing
applied: ``sweep.Target.spec``), "batch_size", "overhead", "energy", "compile_backend", "store_root"}``.

Static methods are timed on random input with random weights, built without their dataset (their cost depends
on neither, so bench runs where checkpoints and datasets are absent); adaptive ones (HaltingVT) on real clips
of the cell's dataset with the cell's trained weights, since what they compute depends on both.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
import typing as tp


def measure(request: dict) -> dict:
    import torch

    from harness.measure.compiled import count_after
    from harness.measure.device import resolve_device
    from harness.measure.kernels import check_sdpa_backend_runs, probe_attention_kernels
    from harness.measure.regime import PrecisionError, SdpaBackendError
    from harness.measure.speed import measure_throughput, peak_memory, reset_peak_memory
    from harness.run.cell import Progress, prepare_cell, throughput_subject, timing_input
    from harness.run.fresh import is_oom
    from harness.suite import CellSpec

    spec = CellSpec.from_json(request["cell"])
    bs = int(request["batch_size"])
    adaptive = spec.method.capabilities()["adaptive_token_count"]
    try:
        setup = prepare_cell(spec, Progress(None), request.get("store_root", "results"), weights=adaptive, data=adaptive)
    except (PrecisionError, SdpaBackendError) as err:  # e.g. bf16 on a GPU without it: that row's error, the others run
        return {"oom": False, "failed": True, "batch_size": bs, "error": str(err),
                **spec.regime.record(resolve_device(spec.eval.device))}
    model, device, context = setup.model, setup.device, setup.context
    regime = setup.regime.record(device)
    x = timing_input(setup, bs)
    rss_before = _rss_gib()
    reset_peak_memory(device)
    try:
        if setup.regime.sdpa_backend != "auto":
            try:
                check_sdpa_backend_runs(model, x, setup.regime.sdpa_backend, context)
            except SdpaBackendError as err:
                return {"oom": False, "failed": True, "batch_size": bs, "error": str(err), **regime}
        # the eager model, once, outside timing: which kernel each block ran, and what it executed
        kernels = probe_attention_kernels(model, x, context)
        stats = {"attention_kernel_per_block": list(model.last_stats.attention_kernel),
                 "sdpa_backend_per_block": kernels, "gmacs_per_view": model.view_macs().total / 1e9}
        subject = throughput_subject(setup, bs, inputs=x, compile_backend=request.get("compile_backend") or "inductor")
        info = subject["compile"]
        if info["compile_error"] is not None:
            if is_oom(info["compile_error"]):
                return {"oom": True, "batch_size": bs, "error": info["compile_error"]}
            return {"oom": False, "failed": True, "batch_size": bs, "error": info["compile_error"],
                    **subject["compile_public"](), **regime, **stats}
        result = measure_throughput(subject["model"], setup.clip_shape()[1:], device=device, batch_size=bs,
                                    warmup_iters=subject["warmup_iters"], warmup_s=subject["warmup_s"],
                                    timed_iters=subject["timed_iters"], min_timed_s=subject["min_timed_s"],
                                    repeats=subject["repeats"], inputs=x, precision=setup.regime.precision,
                                    sdpa_backend=setup.regime.sdpa_backend, energy=bool(request.get("energy", True)),
                                    on_warmup_done=subject.get("after_warmup", lambda: None))
        count_after(info, "recompiles_during_timing")
    except RuntimeError as err:  # CUDA OOM is a RuntimeError subclass; CPU allocators raise RuntimeError
        if is_oom(str(err)):
            return {"oom": True, "batch_size": bs, "error": str(err).splitlines()[0][:300]}
        raise
    out = {"oom": False, "batch_size": bs, "clips_per_s": result["clips_per_s"],
           "iteration_times_s": result["iteration_times_s"][0], "warmup_iters": result["warmup_iters"],
           "timer": result["timer"], "timing_input": subject["timing_input"], **peak_memory(device), **stats,
           "energy_j_per_clip": result["energy_j_per_clip"], "energy_how": result["energy_how"],
           **subject["compile_public"](), **regime, "torch_threads": torch.get_num_threads(),
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


def _rss_gib() -> float:
    from harness.measure.speed import max_rss_bytes

    return max_rss_bytes() / 2 ** 30


if __name__ == "__main__":
    from harness.run.fresh import serve

    sys.exit(serve(measure, sys.argv[1:]))
