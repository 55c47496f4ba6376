"""Run one cell: build the model, evaluate it on the dataset, measure it, write its record.

A cell never raises: any failure becomes a record with ``status: failed`` and the error, so that
a suite goes on and the leaderboard shows the failure.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
import typing as tp

from harness.run import record as rec


@dataclasses.dataclass
class CellJob:
    """Everything a worker needs to run one cell (picklable for submitit)."""

    key: str
    config: dict  # Cell.config(): backbone, dataset, method, eval, measure
    label: str  # e.g. "tome r=8"
    suite: dict  # {"name": ..., "file": ...}
    store_root: str
    progress_file: tp.Optional[str] = None  # where the worker reports progress for the parent


class Progress:
    """Reports (stage, done, total) to a JSON file the parent polls, at most a few times a second."""

    def __init__(self, path: tp.Optional[str], callback: tp.Optional[tp.Callable] = None):
        self.path, self.callback, self._last = path, callback, 0.0

    def __call__(self, stage: str, done: int, total: int, force: bool = False) -> None:
        if self.callback is not None:
            self.callback(stage, done, total)
        now = time.monotonic()
        if self.path is None or (not force and now - self._last < 0.3 and done < total):
            return
        self._last = now
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump({"stage": stage, "done": done, "total": total}, f)
        os.replace(tmp, self.path)


def run_cell(job: CellJob, callback: tp.Optional[tp.Callable] = None) -> dict:
    """Run ``job`` and write its record to the store; returns the record."""
    from harness.store import ResultStore

    progress = Progress(job.progress_file, callback)
    store = ResultStore(job.store_root)
    record = rec.new_record(job.key, job.config, job.label, job.suite, started_at=rec.now())
    runtime: dict = {}
    try:
        result = evaluate_cell(job.config, progress, store_root=job.store_root)
        runtime = result.pop("runtime")
        rec.set_ok(record, result, store.write_samples(job.key, result["samples"]).name)
    except Exception as err:  # noqa: BLE001 -- a failed cell is a result, not a crash
        rec.set_failed(record, rec.error_of(err))
    rec.finish(record, rec.this_process_provenance(runtime))
    store.write(record)
    return record


def resolve_checkpoint(config: dict, store_root: str) -> tp.Optional[str]:
    """The weights a cell evaluates: its fine-tune's output, its method entry's own checkpoint, or the backbone's."""
    ft = config["method"].get("finetune")
    if not ft:  # a method entry's own released weights, else the backbone's
        return config["method"].get("weights") or config["backbone"].get("checkpoint")
    from harness.training import MODEL, is_complete, run_dir as finetune_dir

    run_dir = finetune_dir(store_root, ft["key"])
    if not is_complete(run_dir):
        raise RuntimeError(f"fine-tuning run {ft['name']!r} ({ft['key']}) has not finished: no "
                           f"{os.path.join(run_dir, MODEL)} (run `python -m harness finetune SUITE`)")
    return os.path.join(run_dir, MODEL)


def evaluate_cell(config: dict, progress: Progress, store_root: str = "results") -> dict:
    """The measured part of a cell: accuracy, GMACs (checked by fvcore), throughput, memory."""
    from harness.measure.accuracy import evaluate_model
    from harness.measure.speed import reset_peak_memory

    ev = config["eval"]
    setup = prepare_cell(config, progress, store_root)
    reset_peak_memory(setup.device)
    accuracy = evaluate_model(setup.model, setup.dataset, device=setup.device, batch_size=ev["batch_size"],
                              num_workers=ev.get("num_workers", 0), limit=ev.get("limit"),
                              progress=progress)
    metrics = accuracy["metrics"]
    measured, flops_check = measure_cell(setup, config, progress)
    metrics.update(measured)
    runtime = cell_runtime(setup, config, accuracy["manifest"], accuracy["last_stats"]["attention_kernel"])
    return {"metrics": metrics, "coverage": accuracy["coverage"], "flops_check": flops_check,
            "runtime": runtime, "samples": accuracy["samples"], "finetune": setup.finetune}


@dataclasses.dataclass
class CellSetup:
    """A cell's built model and dataset (what evaluation and measurement share)."""

    model: tp.Any  # the VideoViT (or method network) on ``device``, weights loaded
    dataset: tp.Any  # the registered dataset config object (protocol + items())
    device: tp.Any  # torch.device
    checkpoint: tp.Optional[str]  # the weights file that was loaded
    finetune: tp.Optional[dict]  # summary of the fine-tuning run whose weights are evaluated


def prepare_cell(config: dict, progress: Progress, store_root: str = "results") -> CellSetup:
    """Threads, seed and device; the fine-tune's checkpoint if any; the model and the dataset."""
    import torch

    from harness.build import build_from_config
    from harness.data.registry import build_dataset
    from harness.measure.device import resolve_device
    from harness.models.compatibility import protocol_problems

    ev, me = config["eval"], config["measure"]
    if me.get("threads"):
        torch.set_num_threads(int(me["threads"]))
    torch.manual_seed(me.get("seed", 0))
    device = resolve_device(ev.get("device", "auto"))
    checkpoint = resolve_checkpoint(config, store_root)
    method = config["method"]
    finetune = None
    if method.get("finetune"):
        from harness.training import META, run_dir

        with open(os.path.join(run_dir(store_root, method["finetune"]["key"]), META)) as f:
            meta = json.load(f)
        finetune = {"name": method["finetune"]["name"], "key": meta["key"], "train_wall_s": meta["train_wall_s"],
                    "epochs": len(meta["history"]), "steps": meta["steps"], "device": meta["device"],
                    "last_epoch": meta["history"][-1] if meta["history"] else None}
    progress("build model", 0, 1, force=True)
    model = build_from_config(config["backbone"], method, checkpoint=checkpoint).to(device)
    dataset = build_dataset(config["dataset"])
    problems = protocol_problems(dataset, model.cfg)
    if problems:
        raise ValueError("the test protocol does not fit the model: " + "; ".join(problems))
    return CellSetup(model, dataset, device, checkpoint, finetune)


def measure_cell(setup: CellSetup, config: dict, progress: Progress) -> tp.Tuple[dict, dict]:
    """(throughput and memory metrics, fvcore cross-check) of the cell's model; raises on a GMACs mismatch."""
    import torch

    from harness.data.video_dataset import real_clips
    from harness.measure.flops import fvcore_macs, model_macs
    from harness.measure.speed import measure_throughput, peak_memory

    me, method, model, device = config["measure"], config["method"], setup.model, setup.device
    clip_shape = (model.cfg.in_chans, model.cfg.num_frames, model.cfg.img_size, model.cfg.img_size)
    metrics, flops_check = {}, {}
    if me.get("flops", True):
        progress("count FLOPs (fvcore)", 0, 1, force=True)
        clip = torch.randn(1, *clip_shape, device=device)
        with torch.inference_mode():
            model(clip)  # a plain forward: during fvcore's jit trace shapes are tensors
        analytic = model_macs(model).total
        counted, unexpected = fvcore_macs(model, clip)
        from importlib.metadata import version

        flops_check = {"counter": f"fvcore {version('fvcore')} FlopCountAnalysis + SDPA handle",
                       "gmacs_counted": counted / 1e9, "gmacs_analytic": analytic / 1e9,
                       "unexpected_ops": unexpected}
        if unexpected or abs(counted - analytic) > 1e-3 * analytic:
            raise RuntimeError(f"GMACs cross-check failed: analytic {analytic / 1e9:.4f} vs fvcore "
                               f"{counted / 1e9:.4f}, uncounted ops {unexpected}")
    if me.get("throughput", True):
        dataset = setup.dataset
        real = real_clips(dataset, me["batch_size"]) if _capabilities(method["name"])["adaptive_token_count"] else None
        metrics.update(measure_throughput(
            model, clip_shape, device=device, batch_size=me["batch_size"],
            warmup_iters=me["warmup_iters"], warmup_s=me["warmup_s"], timed_iters=me["timed_iters"],
            min_timed_s=me["min_timed_s"], repeats=me["repeats"],
            progress=lambda d, t: progress("throughput", d, t, force=True), inputs=real))
    if me.get("memory", True):
        metrics.update(peak_memory(device))
    return metrics, flops_check


def cell_runtime(setup: CellSetup, config: dict, manifest: dict, attention_kernel: tp.List[str]) -> dict:
    """The provenance fields only a worker knows (device, threads, hashes, kernels, numerics)."""
    import torch

    from harness.measure.device import device_name, numerics_state
    from harness.provenance import file_sha256, numerics_code

    me, method = config["measure"], config["method"]
    return {"device": device_name(setup.device), "torch_threads": torch.get_num_threads(),
            "seed": me.get("seed", 0), "dataset_manifest": manifest,
            "checkpoint_sha256": file_sha256(setup.checkpoint) if setup.checkpoint else None,
            "checkpoint_layout": getattr(setup.model, "checkpoint_layout", None),
            "attention_kernel_per_block": list(attention_kernel),
            "numerics": numerics_state(setup.device),
            "reducer": setup.model.describe(),
            "method_capabilities": _capabilities(method["name"]),
            "numerics_code": numerics_code(method["name"], method.get("params"))}


def _capabilities(name: str) -> dict:
    import methods

    return methods.get_method(name).capabilities()
