"""Run cells that share a test protocol in one worker: decode once, forward every model, time them interleaved.

``share_key`` says which cells may share: the same dataset dict (videos, sampler, views, transforms)
and the same ``eval`` settings that decide batching and the device. ``plan_groups`` packs the cells
of each share key into groups whose models fit in memory together (``MEMORY_FRACTION`` of RAM, by
``memory_estimate``: weights + one batch of activations); a cell too big to share runs alone.

``run_group`` then, in one process: builds every cell's model; evaluates them all on one pass over
the data (``measure.accuracy.evaluate_models``: each batch decoded once, each model with its own
accumulator, so each record equals the cell's own evaluation); checks each cell's GMACs with fvcore
alone; times throughput interleaved over the group (``measure.interleaved``); measures peak memory
per cell alone at its evaluation batch (CUDA: the other models moved to the CPU; CPU: the model's
weights plus the peak RSS increase of one forward, with the peak reset through /proc/self/clear_refs,
else a fresh probe process); writes one record per cell. A failure in one cell fails that cell only.
"""
from __future__ import annotations

import json
import os
import typing as tp

from harness.run import record as rec
from harness.run.cell import CellJob, Progress

MEMORY_FRACTION = 0.5  # of physical RAM (or GPU memory) that the models of one group may take together


def share_key(config: dict) -> str:
    """Cells with the same key can be evaluated on one decoding pass."""
    ev = {k: v for k, v in config["eval"].items() if k not in ("num_workers", "share_decode")}
    return json.dumps({"dataset": config["dataset"], "eval": ev}, sort_keys=True, default=str)


def memory_estimate(config: dict) -> int:
    """Bytes a cell's model needs resident during evaluation: fp32 weights plus the activations of one
    evaluation batch (tokens x width x the MLP's 4x, a few buffers deep). An upper-end estimate from the
    config alone (no model is built)."""
    from harness.models.dims import backbone_config

    cfg = backbone_config(config["backbone"])
    width, depth, tokens = cfg.embed_dim, cfg.depth, cfg.num_tokens
    weights = depth * 12 * width * width + cfg.num_classes * width
    views = config["eval"]["batch_size"] * max(1, int(config["dataset"].get("num_clips", 1)) *
                                               int(config["dataset"].get("num_crops", 1)))
    span = getattr(cfg, "attention_span", tokens)  # keys each query sees (Video Swin: a window)
    activations = views * tokens * (width * 8 + span * cfg.num_heads)  # x, qkv, MLP hidden, one attn map
    return 4 * (weights + activations)


def _budget() -> int:
    try:
        return int(MEMORY_FRACTION * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def plan_groups(cells: tp.Sequence[tp.Any], share: bool = True, budget: tp.Optional[int] = None) -> tp.List[list]:
    """Cells in groups, in suite order of each group's first cell. Without ``share`` every cell is its own
    group. A group is filled in suite order until the next cell's ``memory_estimate`` would exceed the
    budget; then a new group of the same share key starts (so a suite too large for memory falls back
    to smaller groups, down to one cell each)."""
    if not share:
        return [[c] for c in cells]
    budget = _budget() if budget is None else budget
    by_key: tp.Dict[str, tp.List[tp.List[tp.Any]]] = {}
    used: tp.Dict[int, int] = {}
    order: tp.List[tp.List[tp.Any]] = []
    for cell in cells:
        config = cell.config()
        if not config["eval"].get("share_decode", True):
            order.append([cell])
            continue
        need = memory_estimate(config)
        groups = by_key.setdefault(share_key(config), [])
        if groups and used[id(groups[-1])] + need <= budget:
            groups[-1].append(cell)
            used[id(groups[-1])] += need
        else:
            group = [cell]
            groups.append(group)
            used[id(group)] = need
            order.append(group)
    return order


def prepare_cells(jobs: tp.Sequence[CellJob], progress: Progress) -> tp.Tuple[dict, dict]:
    """``({key: CellSetup}, {key: error})``: each cell built, a cell that cannot be built an error, not a crash."""
    from harness.run.cell import prepare_cell

    setups, failed = {}, {}
    for job in jobs:
        try:
            setups[job.key] = prepare_cell(job.config, progress, job.store_root)
        except Exception as err:  # noqa: BLE001 -- a failed cell is a result, not a crash
            failed[job.key] = rec.error_of(err)
    return setups, failed


def run_group(jobs: tp.Sequence[CellJob], callback: tp.Optional[tp.Callable] = None) -> tp.List[dict]:
    """Run ``jobs`` (cells with one ``share_key``) and write their records; returns them in order."""
    from harness.measure.accuracy import evaluate_models
    from harness.measure.speed import reset_peak_memory
    from harness.store import ResultStore

    progress = Progress(jobs[0].progress_file, callback)
    store = ResultStore(jobs[0].store_root)
    records = {j.key: rec.new_record(j.key, j.config, j.label, j.suite, started_at=rec.now()) for j in jobs}
    runtimes: tp.Dict[str, dict] = {}
    setups, failed = prepare_cells(jobs, progress)
    accuracy: tp.Dict[str, tp.Any] = {}
    if setups:
        first = next(iter(setups.values()))
        ev = jobs[[j.key for j in jobs].index(next(iter(setups)))].config["eval"]
        for setup in setups.values():
            reset_peak_memory(setup.device)
        from harness.run.cell import regime

        configs = {j.key: j.config for j in jobs}
        accuracy = evaluate_models({k: s.model for k, s in setups.items()}, first.dataset, device=first.device,
                                   batch_size=ev["batch_size"], num_workers=ev.get("num_workers", 0),
                                   limit=ev.get("limit"), progress=progress,
                                   contexts={k: regime(configs[k], s.device) for k, s in setups.items()})
        for key, result in accuracy.items():
            if isinstance(result, BaseException):
                failed[key] = rec.error_of(result)
    live = [j for j in jobs if j.key in setups and j.key not in failed]
    costs = measure_costs(live, setups, progress)
    for job in jobs:
        record = records[job.key]
        if job.key in failed:
            rec.set_failed(record, failed[job.key])
        elif isinstance(costs.get(job.key), BaseException):
            rec.set_failed(record, rec.error_of(costs[job.key]))
        else:
            from harness.run.cell import cell_runtime

            setup, result = setups[job.key], accuracy[job.key]
            metrics, flops_check = costs[job.key]
            metrics = {**result["metrics"], **metrics}
            runtimes[job.key] = cell_runtime(setup, job.config, result["manifest"],
                                             result["last_stats"]["attention_kernel"])
            record["execution"] = {"shared_decode": {"cells": len(jobs), "group": [j.label for j in jobs]}}
            rec.set_ok(record, {"metrics": metrics, "coverage": result["coverage"], "flops_check": flops_check,
                                "finetune": setup.finetune},
                       store.write_samples(job.key, result["samples"]).name)
        from harness.data.decode import decoder_provenance

        runtime = runtimes.get(job.key) or decoder_provenance(job.config["dataset"])  # a failed cell: the decoder
        rec.finish(record, rec.this_process_provenance(runtime))
        store.write(record)
    return [records[j.key] for j in jobs]


def measure_costs(jobs: tp.Sequence[CellJob], setups: dict, progress: Progress) -> tp.Dict[str, tp.Any]:
    """``{key: (throughput and memory metrics, fvcore check)}`` or ``{key: exception}`` per cell of ``jobs``:
    fvcore's check and peak memory per cell alone, throughput interleaved over the cells (``setups``: every
    built model of the group, so that memory alone can move the others off the device). The Slurm shard 0
    of a group measures with it too."""
    from harness.measure.interleaved import interleaved_throughput
    from harness.run.cell import check_flops, regime_fields, throughput_subject

    out: tp.Dict[str, tp.Any] = {}
    metrics: tp.Dict[str, dict] = {j.key: {} for j in jobs}
    checks: tp.Dict[str, dict] = {j.key: {} for j in jobs}
    for job in jobs:
        try:
            if job.config["measure"].get("flops", True):
                checks[job.key] = check_flops(setups[job.key], progress)
        except Exception as err:  # noqa: BLE001
            out[job.key] = err
    timed_jobs = [j for j in jobs if j.key not in out and j.config["measure"].get("throughput", True)]
    if timed_jobs:
        subjects = {}
        for job in timed_jobs:
            try:
                subjects[job.key] = throughput_subject(setups[job.key], job.config)
            except Exception as err:  # noqa: BLE001
                out[job.key] = err
        device = setups[timed_jobs[0].key].device
        total = max(j.config["measure"]["repeats"] for j in timed_jobs)
        progress("throughput (interleaved)", 0, total, force=True)
        timed = interleaved_throughput(subjects, device=device,
                                       progress=lambda d, t: progress("throughput (interleaved)", d, t, force=True))
        for key, result in timed.items():
            if "error" in result:
                out[key] = RuntimeError(f"throughput: {result['error']}")
            else:
                metrics[key].update(result, compile=subjects[key]["compile_public"]())
    for job in jobs:
        if job.key in out or not job.config["measure"].get("memory", True):
            continue
        try:
            metrics[job.key].update(_memory_alone(job, setups))
        except Exception as err:  # noqa: BLE001
            out[job.key] = err
    for job in jobs:
        if job.key not in out:
            metrics[job.key]["regime"] = regime_fields(job.config, setups[job.key])
        out.setdefault(job.key, (metrics[job.key], checks[job.key]))
    return out


def _memory_alone(job: CellJob, setups: dict) -> dict:
    """Peak memory of one cell as if no other model were resident, at its evaluation batch."""
    import torch

    from harness.measure.speed import peak_memory, reset_peak_memory

    setup = setups[job.key]
    device, cfg = setup.device, setup.model.cfg
    views = job.config["eval"]["batch_size"] * setup.dataset.views
    shape = (views, cfg.in_chans, cfg.num_frames, cfg.img_size, cfg.img_size)
    if device.type == "cuda":
        others = [s for k, s in setups.items() if k != job.key]
        for s in others:
            s.model.to("cpu")
        try:
            torch.cuda.empty_cache()
            reset_peak_memory(device)
            with torch.inference_mode():
                setup.model(torch.randn(*shape, device=device))
            return peak_memory(device)
        finally:
            for s in others:
                s.model.to(device)
    peak = _cpu_forward_peak(setup.model, shape)
    if peak is None:  # no resettable peak RSS (not Linux): a fresh process per cell
        return _cpu_memory_probe(job)
    return peak


def _cpu_forward_peak(model, shape) -> tp.Optional[dict]:
    """The model's weights plus the peak RSS increase of one forward at ``shape`` (Linux: the peak RSS is
    reset through /proc/self/clear_refs), so other resident models do not count."""
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
    weights = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    return {"peak_mem_gib": (weights + max(0, peak - before) * 1024) / 2 ** 30,
            "peak_mem_kind": "cpu_weights_plus_forward_peak_rss"}


def _cpu_memory_probe(job: CellJob) -> dict:
    """Peak RSS increase of building and running the cell's model in a fresh process (``harness bench``'s
    worker, one short timing), at the evaluation batch."""
    import methods
    from harness.bench.sweep import run_worker

    config = job.config
    adaptive = methods.get_method(config["method"]["name"]).adaptive_token_count
    request = {"backbone": config["backbone"], "method": config["method"], "dataset": config["dataset"],
               "batch_size": config["eval"]["batch_size"], "threads": config["measure"].get("threads"),
               "device": "cpu", "fused_attention": None, "real_inputs": adaptive, "load_checkpoint": True,
               "store_root": job.store_root, "overhead": False, "seed": config["measure"].get("seed", 0),
               "timing": {"warmup_iters": 1, "warmup_s": 0.0, "timed_iters": 1, "min_timed_s": 0.0}}
    result = run_worker(request, timeout_s=600)
    if result.get("oom"):
        raise MemoryError(f"out of memory in the memory probe: {result.get('error')}")
    return {"peak_mem_gib": result["peak_rss_increase_gib"], "peak_mem_kind": "cpu_peak_rss_increase_fresh_process"}
