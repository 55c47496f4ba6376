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

from harness.suite import CellSpec, Regime
from harness.suite.regime import DEFAULT as REGIME


@dataclasses.dataclass
class CellJob:
    """Everything a worker needs to run one cell (picklable for submitit: the spec pickles as JSON)."""

    spec: CellSpec
    store_root: str
    progress_file: tp.Optional[str] = None  # where the worker reports progress for the parent

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def label(self) -> str:
        return self.spec.label


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


@dataclasses.dataclass
class CellSetup:
    """A cell's built model and dataset (what evaluation and measurement share)."""

    spec: CellSpec
    model: tp.Any  # the VideoViT (or method network) on ``device``, weights loaded (unless built without)
    dataset: tp.Any  # the registered dataset config object (protocol + items()); None when built without data
    device: tp.Any  # torch.device
    regime: Regime  # checked against ``device`` once, when the cell was built
    checkpoint: tp.Optional[str]  # the weights file that was loaded (None: random weights)
    finetune: tp.Optional[dict]  # summary of the fine-tuning run whose weights are evaluated

    def context(self) -> tp.ContextManager:
        """The context every forward of the cell runs under (its regime on its device)."""
        return self.regime.context(self.device)

    def clip_shape(self, batch: int = 1) -> tp.Tuple[int, int, int, int, int]:
        """``(batch, channels, frames, height, width)`` of the built model's input."""
        cfg = self.model.cfg
        return batch, cfg.in_chans, cfg.num_frames, cfg.img_size, cfg.img_size


def prepare_cell(spec: CellSpec, progress: Progress, store_root: str = "results", *, weights: bool = True,
                 data: bool = True) -> CellSetup:
    """Threads, seed and device; the regime checked against the device (before any work); the fine-tune's
    checkpoint if any; the model and the dataset.

    ``weights=False`` builds the model with random weights and ``data=False`` without its dataset (no file of
    either is read): what ``harness bench`` times a static method with, whose cost depends on neither."""
    import torch

    from harness.build import build_from_config
    from harness.data import build_dataset
    from harness.measure.device import resolve_device
    from harness.models.compatibility import protocol_problems
    from harness.training import resolve_checkpoint

    if spec.measure.threads:
        torch.set_num_threads(int(spec.measure.threads))
    torch.manual_seed(spec.measure.seed)
    device = resolve_device(spec.eval.device)
    regime = spec.regime.validate(device)  # a regime the device cannot run fails here, before any work
    checkpoint = resolve_checkpoint(spec.config(), store_root) if weights else None
    finetune = None
    if spec.method.finetune and weights:
        from harness.files import MAX_RECORD_BYTES, read_json
        from harness.training import META, run_dir

        meta = read_json(os.path.join(run_dir(store_root, spec.method.finetune["key"]), META), MAX_RECORD_BYTES,
                         what="fine-tune meta.json")
        finetune = {"name": spec.method.finetune["name"], "key": meta["key"], "train_wall_s": meta["train_wall_s"],
                    "epochs": len(meta["history"]), "steps": meta["steps"], "device": meta["device"],
                    "last_epoch": meta["history"][-1] if meta["history"] else None}
    progress("build model", 0, 1, force=True)
    model = build_from_config(spec.backbone, spec.method.as_dict(), checkpoint=checkpoint).to(device)
    dataset = build_dataset(spec.dataset) if data else None
    problems = protocol_problems(dataset, model.cfg) if data else []
    if problems:
        raise ValueError("the test protocol does not fit the model: " + "; ".join(problems))
    return CellSetup(spec, model, dataset, device, regime, checkpoint, finetune)


def regime_fields(setup: CellSetup) -> dict:
    """Precision, SDPA backend (asked for, and the kernel each block ran: one profiled forward), compile
    mode, versions and device: what makes two figures comparable."""
    import torch

    from harness.measure.kernels import probe_attention_kernels

    out = setup.regime.record(setup.device)
    x = torch.randn(*setup.clip_shape(), device=setup.device)
    try:
        out["sdpa_backend_per_block"] = probe_attention_kernels(setup.model, x, setup.context)
    except Exception as err:  # noqa: BLE001 -- a model the profiler cannot follow: say so, keep the cell
        out["sdpa_backend_per_block"] = None
        out["sdpa_backend_probe_error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
    return out


def check_flops(setup: CellSetup, progress: Progress) -> dict:
    """fvcore's count of one forward against the analytic count; raises when they disagree."""
    import torch

    from harness.measure.flops import fvcore_macs, model_macs

    model, device = setup.model, setup.device
    progress("count FLOPs (fvcore)", 0, 1, force=True)
    clip = torch.randn(*setup.clip_shape(), device=device)
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


def timing_input(setup: CellSetup, batch_size: tp.Optional[int] = None) -> tp.Any:
    """The batch a cell is timed on (``measure.batch_size`` clips unless given), on its device: static methods
    random normal clips of the true clip shape, adaptive ones (whose work depends on the data) real clips of the
    evaluated dataset."""
    import torch

    from harness.data.video_dataset import real_clips

    batch = batch_size or setup.spec.measure.batch_size
    adaptive = setup.spec.method.capabilities()["adaptive_token_count"]
    if adaptive:
        return real_clips(setup.dataset, batch).to(setup.device)
    return torch.randn(*setup.clip_shape(batch), device=setup.device)


def throughput_subject(setup: CellSetup, batch_size: tp.Optional[int] = None, *, inputs: tp.Any = None,
                       compile_backend: str = "inductor") -> dict:
    """What ``interleaved_throughput`` times for a cell: its model (compiled in the cell's compile mode; a
    method that does not compile is timed eager, ``compile.compile_error`` says why) on ``inputs`` (default
    ``timing_input(setup, batch_size)``), with the cell's timing settings."""
    from harness.measure.compiled import compile_for_timing, count_after, public

    me = setup.spec.measure
    adaptive = setup.spec.method.capabilities()["adaptive_token_count"]
    x = timing_input(setup, batch_size) if inputs is None else inputs
    model, info = compile_for_timing(setup.model, x, mode=setup.regime.compile, dynamic=True if adaptive else None,
                                     context=setup.context, backend=compile_backend)
    if model is None:  # a method that does not compile: timed eager, the failure recorded in its row
        model = setup.model
    subject = {"model": model, "x": x, "warmup_iters": me.warmup_iters, "context": setup.context,
               "warmup_s": me.warmup_s, "timed_iters": me.timed_iters, "min_timed_s": me.min_timed_s,
               "repeats": me.repeats, "compile": info,
               "timing_input": "real clips from the evaluated dataset" if adaptive else "random normal"}
    if info["compile_mode"] != REGIME.compile:
        subject["after_warmup"] = lambda: count_after(info, "recompiles")
    subject["compile_public"] = lambda: public(info)
    return subject


def cell_runtime(setup: CellSetup, manifest: dict, attention_kernel: tp.List[str]) -> dict:
    """The provenance fields only a worker knows (device, threads, hashes, kernels, numerics, the
    decoder's distribution and version)."""
    import torch

    from harness.data.decode import decoder_provenance
    from harness.measure.device import device_name, numerics_state
    from harness.models import hf
    from harness.provenance import numerics_code

    spec = setup.spec
    return {"device": device_name(setup.device), "torch_threads": torch.get_num_threads(),
            "seed": spec.measure.seed, "dataset_manifest": manifest,
            "checkpoint_sha256": hf.content_key(setup.checkpoint) if setup.checkpoint else None,
            "checkpoint_layout": setup.model.checkpoint_layout,
            "class_names": getattr(setup.model, "class_names", None),
            "attention_kernel_per_block": list(attention_kernel),
            "numerics": numerics_state(setup.device, setup.regime.precision),
            "reducer": setup.model.describe(),
            "method_capabilities": spec.method.capabilities(),
            "numerics_code": numerics_code(spec.method.name, spec.method.params),
            **decoder_provenance(spec.dataset)}
