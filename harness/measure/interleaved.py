"""Throughput of several models timed in the same stretch of time: A B C ... A B C ...

Cells of one leaderboard are compared by their speedup over dense, so their clips/s must come from the
same conditions: each model is warmed up, then every repeat times each model once in turn, so a load
change on a shared machine slows every model alike instead of whichever cell ran at that moment. The
1-minute load average is recorded at each repeat, and a figure is flagged unreliable when its repeats
spread by more than ``MAX_IQR`` of their median or the load exceeded the machine's cores. Every subject of
one call gets the same ``timing.session`` id: a report pairs two cells' repeats (the speedup of a cell is
the median of its per-repeat ratios to dense, ``harness.report.stats.paired_ratio``) only within a session.
"""
from __future__ import annotations

import contextlib
import os
import statistics
import time
import typing as tp
import uuid

import torch

MAX_IQR = 0.10  # IQR / median of a cell's repeats above which its speedup is not trusted


def _step(model, x, device, context=contextlib.nullcontext) -> float:
    from harness.measure.speed import timed_step_cpu, timed_step_cuda

    with context():
        return (timed_step_cuda if device.type == "cuda" else timed_step_cpu)(model, x)


def _load() -> tp.Optional[float]:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def interleaved_throughput(subjects: tp.Mapping[str, dict], *, device: torch.device,
                           progress: tp.Callable[[int, int], None] = lambda done, total: None) -> tp.Dict[str, dict]:
    """Time every subject in turn; returns ``{name: throughput fields}``.

    A subject is ``{"model", "x" (the timed batch, on device), "warmup_iters", "warmup_s", "timed_iters",
    "min_timed_s", "repeats", "timing_input", "context" (optional: the regime each forward runs under),
    "after_warmup" (optional callable)}``. A subject whose forward raises gets ``{"error": ...}``.
    """
    results: tp.Dict[str, dict] = {}
    runs: tp.Dict[str, tp.List[tp.List[float]]] = {name: [] for name in subjects}
    warm: tp.Dict[str, int] = {}
    loads: tp.List[tp.Optional[float]] = []
    with torch.inference_mode():
        for name, s in subjects.items():
            try:
                start, iters = time.perf_counter(), 0
                while iters < s["warmup_iters"] or time.perf_counter() - start < s["warmup_s"]:
                    _step(s["model"], s["x"], device, s.get("context", contextlib.nullcontext))
                    iters += 1
                warm[name] = iters
                if s.get("after_warmup"):
                    s["after_warmup"]()
            except Exception as err:  # noqa: BLE001 -- reported in that cell's record
                results[name] = {"error": f"{type(err).__name__}: {err}"}
        total = max((s["repeats"] for s in subjects.values()), default=0)
        for rep in range(total):
            loads.append(_load())
            for name, s in subjects.items():
                if name in results or rep >= s["repeats"]:
                    continue
                times: tp.List[float] = []
                while len(times) < s["timed_iters"] or sum(times) < s["min_timed_s"]:
                    times.append(_step(s["model"], s["x"], device, s.get("context", contextlib.nullcontext)))
                runs[name].append(times)
            progress(rep + 1, total)
    cores = os.cpu_count() or 1
    session = uuid.uuid4().hex
    for name, s in subjects.items():
        if name in results:
            continue
        bs = int(s["x"].shape[0])
        rates = [bs * len(t) / sum(t) for t in runs[name]]
        q1, median, q3 = statistics.quantiles(rates, n=4) if len(rates) > 1 else (rates[0],) * 3
        median = statistics.median(rates)
        warnings = []
        if median > 0 and (q3 - q1) / median > MAX_IQR:
            warnings.append(f"repeats spread {100 * (q3 - q1) / median:.0f}% (IQR/median > {100 * MAX_IQR:.0f}%)")
        busy = [x for x in loads[:s["repeats"]] if x is not None and x > cores]
        if busy:
            warnings.append(f"load average up to {max(busy):.1f} on {cores} cores while timing")
        results[name] = {
            "clips_per_s": median, "clips_per_s_iqr": q3 - q1, "clips_per_s_repeats": rates,
            "throughput_batch_size": bs, "warmup_iters": warm[name], "iteration_times_s": runs[name],
            "timing_input": s.get("timing_input", "random normal"),
            "timer": "cuda_events" if device.type == "cuda" else "perf_counter",
            "timing": {"interleaved_with": len(subjects), "session": session, "cores": cores,
                       "load_avg_per_repeat": loads[:s["repeats"]], "reliable": not warnings, "warnings": warnings}}
    return results
