"""Run the benchmark of a suite: fresh-process measurements, interleaved, with OOM back-off."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import statistics
import sys
import typing as tp

from harness.layout import Layout
from harness.suite import CellSpec
from harness.suite.regime import DEFAULT as REGIME, Regime


@dataclasses.dataclass
class BenchConfig:
    batch_sizes: tp.List[int] = dataclasses.field(default_factory=lambda: [1, 8, 32, 64])
    repeats: int = 3  # fresh processes per (cell, batch size)
    reference_batch_size: int = 8  # where overhead is profiled and the efficiency table is read
    threads: tp.Optional[int] = None  # torch CPU threads (recorded); None = torch's default
    warmup_iters: int = 10  # warm-up: at least this many iterations ...
    warmup_s: float = 2.0  # ... and this many seconds
    timed_iters: int = 10  # timed loop: at least this many iterations ...
    min_timed_s: float = 2.0  # ... and this many seconds
    explicit_dense: bool = True  # also time dense with explicit-softmax attention (what probs-needing methods run)
    device: tp.Optional[str] = None  # None: cuda when available
    timeout_s: float = 1800.0  # per measurement process
    precisions: tp.List[str] = dataclasses.field(default_factory=lambda: [REGIME.precision])  # autocast regimes
    compile_modes: tp.List[str] = dataclasses.field(default_factory=lambda: [REGIME.compile])  # torch.compile regimes
    sdpa_backend: str = REGIME.sdpa_backend  # SDPA backend every target runs under (auto: torch's choice)
    dense_backends: tp.List[str] = dataclasses.field(default_factory=list)  # dense also forced to these
    energy: bool = True  # NVML joules per clip on CUDA (blank elsewhere)
    in_process: bool = False  # measure in this process (fast; a smoke test, not independent repeats)
    deadline_s: tp.Optional[float] = None  # stop starting measurements after this long (recorded)
    compile_backend: str = "inductor"

    def timing(self) -> dict:
        return {k: getattr(self, k) for k in ("warmup_iters", "warmup_s", "timed_iters", "min_timed_s")}

    def check(self, device: tp.Optional[str] = None) -> None:
        """Refuse a regime that cannot run before anything is measured (one clear error)."""
        from harness.measure.choices import COMPILE_MODES, PRECISIONS, SDPA_BACKENDS

        for field, values, allowed in (("precisions", self.precisions, PRECISIONS),
                                       ("compile_modes", self.compile_modes, COMPILE_MODES),
                                       ("dense_backends", self.dense_backends, SDPA_BACKENDS),
                                       ("sdpa_backend", [self.sdpa_backend], SDPA_BACKENDS)):
            for v in values:
                if v not in allowed:
                    import difflib

                    close = ["default"] if v in ("on", "true", "yes") and field == "compile_modes" else \
                        difflib.get_close_matches(str(v), allowed, n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    raise ValueError(f"bench {field}: {v!r} is not one of {'|'.join(allowed)}{hint}")
        import math

        counts = [("batch_sizes", b, 1, MAX_BATCH) for b in self.batch_sizes] + [
            ("repeats", self.repeats, 1, 1000), ("reference_batch_size", self.reference_batch_size, 1, MAX_BATCH),
            ("timed_iters", self.timed_iters, 1, 10 ** 6), ("warmup_iters", self.warmup_iters, 0, 10 ** 6)]
        if self.threads is not None:
            counts.append(("threads", self.threads, 1, 4096))
        if not self.batch_sizes:
            raise ValueError("bench batch_sizes: give at least one batch size, e.g. --batch-sizes 1,8,32")
        for field, value, lo, hi in counts:
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"bench {field}: expected a whole number within [{lo}, {hi}], got {value!r}")
        for field, value in (("min_timed_s", self.min_timed_s), ("warmup_s", self.warmup_s),
                             ("deadline_s", self.deadline_s)):
            if value is not None and not (math.isfinite(value) and 0 <= value <= 7 * 86400):
                raise ValueError(f"bench {field}: expected seconds within [0, 604800], got {value!r}")
        if "fp16" in self.precisions and (device or self.device or _default_device()) != "cuda":
            raise ValueError("bench precisions: fp16 runs on CUDA only (this bench runs on CPU); use bf16 or fp32")


MAX_BATCH = 65536  # clips per batch; past it every model runs out of memory long before (the sweep backs off)


@dataclasses.dataclass
class Target:
    """One thing to time: a cell, possibly with the attention implementation forced."""

    cell: tp.Any
    fused_attention: tp.Optional[bool] = None  # None: as the cell's backbone says
    precision: str = REGIME.precision
    compile: str = REGIME.compile
    sdpa_backend: str = REGIME.sdpa_backend
    forced_backend: bool = False  # dense timed under a backend a method is bound to (same-kernel baseline)

    @property
    def key(self) -> str:
        """The cell key plus what differs from the default regime (fp32, eager, torch's SDPA choice)."""
        parts = [] if self.fused_attention is None else ["fused" if self.fused_attention else "explicit"]
        parts += [] if self.precision == REGIME.precision else [self.precision]
        parts += [] if self.compile == REGIME.compile else [f"compile_{self.compile}"]
        parts += [] if self.sdpa_backend == REGIME.sdpa_backend else [f"sdpa_{self.sdpa_backend}"]
        return "-".join([self.cell.key] + parts)

    def spec(self, cfg: BenchConfig) -> CellSpec:
        """The cell as this target's worker builds and times it: the target's regime and attention, the bench's
        device, CPU threads (None: torch's default) and timing, one repeat per process."""
        cell = self.cell.with_regime(Regime(self.precision, self.sdpa_backend, self.compile))
        backbone = dict(cell.backbone)
        if self.fused_attention is not None:
            backbone["fused_attention"] = self.fused_attention
        return dataclasses.replace(cell, backbone=backbone, eval=dataclasses.replace(cell.eval, device=cfg.device or "auto"),
                                   measure=dataclasses.replace(cell.measure, threads=cfg.threads, repeats=1, **cfg.timing()))

    @property
    def label(self) -> str:
        """The method and the attention forced on it (the regime is shown per table, not per row)."""
        label = self.cell.label + ("" if self.fused_attention is None else
                                   f" [{'fused' if self.fused_attention else 'explicit'} attention]")
        return label + (f" [sdpa {self.sdpa_backend}]" if self.forced_backend else "")


def targets_of(suite, cfg: BenchConfig) -> tp.List[Target]:
    """Each distinct (backbone, method) cell once per regime (precision x compile mode); dense also with
    explicit attention and under each of ``cfg.dense_backends`` (the same-kernel baselines)."""
    import methods

    seen, cells = set(), []
    for cell in suite.cells():
        adaptive = methods.get_method(cell.method.name).adaptive_token_count
        ident = json.dumps([cell.backbone, cell.method.as_dict(), cell.dataset if adaptive else None], sort_keys=True)
        if ident not in seen:
            seen.add(ident)
            cells.append(cell)
    out = []
    for precision in cfg.precisions:
        for mode in cfg.compile_modes:
            regime = dict(precision=precision, compile=mode)
            for cell in cells:
                out.append(Target(cell, sdpa_backend=cfg.sdpa_backend, **regime))
                if cell.method.name != "dense":
                    continue
                if cfg.explicit_dense and cell.backbone.get("fused_attention", True):
                    out.append(Target(cell, fused_attention=False, sdpa_backend=cfg.sdpa_backend, **regime))
                for backend in cfg.dense_backends:
                    if backend != cfg.sdpa_backend:
                        out.append(Target(cell, sdpa_backend=backend, forced_backend=True, **regime))
    return out


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_bench(suite, cfg: BenchConfig, *, store_root: str = "results", out: tp.TextIO = sys.stdout,
              runner: tp.Optional[tp.Callable[[dict], dict]] = None) -> tp.List[dict]:
    """Measure every target; returns (and writes) one bench record per target."""
    import time

    from harness.report.safe import term

    cfg.check()
    if runner is None:
        runner = run_in_process if cfg.in_process else (lambda req: run_worker(req, cfg.timeout_s))
    targets = targets_of(suite, cfg)
    cells = {t.key: t.spec(cfg).to_json() for t in targets}
    sizes = sorted(set(cfg.batch_sizes) | {cfg.reference_batch_size})
    results: tp.Dict[str, tp.Dict[int, list]] = {t.key: {} for t in targets}
    too_big: tp.Dict[str, int] = {}  # target key -> smallest batch size that ran out of memory
    failed: tp.Dict[str, dict] = {}  # target key -> the failure (compile error, backend that cannot run)
    skipped: tp.Dict[str, tp.List[int]] = {}  # target key -> batch sizes not started (deadline)
    started = time.monotonic()
    print(f"bench {term(suite.config.name)}: {len(targets)} targets x batch sizes {sizes} x {cfg.repeats} repeats "
          f"({'in this process' if cfg.in_process else 'fresh process each'})", file=out, flush=True)
    for rep in range(cfg.repeats):
        for bs in sizes:
            for t in targets:  # interleaved: every method once per (repeat, batch size)
                if (t.key in too_big and bs >= too_big[t.key]) or t.key in failed:
                    continue
                if cfg.deadline_s is not None and time.monotonic() - started > cfg.deadline_s:
                    skipped.setdefault(t.key, []).append(bs)
                    continue
                request = {"cell": cells[t.key], "batch_size": bs, "store_root": store_root,
                           "overhead": rep == 0 and bs == cfg.reference_batch_size,
                           "energy": cfg.energy, "compile_backend": cfg.compile_backend}
                res = runner(request)
                if res.get("oom"):
                    too_big[t.key] = min(bs, too_big.get(t.key, bs))
                    print(f"  {term(t.label)} {_regime_text(t)} bs={bs}: out of memory, larger batches skipped",
                          file=out, flush=True)
                    continue
                if res.get("failed"):
                    failed[t.key] = dict(res, failed_at_batch_size=bs)
                    print(f"  {term(t.label)} {_regime_text(t)} bs={bs}: FAILED {term(res.get('error'))}", file=out, flush=True)
                    continue
                results[t.key].setdefault(bs, []).append(res)
                print(f"  [{rep + 1}/{cfg.repeats}] {term(t.label)} {_regime_text(t)} bs={bs}: "
                      f"{res['clips_per_s']:.3g} clips/s", file=out, flush=True)
    if skipped:
        print(f"  deadline of {cfg.deadline_s:.0f} s reached: {sum(map(len, skipped.values()))} measurements "
              "not started (recorded as skipped)", file=out, flush=True)
    records = [_record(t, results[t.key], too_big.get(t.key), cfg, suite, failed.get(t.key), skipped.get(t.key))
               for t in targets]
    folder = Layout(store_root).bench
    folder.mkdir(parents=True, exist_ok=True)
    for rec in records:
        tmp = folder / f"{rec['key']}.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(rec, indent=2, sort_keys=True))
        os.replace(tmp, folder / f"{rec['key']}.json")
    return records


def _regime_text(t: Target) -> str:
    return f"({t.precision}, compile {t.compile}, sdpa {t.sdpa_backend})"


def run_in_process(request: dict) -> dict:
    """``worker.measure`` here; the model is freed (and the CUDA cache emptied) afterwards."""
    import gc

    from harness.bench.worker import measure

    try:
        return measure(request)
    except MemoryError as err:
        return {"oom": True, "batch_size": request["batch_size"], "error": f"MemoryError: {err}"}
    finally:
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def run_worker(request: dict, timeout_s: float) -> dict:
    """``python -m harness.bench.worker`` in a fresh process (``harness.run.fresh``)."""
    from harness.run.fresh import run_fresh

    return {"batch_size": request["batch_size"], **run_fresh("harness.bench.worker", request, timeout_s)}


def _record(target: Target, by_bs: tp.Dict[int, list], oom_at: tp.Optional[int], cfg: BenchConfig, suite,
            failure: tp.Optional[dict] = None, skipped: tp.Optional[tp.List[int]] = None) -> dict:
    sweep = []
    for bs in sorted(by_bs):
        runs = by_bs[bs]
        rates = [r["clips_per_s"] for r in runs]
        q1, _, q3 = statistics.quantiles(rates, n=4) if len(rates) > 1 else (rates[0],) * 3
        entry = {"batch_size": bs, "clips_per_s": statistics.median(rates), "clips_per_s_iqr": q3 - q1,
                 # executed GMACs of one view at this batch size (adaptive methods: padded packing and
                 # the clips of the batch change it), mean over the repeats
                 "gmacs_per_view": statistics.fmean(r["gmacs_per_view"] for r in runs),
                 "clips_per_s_repeats": rates, "iteration_times_s": [r["iteration_times_s"] for r in runs],
                 "peak_mem_gib": max(r["peak_mem_gib"] for r in runs), "peak_mem_kind": runs[0]["peak_mem_kind"],
                 "loadavg": [r["loadavg"] for r in runs]}
        if "peak_rss_increase_gib" in runs[0]:
            entry["peak_rss_increase_gib"] = max(r["peak_rss_increase_gib"] for r in runs)
        if "peak_mem_reserved_gib" in runs[0]:
            entry["peak_mem_reserved_gib"] = max(r["peak_mem_reserved_gib"] for r in runs)
        energy = [r["energy_j_per_clip"] for r in runs if r.get("energy_j_per_clip") is not None]
        entry["energy_j_per_clip"] = statistics.median(energy) if energy else None
        compile_times = [r["compile_time_s"] for r in runs if r.get("compile_time_s") is not None]
        entry["compile_time_s"] = statistics.median(compile_times) if compile_times else None
        entry["compile_graph_breaks"] = max((r["compile_graph_breaks"] for r in runs
                                             if r.get("compile_graph_breaks") is not None), default=None)
        entry["recompiles"] = max((r["recompiles"] for r in runs if r.get("recompiles") is not None), default=None)
        entry["recompiles_during_timing"] = max((r["recompiles_during_timing"] for r in runs
                                                 if r.get("recompiles_during_timing") is not None), default=None)
        sweep.append(entry)
    first = next((r for runs in by_bs.values() for r in runs), failure or {})
    regime_keys = ("torch_version", "cuda_version", "device_name", "allow_tf32_matmul", "allow_tf32_cudnn",
                   "cudnn_version", "compile_backend", "compile_dynamic", "energy_how")
    overhead = next((r["overhead"] for runs in by_bs.values() for r in runs if "overhead" in r), None)
    latency = None
    if 1 in by_bs:
        times = sorted(t for r in by_bs[1] for t in r["iteration_times_s"])
        latency = {"p50_ms": 1e3 * _percentile(times, 50), "p90_ms": 1e3 * _percentile(times, 90),
                   "p99_ms": 1e3 * _percentile(times, 99), "iterations": len(times)}
    compiled = [e for e in sweep if e["compile_time_s"] is not None]
    return {"schema": 2, "key": target.key, "cell_key": target.cell.key, "label": target.label,
            "fused_attention_forced": target.fused_attention, "sdpa_backend_forced": target.forced_backend,
            "precision": target.precision, "compile_mode": target.compile, "sdpa_backend": target.sdpa_backend,
            "regime": {"precision": target.precision, "compile": target.compile, "sdpa_backend": cfg.sdpa_backend},
            **{k: first.get(k) for k in regime_keys},
            "sdpa_backend_per_block": first.get("sdpa_backend_per_block"),
            "compile_time_s": compiled[0]["compile_time_s"] if compiled else None,
            "recompiles": max((e["recompiles"] for e in sweep if e["recompiles"] is not None), default=None),
            "compile_graph_breaks": max((e["compile_graph_breaks"] for e in sweep
                                         if e["compile_graph_breaks"] is not None), default=None),
            "recompiles_during_timing": max((e["recompiles_during_timing"] for e in sweep
                                             if e["recompiles_during_timing"] is not None), default=None),
            "error": failure and failure.get("error"),
            "failed_at_batch_size": failure and failure["failed_at_batch_size"],
            "skipped_batch_sizes": sorted(set(skipped)) if skipped else [],
            "suite": {"name": suite.config.name, "file": str(suite.path)},
            "config": target.cell.config(), "bench": dataclasses.asdict(cfg),
            "gmacs_per_view": first.get("gmacs_per_view"), "attention_kernel_per_block": first.get("attention_kernel_per_block"),
            "sweep": sweep, "largest_batch_size": max(by_bs) if by_bs else None, "oom_at_batch_size": oom_at,
            "latency_bs1": latency, "overhead": overhead, "device": first.get("device"),
            "torch_threads": first.get("torch_threads"), "timer": first.get("timer"),
            "timing_input": first.get("timing_input"),
            "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def _percentile(sorted_values: tp.Sequence[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(sorted_values), q))
