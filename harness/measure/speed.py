"""Model-only throughput on a synthetic input of the true clip shape, and peak memory.

Decoding is excluded (the input is made once, on the device, before timing). Runs under
``torch.inference_mode``; warms up for at least ``warmup_iters`` iterations and ``warmup_s`` seconds;
each repeat times at least ``timed_iters`` iterations and ``min_timed_s`` seconds, with CUDA events
and a synchronisation per iteration on GPU and ``perf_counter`` on CPU. The figure is the median of
the repeats' clips/s, with its interquartile range and every per-iteration time kept.

Every forward (warm-up and timed) runs under the regime (``harness.measure.regime``): autocast to
``precision`` and the ``sdpa_backend`` restriction. With ``energy`` on CUDA and NVML, the joules the
GPU consumed over the timed iterations are recorded per clip (None elsewhere).
"""
from __future__ import annotations

import resource
import sys
import statistics
import time
import typing as tp

import torch


def measure_throughput(model, clip_shape: tp.Sequence[int], *, device: torch.device, batch_size: int,
                       warmup_iters: int, warmup_s: float, timed_iters: int, min_timed_s: float,
                       repeats: int, progress: tp.Callable[[int, int], None] = lambda done, total: None,
                       precision: str, sdpa_backend: str, inputs: tp.Optional[torch.Tensor] = None,
                       energy: bool = False,
                       on_warmup_done: tp.Callable[[], None] = lambda: None) -> dict:
    """``inputs`` (real clips, ``[batch_size, *clip_shape]``) replaces the random input: adaptive
    methods (HaltingVT) do data-dependent work, so their speed must be timed on real clips."""
    from harness.measure.energy import EnergyMeter
    from harness.measure.regime import regime_context

    x = torch.randn(batch_size, *clip_shape, device=device) if inputs is None else inputs.to(device)
    step = timed_step_cuda if device.type == "cuda" else timed_step_cpu
    meter = EnergyMeter(device) if energy else None
    joules = 0.0
    with torch.inference_mode(), regime_context(device, precision, sdpa_backend):
        start, iters = time.perf_counter(), 0
        while iters < warmup_iters or time.perf_counter() - start < warmup_s:
            step(model, x)
            iters += 1
        on_warmup_done()
        runs: tp.List[tp.List[float]] = []
        for rep in range(repeats):
            times: tp.List[float] = []
            if meter is not None:
                meter.start()
            while len(times) < timed_iters or sum(times) < min_timed_s:
                times.append(step(model, x))
            if meter is not None and meter.available:
                joules += meter.stop()
            runs.append(times)
            progress(rep + 1, repeats)
    rates = [batch_size * len(t) / sum(t) for t in runs]
    q1, _, q3 = statistics.quantiles(rates, n=4) if len(rates) > 1 else (rates[0],) * 3
    clips = batch_size * sum(len(t) for t in runs)
    return {"clips_per_s": statistics.median(rates), "clips_per_s_iqr": q3 - q1,
            "clips_per_s_repeats": rates, "throughput_batch_size": batch_size,
            "warmup_iters": iters, "iteration_times_s": runs, "precision": precision, "sdpa_backend": sdpa_backend,
            "energy_j_per_clip": joules / clips if meter is not None and meter.available else None,
            "energy_how": None if meter is None else ("NVML total energy over the timed iterations (whole board)"
                                                      if meter.available else meter.reason),
            "timing_input": "random normal" if inputs is None else "real clips from the evaluated dataset",
            "timer": "cuda_events" if device.type == "cuda" else "perf_counter"}


def timed_step_cpu(model, x) -> float:
    """Seconds of one forward (perf_counter)."""
    t0 = time.perf_counter()
    model(x)
    return time.perf_counter() - t0


def timed_step_cuda(model, x) -> float:
    """Seconds of one forward between CUDA events, synchronised."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    model(x)
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict:
    """CUDA: max allocated/reserved since the last reset. CPU: this process's peak RSS so far."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return {"peak_mem_gib": torch.cuda.max_memory_allocated(device) / 2 ** 30,
                "peak_mem_reserved_gib": torch.cuda.max_memory_reserved(device) / 2 ** 30,
                "peak_mem_kind": "cuda_max_allocated"}
    return {"peak_mem_gib": max_rss_bytes() / 2 ** 30, "peak_mem_kind": "cpu_process_peak_rss"}


def max_rss_bytes() -> int:
    """This process's peak resident set size so far, in bytes (``ru_maxrss``: bytes on macOS, KiB elsewhere)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024
