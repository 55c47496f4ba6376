"""One cell's pieces: the job, its progress, its weights, its built model and dataset, its cost
measurements and the provenance only a worker knows. ``harness.run.group`` runs cells (one, or several
sharing one decoding pass); the Slurm shard worker uses the same pieces.

A cell never raises: any failure becomes a record with ``status: failed`` and the error, so that
a suite goes on and the leaderboard shows the failure.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
import typing as tp



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
    """Run ``job`` alone and write its record to the store; returns the record."""
    from harness.run.group import run_group

    return run_group([job], callback)[0]


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
    from harness.data import build_dataset
    from harness.measure.device import resolve_device
    from harness.models.compatibility import protocol_problems

    ev, me = config["eval"], config["measure"]
    if me.get("threads"):
        torch.set_num_threads(int(me["threads"]))
    torch.manual_seed(me.get("seed", 0))
    device = resolve_device(ev.get("device", "auto"))
    precision(config, device)  # a regime the device cannot run fails here, before any work
    from harness.training import resolve_checkpoint

    checkpoint = resolve_checkpoint(config, store_root)
    method = config["method"]
    finetune = None
    if method.get("finetune"):
        from harness.training import META, run_dir

        from harness.files import MAX_RECORD_BYTES, read_json

        meta = read_json(os.path.join(run_dir(store_root, method["finetune"]["key"]), META), MAX_RECORD_BYTES,
                         what="fine-tune meta.json")
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


def precision(config: dict, device) -> str:
    """The cell's precision (``eval.precision``; ``measure.precision`` must agree: accuracy is evaluated
    in the precision it is timed in), checked against the device."""
    from harness.measure.regime import validate_precision, validate_sdpa_backend

    ev, me = config["eval"], config["measure"]
    chosen = ev.get("precision", "fp32")
    if me.get("precision") not in (None, chosen):
        raise ValueError(f"measure.precision {me['precision']!r} differs from eval.precision {chosen!r}: "
                         "accuracy is evaluated in the precision it is timed in; set one of them")
    validate_sdpa_backend(me.get("sdpa_backend", "auto"))
    return validate_precision(chosen, device)


def regime(config: dict, device) -> tp.Callable[[], tp.ContextManager]:
    """The context every forward of the cell runs under: autocast to its precision, its SDPA backend."""
    from harness.measure.regime import regime_context

    chosen, sdpa = precision(config, device), config["measure"].get("sdpa_backend", "auto")
    return lambda: regime_context(device, chosen, sdpa)


def regime_fields(config: dict, setup: CellSetup) -> dict:
    """Precision, SDPA backend (asked for, and the kernel each block ran: one profiled forward), versions
    and device: what makes two figures comparable."""
    import torch

    from harness.measure.kernels import probe_attention_kernels
    from harness.measure.regime import regime_record

    me, cfg = config["measure"], setup.model.cfg
    out = regime_record(setup.device, precision(config, setup.device), me.get("sdpa_backend", "auto"))
    x = torch.randn(1, cfg.in_chans, cfg.num_frames, cfg.img_size, cfg.img_size, device=setup.device)
    try:
        out["sdpa_backend_per_block"] = probe_attention_kernels(setup.model, x, regime(config, setup.device))
    except Exception as err:  # noqa: BLE001 -- a model the profiler cannot follow: say so, keep the cell
        out["sdpa_backend_per_block"] = None
        out["sdpa_backend_probe_error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
    out["compile_mode"] = me.get("compile", "off")
    return out


def check_flops(setup: CellSetup, progress: Progress) -> dict:
    """fvcore's count of one forward against the analytic count; raises when they disagree."""
    import torch

    from harness.measure.flops import fvcore_macs, model_macs

    model, device, cfg = setup.model, setup.device, setup.model.cfg
    progress("count FLOPs (fvcore)", 0, 1, force=True)
    clip = torch.randn(1, cfg.in_chans, cfg.num_frames, cfg.img_size, cfg.img_size, device=device)
    with torch.inference_mode():
        model(clip)  # a plain forward: during fvcore's jit trace shapes are tensors
    analytic = model_macs(model).total
    counted, unexpected = fvcore_macs(model, clip)
    from importlib.metadata import version

    check = {"counter": f"fvcore {version('fvcore')} FlopCountAnalysis + SDPA handle",
             "gmacs_counted": counted / 1e9, "gmacs_analytic": analytic / 1e9, "unexpected_ops": unexpected}
    if unexpected or abs(counted - analytic) > 1e-3 * analytic:
        raise RuntimeError(f"GMACs cross-check failed: analytic {analytic / 1e9:.4f} vs fvcore "
                           f"{counted / 1e9:.4f}, uncounted ops {unexpected}")
    return check


def throughput_subject(setup: CellSetup, config: dict) -> dict:
    """What ``interleaved_throughput`` times for a cell: static methods on random input of the true clip
    shape, adaptive ones (whose work depends on the data) on real clips of the evaluated dataset."""
    import torch

    from harness.data.video_dataset import real_clips

    me, cfg = config["measure"], setup.model.cfg
    adaptive = _capabilities(config["method"]["name"])["adaptive_token_count"]
    shape = (me["batch_size"], cfg.in_chans, cfg.num_frames, cfg.img_size, cfg.img_size)
    x = real_clips(setup.dataset, me["batch_size"]) if adaptive else torch.randn(*shape)
    from harness.measure.compiled import compile_for_timing, count_after, public

    context = regime(config, setup.device)
    x = x.to(setup.device)
    model, info = compile_for_timing(setup.model, x, mode=me.get("compile", "off"), dynamic=True if adaptive else None,
                                     context=context)
    if model is None:  # a method that does not compile: timed eager, the failure recorded in its row
        model = setup.model
    subject = {"model": model, "x": x, "warmup_iters": me["warmup_iters"], "context": context,
               "warmup_s": me["warmup_s"], "timed_iters": me["timed_iters"], "min_timed_s": me["min_timed_s"],
               "repeats": me["repeats"], "compile": info,
               "timing_input": "real clips from the evaluated dataset" if adaptive else "random normal"}
    if info["compile_mode"] != "off":
        subject["after_warmup"] = lambda: count_after(info, "recompiles")
    subject["compile_public"] = lambda: public(info)
    return subject


def cell_runtime(setup: CellSetup, config: dict, manifest: dict, attention_kernel: tp.List[str]) -> dict:
    """The provenance fields only a worker knows (device, threads, hashes, kernels, numerics, the
    decoder's distribution and version)."""
    import torch

    from harness.data.decode import decoder_provenance
    from harness.measure.device import device_name, numerics_state
    from harness.models import hf
    from harness.provenance import numerics_code

    me, method = config["measure"], config["method"]
    return {"device": device_name(setup.device), "torch_threads": torch.get_num_threads(),
            "seed": me.get("seed", 0), "dataset_manifest": manifest,
            "checkpoint_sha256": hf.content_key(setup.checkpoint) if setup.checkpoint else None,
            "checkpoint_layout": setup.model.checkpoint_layout,
            "class_names": getattr(setup.model, "class_names", None),
            "attention_kernel_per_block": list(attention_kernel),
            "numerics": numerics_state(setup.device, precision(config, setup.device)),
            "reducer": setup.model.describe(),
            "method_capabilities": _capabilities(method["name"]),
            "numerics_code": numerics_code(method["name"], method.get("params")),
            **decoder_provenance(config["dataset"])}


def _capabilities(name: str) -> dict:
    import methods

    return methods.get_method(name).capabilities()
