"""What ``harness viz`` looks at: a model with its weights (from a suite cell or named directly) and one clip.

User mistakes raise ``VizError`` (a ``ValueError``) with one readable message; the CLI prints it.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
import typing as tp

import numpy as np
import torch

from harness.training.backbone import BACKBONES  # the presets whose checkpoints are committed

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# weights used when --method names a synthetic preset without --checkpoint
DEFAULT_CHECKPOINTS = {name: os.path.join(REPO_ROOT, "checkpoints", f"{name}.pth") for name in BACKBONES}


class VizError(ValueError):
    """A mistake in what ``harness viz`` was asked to show."""


@dataclasses.dataclass
class Target:
    """A built model and what the figure says about it."""

    model: torch.nn.Module  # eval mode, weights loaded
    method: str  # registered method name
    label: str  # method and settings, e.g. "tome r=16"
    backbone: str  # backbone preset name
    weights: str  # where the weights come from, for the title
    dataset: tp.Any = None  # the suite cell's dataset object (its test protocol), if any


@dataclasses.dataclass
class Clip:
    """One test view: what the model sees and what the figure shows."""

    tensor: torch.Tensor  # [3, T, S, S] normalised
    frames: np.ndarray  # uint8 [T, S, S, 3]: the same view, denormalised
    name: str  # e.g. "synthetic_motion val #12"
    label: tp.Optional[int]  # ground-truth class, if known
    class_names: tp.Optional[tp.List[str]]


def _rel(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def method_label(name: str, args: tp.Mapping[str, tp.Any]) -> str:
    parts = [name] + [f"{k}={v if isinstance(v, str) else json.dumps(v, separators=(',', ':'))}"
                      for k, v in args.items()]
    return " ".join(parts)


def target_from_method(method: str, method_args: tp.Mapping[str, tp.Any], backbone: str,
                       checkpoint: tp.Optional[str] = None, init_from: tp.Optional[str] = None) -> Target:
    """``method`` with ``method_args`` on preset ``backbone``; weights from ``checkpoint`` (strict),
    ``init_from`` (the method's own initialisation, e.g. a dense checkpoint for a trained method) or,
    for a synthetic preset, its committed checkpoint."""
    import methods
    from harness.models.presets import backbone_registry
    from harness.registry import UnknownNameError

    try:
        spec = methods.get_method(method)
        backbone_registry.get(backbone)
    except UnknownNameError as err:
        raise VizError(str(err)) from None
    if checkpoint and init_from:
        raise VizError("give --checkpoint (trained weights, loaded strictly) or --init-from, not both")
    default = None
    if checkpoint is None and init_from is None:
        default = DEFAULT_CHECKPOINTS.get(backbone)
        if default and not os.path.isfile(default):
            default = None
        if default and not spec.training_free:
            raise VizError(
                f"{spec.title} is a trained method: the dense checkpoint {_rel(default)} does not hold its "
                "weights. "
                f"Pass --checkpoint PATH (e.g. a fine-tune's results/finetunes/<key>/model.pth), "
                f"--suite SUITE --cell LABEL (finds the fine-tune), or --init-from {_rel(default)} "
                "to look at the model before fine-tuning")
        checkpoint = default
    model = _build(backbone, method, dict(method_args), {}, checkpoint, init_from)
    if init_from:
        weights = f"init_from {_rel(init_from)} (not fine-tuned)"
    elif checkpoint:
        weights = _rel(checkpoint)
    else:
        weights = "random init (no checkpoint)"
    return Target(model=model, method=method, label=method_label(method, method_args), backbone=backbone, weights=weights)


def target_from_suite(suite_path: str, cell_label: str, overrides: tp.Sequence[str] = (),
                      results: str = "results", init_from: tp.Optional[str] = None,
                      backbone: tp.Optional[str] = None) -> Target:
    """The model of the suite cell labelled ``cell_label`` (as ``run --dry-run`` lists them), with the
    weights the cell evaluates: its fine-tune's output, else the backbone's checkpoint."""
    from harness.training import resolve_checkpoint
    from harness.suite import SuiteError, load_suite

    try:
        suite = load_suite(suite_path, overrides)
    except SuiteError as err:
        raise VizError(str(err)) from None
    cells = [c for c in suite.cells() if backbone is None or c.backbone["name"] == backbone]
    matches = [c for c in cells if c.label == cell_label]
    if not matches:
        labels = list(dict.fromkeys(c.label for c in cells))
        close = difflib.get_close_matches(cell_label, labels, n=3, cutoff=0.5)
        raise VizError(f"{suite_path} has no cell labelled {cell_label!r}."
                       + (" Did you mean: " + ", ".join(repr(c) for c in close) + "?" if close else "")
                       + " Its cells (`run --dry-run` lists them):\n" + "\n".join(f"  {lb}" for lb in labels))
    where = {(c.backbone["name"], c.dataset["name"]) for c in matches}
    if len(where) > 1:
        raise VizError(f"cell {cell_label!r} exists for several backbone x dataset pairs "
                       f"{sorted(where)}: add --backbone NAME")
    cell = matches[0]
    config = cell.config()
    ft = config["method"].get("finetune")
    if init_from:
        checkpoint, weights = None, f"init_from {_rel(init_from)} (not fine-tuned)"
    else:
        try:
            checkpoint = resolve_checkpoint(config, results)
        except RuntimeError:
            store = "" if results == "results" else f" --results {results}"
            dense = _rel(config["backbone"].get("checkpoint") or "CHECKPOINT")
            raise VizError(
                f"cell {cell_label!r} evaluates fine-tune {ft['name']!r}, which has not been trained yet "
                f"(no {os.path.join(results, 'finetunes', ft['key'], 'model.pth')}): train it with "
                f"`python -m harness finetune {suite_path}{store}`, or pass --init-from {dense} to look at "
                "the model before fine-tuning") from None
        weights = f"fine-tune {ft['name']} ({ft['key']})" if ft else (_rel(checkpoint) if checkpoint else
                                                                     "random init (no checkpoint)")
    from harness.models.dims import backbone_dims

    dims = backbone_dims(config["backbone"])
    model = _build(config["backbone"]["name"], config["method"]["name"], config["method"]["params"], dims,
                   checkpoint, init_from)
    return Target(model=model, method=config["method"]["name"], label=cell.label, backbone=config["backbone"]["name"], weights=weights,
                  dataset=cell.dataset_object)


def _build(backbone: str, method: str, args: dict, dims: dict, checkpoint: tp.Optional[str],
           init_from: tp.Optional[str]) -> torch.nn.Module:
    from harness.build import build_model
    from harness.models.checkpoint import CheckpointError

    try:
        model = build_model(backbone, method=method, method_args=args, checkpoint=checkpoint, **dims)
        if init_from:
            model.init_from(init_from)
    except CheckpointError as err:
        raise VizError(str(err)) from None
    except (TypeError, ValueError) as err:
        raise VizError(f"{method}: {err}") from None
    return model.eval()


def load_clip(target: Target, video: tp.Optional[str] = None, index: tp.Optional[int] = None,
              split: tp.Optional[str] = None, frame_interval: tp.Optional[int] = None) -> Clip:
    """View 0 of a video file (``video``) or of video ``index`` of the dataset, fitted to the model.

    The dataset is the suite cell's, else ``synthetic_motion`` (its frames resized to the model's
    input). A file is decoded with the cell's test protocol, else one fitted to the model
    (``frame_interval`` frames apart, default the protocol's).
    """
    from harness.data.datasets import SyntheticMotionDataset
    from harness.data.registry import VideoProtocol
    from harness.data.video_dataset import VideoDataset

    cfg = target.model.cfg
    fitted = dict(clip_len=cfg.num_frames, short_side=cfg.img_size, crop_size=cfg.img_size)
    dataset = target.dataset
    if video is not None and index is not None:
        raise VizError("give --video PATH or --index N, not both")
    if dataset is None or (video is None and not hasattr(dataset, "items")):
        if video is None:
            dataset = SyntheticMotionDataset(split=split or "val", **fitted)
        else:
            dataset = VideoProtocol(**fitted)
    elif video is None and split is not None and split != getattr(dataset, "split", split):
        if not any(f.name == "split" for f in dataclasses.fields(dataset)):
            raise VizError(f"--split: dataset {type(dataset).__name__} has no split field")
        dataset = dataclasses.replace(dataset, split=split)
    if frame_interval is not None:
        dataset = dataclasses.replace(dataset, frame_interval=frame_interval)
    problems = dataset.check()
    if problems:
        raise VizError("test protocol: " + "; ".join(problems))
    names = None
    if hasattr(dataset, "class_names"):
        names = dataset.class_names()
    elif isinstance(dataset, SyntheticMotionDataset):
        from harness.data.synthetic import CLASSES

        names = list(CLASSES)
    label = None
    if video is None:
        items = dataset.items()
        index = 0 if index is None else index
        if not 0 <= index < len(items):
            raise VizError(f"--index {index} is out of range: the dataset lists {len(items)} videos")
        video, label = items[index].path, items[index].label
        name = f"{type(dataset).__name__.replace('Dataset', '')} {getattr(dataset, 'split', '')} #{index}"
        if isinstance(dataset, SyntheticMotionDataset):
            name = f"synthetic_motion {dataset.split} #{index}"
    else:
        name = os.path.basename(video)
    try:
        views = VideoDataset([], dataset).load_views(video)
    except Exception as err:  # noqa: BLE001 - any decode failure is the user's file
        raise VizError(f"cannot decode {video}: {type(err).__name__}: {err}") from None
    tensor = views[0]
    if tuple(tensor.shape[1:]) != (cfg.num_frames, cfg.img_size, cfg.img_size):
        raise VizError(f"the view is {tuple(tensor.shape[1:])} (frames, height, width) but the model takes "
                       f"{(cfg.num_frames, cfg.img_size, cfg.img_size)}")
    mean = torch.tensor(dataset.mean).view(3, 1, 1, 1)
    std = torch.tensor(dataset.std).view(3, 1, 1, 1)
    pixels = (tensor * std + mean).clamp(0, 1).mul(255).round().to(torch.uint8)
    frames = pixels.permute(1, 2, 3, 0).contiguous().numpy()
    return Clip(tensor=tensor, frames=frames, name=name, label=label, class_names=names)
