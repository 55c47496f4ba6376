"""The fine-tuning loop: one checkpoint per epoch, exact resume, a per-epoch log.

Output directory (``<store>/finetunes/<key>/``)::

    last.pth     model + optimiser + RNG + history after the last finished epoch (resume point)
    log.jsonl    one line per finished epoch (loss terms, lr, val top-1, wall time)
    model.pth    the fine-tuned weights, ``{'module': state_dict}``, written when all epochs are done
    meta.json    config, recipe, history, times; its presence marks the run complete

Resuming repeats the interrupted epoch from ``last.pth``: model, optimiser, the global torch RNG
(dropout, drop-path) and the per-epoch data order are restored, so on a given machine and thread
count the result is bit-identical to an uninterrupted run.
"""
from __future__ import annotations

import json
import os
import time
import typing as tp

import torch

from harness.data.decode import DEFAULT_DECODER, decoder_identity
from harness.measure.device import resolve_device
from harness.training.config import FineTuneConfig
from harness.training.folders import LAST, LOG, META, MODEL, is_complete


def finetune(cfg: FineTuneConfig, out_dir: str, *, progress: bool = True,
             on_step: tp.Optional[tp.Callable[[int, int], None]] = None,
             on_plan: tp.Optional[tp.Callable[[int, int], None]] = None) -> dict:
    """Train (or resume, or return the finished run); returns the run's meta dict.

    ``on_step(steps_this_call, step)`` is called after every optimiser step (progress reporting; an
    exception it raises interrupts the run as a kill would, leaving the last epoch checkpoint).
    ``on_plan(step, total_steps)`` is called once before the first step (``step``: where a resumed run
    starts), so that progress can show steps done out of the total.
    """
    if is_complete(out_dir):
        from harness.files import MAX_RECORD_BYTES, read_json

        return read_json(os.path.join(out_dir, META), MAX_RECORD_BYTES, what="fine-tune meta.json")
    os.makedirs(out_dir, exist_ok=True)
    recipe = cfg.resolved_recipe()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    model, init_report, data, loader_for, mean_std = _setup(cfg, recipe)
    model.to(device)
    from harness.training.schedule import lr_at, make_optimizer

    opt = make_optimizer(model, recipe)
    steps_per_epoch = len(data) // recipe["batch_size"]
    if steps_per_epoch == 0:
        raise ValueError(f"{len(data)} training videos < batch_size {recipe['batch_size']}")
    start_epoch, step, history, wall_before = 0, 0, [], 0.0
    last = os.path.join(out_dir, LAST)
    if os.path.isfile(last):
        try:
            state = torch.load(last, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or not {"key", "model", "optimizer", "rng_torch", "epoch", "step",
                                                   "history"} <= set(state):
                raise ValueError("not a resume point written by this trainer")
        except Exception as err:  # noqa: BLE001 -- a torn or foreign file: say which and what to do
            raise RuntimeError(f"{last}: cannot resume from it ({type(err).__name__}: {str(err)[:200]}); delete it "
                               "to restart this fine-tune from epoch 0") from None
        if state["key"] != cfg.key():
            raise RuntimeError(f"{last} belongs to run {state['key']}, not {cfg.key()}; remove the folder")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng_torch"])
        start_epoch, step, history = state["epoch"], state["step"], json.loads(state["history"])
        wall_before = history[-1]["wall_s"] if history else 0.0
        print(f"resuming {cfg.key()} after epoch {start_epoch}/{recipe['epochs']}", flush=True)
    t0 = time.time()
    steps_this_call = 0
    failed: tp.Dict[str, dict] = {}
    if on_plan is not None:
        on_plan(step, recipe["epochs"] * steps_per_epoch)
    for epoch in range(start_epoch, recipe["epochs"]):
        model.train()
        data.set_epoch(epoch)
        sums: tp.Dict[str, float] = {}
        from tqdm import tqdm

        bar = tqdm(loader_for(epoch), total=steps_per_epoch, desc=f"epoch {epoch + 1}/{recipe['epochs']}",
                   leave=False, disable=not progress)
        for batch in bar:
            lr = lr_at(step, steps_per_epoch, recipe)
            for info in batch.pop("failed", []):  # undecodable videos: counted, left out, never replaced
                failed.setdefault(info["path"], info)
            if batch["clips"] is None:
                continue
            for group in opt.param_groups:
                group["lr"] = lr
            inputs = {k: v.to(device) for k, v in batch.items() if k != "clips"}
            inputs["clips"] = _normalise(batch["clips"], *mean_std).to(device)
            inputs["label_smoothing"] = recipe["label_smoothing"]
            with _autocast(device, cfg.amp):
                loss, logs = model.training_loss(inputs)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if recipe["clip_grad"]:
                logs["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(model.parameters(), recipe["clip_grad"]))
            opt.step()
            step += 1
            steps_this_call += 1
            logs["loss"] = loss.item()
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            bar.set_postfix(loss=f"{logs['loss']:.3f}")
            if on_step is not None:
                on_step(steps_this_call, step)
        entry = {"epoch": epoch + 1, "step": step, "lr": lr,
                 **{f"train_{k}": v / steps_per_epoch for k, v in sums.items()}}
        if failed:
            entry["failed_videos"] = len(failed)
        if cfg.val_dataset is not None:
            entry["val_top1"] = _validate(model, cfg, device)
        entry["wall_s"] = wall_before + time.time() - t0
        history.append(entry)
        _save_atomic({"key": cfg.key(), "model": model.state_dict(), "optimizer": opt.state_dict(),
                      "rng_torch": torch.get_rng_state(), "epoch": epoch + 1, "step": step,
                      "history": json.dumps(history)}, last)
        with open(os.path.join(out_dir, LOG), "a") as f:
            f.write(json.dumps(entry) + "\n")
        print(f"[{cfg.key()}] epoch {epoch + 1}/{recipe['epochs']}: "
              + "  ".join(f"{k} {v:.4g}" for k, v in entry.items() if k not in ("epoch", "step")), flush=True)
    _save_atomic({"module": model.state_dict()}, os.path.join(out_dir, MODEL))
    meta = {"key": cfg.key(), "config": cfg.as_dict(), "history": history,
            "train_wall_s": history[-1]["wall_s"] if history else 0.0, "steps": step,
            "torch": torch.__version__, "device": str(device), "threads": torch.get_num_threads(),
            "decoder": decoder_identity(cfg.dataset.get("decoder", DEFAULT_DECODER)),
            "init": init_report, "checkpoint": os.path.join(out_dir, MODEL),
            "failed_videos": sorted(failed.values(), key=lambda f: f["index"])}
    tmp = os.path.join(out_dir, META + ".tmp")
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=2, default=str)
    os.replace(tmp, os.path.join(out_dir, META))
    return meta


def _setup(cfg: FineTuneConfig, recipe: dict):
    import methods
    from harness.build import build_from_config
    from harness.data import build_dataset
    from harness.registry import load_object
    from harness.training.data import TrainClips, collate_clips

    method, init = cfg.method, cfg.backbone.get("checkpoint")
    model = build_from_config(cfg.backbone, method)
    init_report = model.init_from(init) if init else None
    dataset = build_dataset(cfg.dataset)
    items = [it for it in dataset.items() if not getattr(it, "problem", None)]  # no label-less/duplicate entry
    items = items[: cfg.limit] if cfg.limit else items
    spec = methods.get_method(method["name"])
    expand = load_object(spec.train_batch) if spec.train_batch else None
    data = TrainClips(dataset, items, seed=cfg.seed, augment=cfg.augment, expand=expand,
                      cache=cfg.dataset["name"] == "synthetic_motion")

    def loader_for(epoch: int):
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(cfg.seed * 100003 + epoch))
        sampler = torch.utils.data.BatchSampler(order.tolist(), recipe["batch_size"], drop_last=True)
        return torch.utils.data.DataLoader(data, batch_sampler=sampler, collate_fn=collate_clips, num_workers=0)

    return model, init_report, data, loader_for, (dataset.mean, dataset.std)


def _normalise(clips_uint8, mean, std):
    from harness.training.data import to_model_input

    return to_model_input(clips_uint8, mean, std)


def _validate(model, cfg: FineTuneConfig, device) -> float:
    from harness.data import build_dataset
    from harness.measure.accuracy import evaluate_model

    dataset = build_dataset(cfg.val_dataset)
    model.eval()
    result = evaluate_model(model, dataset, device=device, batch_size=32, limit=cfg.val_limit)
    model.train()
    return result["metrics"]["top1"]


def _save_atomic(obj: dict, path: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _autocast(device: torch.device, amp: bool):
    import contextlib

    if device.type == "cuda" and amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
