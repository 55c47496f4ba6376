"""Load Video Swin classifiers into ``harness.models.video_swin.VideoSwin`` (strict, one converter per layout).

Layouts, recognised from signature keys:
- ``torchvision`` (``swin3d_t/s/b`` weight files): ``patch_embed.*``, ``features.{2s}.{j}.*`` (stage s,
  block j; ``mlp.0`` = fc1, ``mlp.3`` = fc2), ``features.{2s+1}.*`` (patch merging after stage s),
  ``norm.*``, ``head.*``;
- ``official`` (SwinTransformer/Video-Swin-Transformer, mmaction2 0.x): ``{'state_dict': ...}`` with
  ``backbone.layers.{s}.blocks.{j}.*`` (``mlp.fc1``/``fc2``), ``backbone.layers.{s}.downsample.*``,
  ``backbone.norm.*``, ``cls_head.fc_cls.*``;
- ``mmaction2`` (1.x ``mmaction/models/backbones/swin.py``): as ``official`` but the final norm is
  ``backbone.norm3.*``.
``relative_position_index`` buffers in a file are checked against ours (they are computed, not learned)
and dropped.
"""
from __future__ import annotations

import os
import re
import typing as tp

import torch
from torch import nn

from harness.models.checkpoint import (CheckpointError, check_keys, read_weights_file, refuse_non_finite,
                                       unwrap_state_dict)

_TV_BLOCK = re.compile(r"^features\.(\d+)\.(\d+)\.(.*)$")
_TV_MERGE = re.compile(r"^features\.(\d+)\.(norm|reduction)\.(.*)$")
_MM_BLOCK = re.compile(r"^backbone\.layers\.(\d+)\.blocks\.(\d+)\.(.*)$")
_MM_MERGE = re.compile(r"^backbone\.layers\.(\d+)\.downsample\.(.*)$")


def _block_rest(rest: str) -> str:
    return rest.replace("mlp.0.", "mlp.fc1.").replace("mlp.3.", "mlp.fc2.")


def convert_torchvision(state: tp.Mapping[str, torch.Tensor]) -> tp.Dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        m = _TV_MERGE.match(k)
        if m and int(m.group(1)) % 2 == 1:
            out[f"merges.{int(m.group(1)) // 2}.{m.group(2)}.{m.group(3)}"] = v
            continue
        m = _TV_BLOCK.match(k)
        if m:
            out[f"stages.{int(m.group(1)) // 2}.blocks.{m.group(2)}.{_block_rest(m.group(3))}"] = v
        else:
            out[k] = v
    return out


def convert_official(state: tp.Mapping[str, torch.Tensor]) -> tp.Dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        m = _MM_BLOCK.match(k)
        n = _MM_MERGE.match(k)
        if m:
            out[f"stages.{m.group(1)}.blocks.{m.group(2)}.{m.group(3)}"] = v
        elif n:
            out[f"merges.{n.group(1)}.{n.group(2)}"] = v
        elif k.startswith("cls_head.fc_cls."):
            out["head." + k.removeprefix("cls_head.fc_cls.")] = v
        elif k.startswith(("backbone.norm3.", "backbone.norm.")):
            out["norm." + k.split(".", 2)[2]] = v
        elif k.startswith("backbone."):
            out[k.removeprefix("backbone.")] = v
        else:
            out[k] = v
    return out


def read_swin_checkpoint(path: str | os.PathLike) -> tp.Tuple[tp.Dict[str, torch.Tensor], str]:
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}" if not os.path.exists(path)
                              else f"checkpoint {path} is not a regular file")
    state = unwrap_state_dict(read_weights_file(path), path)
    refuse_non_finite(state, path)
    if any(k.startswith("stages.") for k in state):
        return state, "harness"
    if any(k.startswith("features.") for k in state):
        return convert_torchvision(state), "torchvision"
    if any(k.startswith("backbone.layers.") for k in state):
        layout = "mmaction2" if any(k.startswith("backbone.norm3.") for k in state) else "official"
        return convert_official(state), layout
    sample = ", ".join(sorted(state)[:5])
    raise CheckpointError(f"{path}: unrecognised Video Swin checkpoint layout (first keys: {sample}); expected "
                          "torchvision's ('features.*', 'head.*'), the official / mmaction2 one "
                          "('backbone.layers.*', 'cls_head.fc_cls.*') or ours ('stages.*')")


def load_swin_checkpoint(model: nn.Module, path: str | os.PathLike) -> str:
    """Load ``path`` into ``model`` strictly; returns the detected layout."""
    if str(path).startswith("hf:"):
        raise CheckpointError(f"{path}: Video Swin has no Hugging Face classifier class; use a torchvision, "
                              "official or mmaction2 weight file")
    state, layout = read_swin_checkpoint(path)
    index_keys = [k for k in state if k.endswith("relative_position_index")]
    ours = dict(model.named_buffers())
    for k in index_keys:
        mine = ours.get(k)
        if mine is None or tuple(mine.shape) != tuple(state[k].shape) or not torch.equal(mine, state[k].to(mine)):
            raise CheckpointError(f"{path}: {k} differs from this model's window ({layout} layout): "
                                  "the checkpoint was trained with another window_size")
        del state[k]
    expected = model.state_dict()
    check_keys(path, layout, state, expected)
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    return layout
