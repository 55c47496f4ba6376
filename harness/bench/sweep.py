"""Run the benchmark of a suite: fresh-process measurements, interleaved, with OOM back-off."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import typing as tp
from pathlib import Path


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

    def timing(self) -> dict:
        return {k: getattr(self, k) for k in ("warmup_iters", "warmup_s", "timed_iters", "min_timed_s")}


@dataclasses.dataclass
class Target:
    """One thing to time: a cell, possibly with the attention implementation forced."""

    cell: tp.Any
    fused_attention: tp.Optional[bool] = None  # None: as the cell's backbone says

    @property
    def key(self) -> str:
        return self.cell.key + ("" if self.fused_attention is None else
                                f"-{'fused' if self.fused_attention else 'explicit'}")

    @property
    def label(self) -> str:
        return self.cell.label + ("" if self.fused_attention is None else
                                  f" [{'fused' if self.fused_attention else 'explicit'} attention]")


def targets_of(suite, cfg: BenchConfig) -> tp.List[Target]:
    """Each distinct (backbone, method) cell once; dense also with explicit attention."""
    import methods

    seen, out = set(), []
    for cell in suite.cells():
        adaptive = methods.get_method(cell.method["name"]).adaptive_token_count
        ident = json.dumps([cell.backbone, cell.method, cell.dataset if adaptive else None], sort_keys=True)
        if ident in seen:
            continue
        seen.add(ident)
        out.append(Target(cell))
        if cfg.explicit_dense and cell.method["name"] == "dense" and cell.backbone.get("fused_attention", True):
            out.append(Target(cell, fused_attention=False))
    return out


def run_bench(suite, cfg: BenchConfig, *, store_root: str = "results", out: tp.TextIO = sys.stdout,
              runner: tp.Optional[tp.Callable[[dict], dict]] = None) -> tp.List[dict]:
    """Measure every target; returns (and writes) one bench record per target."""
    import methods

    runner = runner or (lambda req: run_worker(req, cfg.timeout_s))
    targets = targets_of(suite, cfg)
    sizes = sorted(set(cfg.batch_sizes) | {cfg.reference_batch_size})
    results: tp.Dict[str, tp.Dict[int, list]] = {t.key: {} for t in targets}
    too_big: tp.Dict[str, int] = {}  # target key -> smallest batch size that ran out of memory
    print(f"bench {suite.config.name}: {len(targets)} targets x batch sizes {sizes} x {cfg.repeats} repeats "
          f"(fresh process each)", file=out, flush=True)
    for rep in range(cfg.repeats):
        for bs in sizes:
            for t in targets:  # interleaved: every method once per (repeat, batch size)
                if t.key in too_big and bs >= too_big[t.key]:
                    continue
                adaptive = methods.get_method(t.cell.method["name"]).adaptive_token_count
                request = {"backbone": t.cell.backbone, "method": t.cell.method, "dataset": t.cell.dataset,
                           "batch_size": bs, "threads": cfg.threads, "device": cfg.device,
                           "fused_attention": t.fused_attention, "timing": cfg.timing(),
                           "real_inputs": adaptive, "load_checkpoint": adaptive, "store_root": store_root,
                           "overhead": rep == 0 and bs == cfg.reference_batch_size,
                           "seed": 0}  # same weights in every repeat: an adaptive model's work depends on them
                res = runner(request)
                if res.get("oom"):
                    too_big[t.key] = min(bs, too_big.get(t.key, bs))
                    print(f"  {t.label} bs={bs}: out of memory, larger batches skipped", file=out, flush=True)
                    continue
                results[t.key].setdefault(bs, []).append(res)
                print(f"  [{rep + 1}/{cfg.repeats}] {t.label} bs={bs}: {res['clips_per_s']:.3g} clips/s",
                      file=out, flush=True)
    records = [_record(t, results[t.key], too_big.get(t.key), cfg, suite) for t in targets]
    folder = Path(store_root) / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    for rec in records:
        tmp = folder / f"{rec['key']}.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(rec, indent=2, sort_keys=True))
        os.replace(tmp, folder / f"{rec['key']}.json")
    return records


def run_worker(request: dict, timeout_s: float) -> dict:
    """``python -m harness.bench.worker`` in a fresh process; its last ``RESULT`` line."""
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    proc = subprocess.run([sys.executable, "-m", "harness.bench.worker", json.dumps(request)],
                          capture_output=True, text=True, timeout=timeout_s, env=env)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        if any("out of memory" in l.lower() for l in tail) or proc.returncode in (-9, 137):
            return {"oom": True, "batch_size": request["batch_size"], "error": " | ".join(tail)}
        raise RuntimeError(f"bench worker failed (exit {proc.returncode}): " + " | ".join(tail))
    return json.loads(lines[-1][len("RESULT "):])


def _record(target: Target, by_bs: tp.Dict[int, list], oom_at: tp.Optional[int], cfg: BenchConfig, suite) -> dict:
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
        sweep.append(entry)
    first = next((r for runs in by_bs.values() for r in runs), {})
    overhead = next((r["overhead"] for runs in by_bs.values() for r in runs if "overhead" in r), None)
    latency = None
    if 1 in by_bs:
        times = sorted(t for r in by_bs[1] for t in r["iteration_times_s"])
        latency = {"p50_ms": 1e3 * _percentile(times, 50), "p90_ms": 1e3 * _percentile(times, 90),
                   "iterations": len(times)}
    return {"schema": 1, "key": target.key, "cell_key": target.cell.key, "label": target.label,
            "fused_attention_forced": target.fused_attention,
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
