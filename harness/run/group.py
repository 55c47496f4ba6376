"""Run cells that share a test protocol in one worker: decode once, forward every model, time them interleaved.

``CellSpec.share_key`` says which cells may share: the same dataset dict (videos, sampler, views, transforms)
and the same ``eval`` settings that decide batching and the device. ``plan_groups`` packs the cells
of each share key into groups whose models fit in memory together (``MEMORY_FRACTION`` of RAM, by
``memory_estimate``: weights + one batch of activations); a cell too big to share runs alone.

A group runs as one ``run.task.GroupTask``: ``prepare_cells`` builds every cell's model; the task's sink
evaluates them all on one pass over the data (locally ``measure.accuracy.evaluate_models``: each batch
decoded once, each model with its own accumulator, so each record equals the cell's own evaluation);
``measure_costs`` checks each cell's GMACs with fvcore alone, times throughput interleaved over the group
(``measure.interleaved``) and measures peak memory per cell alone at its evaluation batch (CUDA: the other
models moved to the CPU; CPU: the model's weights plus the peak RSS increase of one forward, with the peak
reset through /proc/self/clear_refs, else in a fresh process: ``run.memory_probe``). A failure in one cell
fails that cell only.
"""
from __future__ import annotations

import os
import typing as tp

from harness.run import record as rec
from harness.run.cell import CellJob, Progress, check_flops, regime_fields, throughput_subject
from harness.suite import CellSpec

MEMORY_FRACTION = 0.5  # of physical RAM (or GPU memory) that the models of one group may take together


def memory_estimate(spec: CellSpec) -> int:
    """Bytes a cell's model needs resident during evaluation: fp32 weights plus the activations of one
    evaluation batch (tokens x width x the MLP's 4x, a few buffers deep). An upper-end estimate from the
    config alone (no model is built)."""
    cfg = spec.backbone_config()
    width, depth, tokens = cfg.embed_dim, cfg.depth, cfg.num_tokens
    weights = depth * 12 * width * width + cfg.num_classes * width
    views = spec.eval.batch_size * max(1, int(spec.dataset.get("num_clips", 1)) * int(spec.dataset.get("num_crops", 1)))
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
        if not cell.eval.share_decode:
            order.append([cell])
            continue
        need = memory_estimate(cell)
        groups = by_key.setdefault(cell.share_key, [])
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
            setups[job.key] = prepare_cell(job.spec, progress, job.store_root)
        except Exception as err:  # noqa: BLE001 -- a failed cell is a result, not a crash
            failed[job.key] = rec.error_of(err)
    return setups, failed


def measure_costs(jobs: tp.Sequence[CellJob], setups: dict, progress: Progress) -> tp.Dict[str, tp.Any]:
    """``{key: (throughput and memory metrics, fvcore check)}`` or ``{key: exception}`` per cell of ``jobs``:
    fvcore's check and peak memory per cell alone, throughput interleaved over the cells (``setups``: every
    built model of the group, so that memory alone can move the others off the device). The Slurm shard 0
    of a group measures with it too."""
    from harness.measure.interleaved import interleaved_throughput

    out: tp.Dict[str, tp.Any] = {}
    metrics: tp.Dict[str, dict] = {j.key: {} for j in jobs}
    checks: tp.Dict[str, dict] = {j.key: {} for j in jobs}
    for job in jobs:
        try:
            if job.spec.measure.flops:
                checks[job.key] = check_flops(setups[job.key], progress)
        except Exception as err:  # noqa: BLE001
            out[job.key] = err
    timed_jobs = [j for j in jobs if j.key not in out and j.spec.measure.throughput]
    if timed_jobs:
        subjects = {}
        for job in timed_jobs:
            try:
                subjects[job.key] = throughput_subject(setups[job.key])
            except Exception as err:  # noqa: BLE001
                out[job.key] = err
        device = setups[timed_jobs[0].key].device
        total = max(j.spec.measure.repeats for j in timed_jobs)
        progress("throughput (interleaved)", 0, total, force=True)
        timed = interleaved_throughput(subjects, device=device,
                                       progress=lambda d, t: progress("throughput (interleaved)", d, t, force=True))
        for key, result in timed.items():
            if "error" in result:
                out[key] = RuntimeError(f"throughput: {result['error']}")
            else:
                metrics[key].update(result, compile=subjects[key]["compile_public"]())
    for job in jobs:
        if job.key in out or not job.spec.measure.memory:
            continue
        try:
            metrics[job.key].update(_memory_alone(job, setups))
        except Exception as err:  # noqa: BLE001
            out[job.key] = err
    for job in jobs:
        if job.key not in out:
            metrics[job.key]["regime"] = regime_fields(setups[job.key])
        out.setdefault(job.key, (metrics[job.key], checks[job.key]))
    return out


def _memory_alone(job: CellJob, setups: dict) -> dict:
    """Peak memory of one cell as if no other model were resident, at its evaluation batch."""
    import torch

    from harness.measure.speed import peak_memory, reset_peak_memory

    setup = setups[job.key]
    device = setup.device
    shape = setup.clip_shape(job.spec.eval.batch_size * setup.dataset.views)
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
    from harness.run.memory_probe import cpu_peak_memory

    return cpu_peak_memory(job.spec, setup.model, shape, job.store_root)
