"""Throughput of several models timed in the same stretch of time, in short slices: A C B ... B A C ...

Cells of one leaderboard are compared by their speedup over dense, so their clips/s must come from the
same conditions. Each model is warmed up; then each repeat is made of cycles, and in every cycle each model
runs one slice (``1 / SLICES`` of its repeat's iterations and seconds) in a seeded random order. A repeat of
one cell and dense's repeat are then taken within seconds of each other, over the same stretch, so a load
change on a shared machine slows them alike instead of whichever cell ran at that moment, and no cell always
follows the same model.

Two signs of a machine that was not quiet are recorded at each repeat: the 1-minute load average, and the
share of the machine's CPU time that other processes took while it ran (from ``/proc/stat`` less this
process's own CPU time: direct, where the load average lags by a minute). A figure is flagged unreliable when
its repeats spread by more than ``MAX_IQR`` of their median, the load average exceeded the machine's cores,
or other processes took more than ``MAX_OTHERS_CPU`` of the CPUs. Under contention the ratios themselves
move (a compute-bound dense model loses more to a competing process than a dispatch-bound small one), so
such a run's speedups are not comparable with a quiet one's. Every subject of one call gets the same
``timing.session`` id: a report pairs two cells' repeats (the speedup of a cell is the median of its
per-repeat ratios to dense, ``harness.report.stats.paired_ratio``) only within a session.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import resource
import statistics
import time
import typing as tp
import uuid

import torch

MAX_IQR = 0.10  # IQR / median of a cell's repeats above which its speedup is not trusted
MAX_OTHERS_CPU = 0.10  # share of the machine's CPU time other processes may take while a repeat is timed
SLICES = 5  # a repeat is cut into this many slices per model, interleaved over the models


def _step(model, x, device, context=contextlib.nullcontext) -> float:
    from harness.measure.speed import timed_step_cpu, timed_step_cuda

    with context():
        return (timed_step_cuda if device.type == "cuda" else timed_step_cpu)(model, x)


def _load() -> tp.Optional[float]:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


class CpuShare:
    """The share of all CPUs' time that processes other than this one used between ``start`` and ``stop``
    (Linux ``/proc/stat``; None elsewhere). Steal time counts as taken by others."""

    def __init__(self) -> None:
        self._start: tp.Optional[tp.Tuple[float, float, float]] = None

    @staticmethod
    def _sample() -> tp.Optional[tp.Tuple[float, float, float]]:
        try:
            with open("/proc/stat") as f:
                fields = f.readline().split()
            tick = os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, AttributeError):
            return None
        if not fields or fields[0] != "cpu":
            return None
        values = [int(v) for v in fields[1:]]
        busy = sum(values[i] for i in (0, 1, 2, 5, 6, 7) if i < len(values)) / tick  # user nice system irq softirq steal
        total = busy + sum(values[i] for i in (3, 4) if i < len(values)) / tick  # + idle iowait
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return busy, total, usage.ru_utime + usage.ru_stime

    def start(self) -> None:
        self._start = self._sample()

    def stop(self) -> tp.Optional[float]:
        end = self._sample()
        if self._start is None or end is None:
            return None
        busy, total, own = (b - a for a, b in zip(self._start, end))
        if total <= 0:
            return None
        return min(1.0, max(0.0, (busy - own) / total))


def interleaved_throughput(subjects: tp.Mapping[str, dict], *, device: torch.device, seed: int = 0,
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
    others: tp.List[tp.Optional[float]] = []
    rng = random.Random(seed)
    share = CpuShare()
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
            share.start()
            active = [n for n, s in subjects.items() if n not in results and rep < s["repeats"]]
            times: tp.Dict[str, tp.List[float]] = {n: [] for n in active}
            while True:
                todo = [n for n in active if len(times[n]) < subjects[n]["timed_iters"]
                        or sum(times[n]) < subjects[n]["min_timed_s"]]
                if not todo:
                    break
                rng.shuffle(todo)
                for name in todo:
                    s, done = subjects[name], times[name]
                    want_iters = len(done) + math.ceil(s["timed_iters"] / SLICES)
                    want_s = sum(done) + s["min_timed_s"] / SLICES
                    while len(done) < want_iters or sum(done) < want_s:
                        done.append(_step(s["model"], s["x"], device, s.get("context", contextlib.nullcontext)))
            for name in active:
                runs[name].append(times[name])
            others.append(share.stop())
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
        taken = [x for x in others[:s["repeats"]] if x is not None and x > MAX_OTHERS_CPU]
        if taken:
            warnings.append(f"other processes took up to {100 * max(taken):.0f}% of the CPUs while timing "
                            f"(> {100 * MAX_OTHERS_CPU:.0f}%)")
        results[name] = {
            "clips_per_s": median, "clips_per_s_iqr": q3 - q1, "clips_per_s_repeats": rates,
            "throughput_batch_size": bs, "warmup_iters": warm[name], "iteration_times_s": runs[name],
            "timing_input": s.get("timing_input", "random normal"),
            "timer": "cuda_events" if device.type == "cuda" else "perf_counter",
            "timing": {"interleaved_with": len(subjects), "slices_per_repeat": SLICES, "session": session,
                       "cores": cores, "load_avg_per_repeat": loads[:s["repeats"]],
                       "others_cpu_share_per_repeat": others[:s["repeats"]], "others_cpu_share_limit": MAX_OTHERS_CPU,
                       "reliable": not warnings, "warnings": warnings}}
    return results
