"""Load fine-tuned VideoMAE classifiers into ``VideoViT``.

Two layouts are recognised from signature keys (one ``_convert_*`` function each):
- official VideoMAE (MCG-NJU/VideoMAE, DeepSpeed): ``{'module': {...}}`` (or ``'model'``) with
  ``patch_embed.proj.*``, ``blocks.{i}.attn.{qkv.weight,q_bias,v_bias,proj.*}``, ``mlp.fc1/fc2``,
  ``fc_norm.*``, ``head.*`` -- the same names as ours;
- mmaction2 (``mmaction/models/backbones/vit_mae.py`` + ``cls_head``): ``{'state_dict': {...}}`` with
  ``backbone.patch_embed.projection.*``, ``backbone.blocks.{i}.mlp.layers.0.0.*`` (fc1) and
  ``mlp.layers.1.*`` (fc2), ``backbone.fc_norm.*``, ``backbone.pos_embed`` and ``cls_head.fc_cls.*``.
A VideoMAE *pre-training* checkpoint (``encoder.*`` / ``decoder.*``) is refused with an explanation.
Loading is strict: any missing, unexpected or mis-shaped key fails with a readable diff.
"""
from __future__ import annotations

import os
import re
import typing as tp

import torch
from torch import nn


class CheckpointError(ValueError):
    pass


def load_checkpoint(model: nn.Module, path: str | os.PathLike,
                    allow_missing_prefix: tp.Optional[str] = None) -> str:
    """Load ``path`` into ``model`` strictly; returns the detected layout name.

    ``allow_missing_prefix`` (e.g. ``"reducer."``) lets a fine-tune start from a dense checkpoint:
    parameters under it that the file lacks keep their initialisation; nothing else may differ.
    """
    state, layout = read_checkpoint(path)
    expected = model.state_dict()
    if allow_missing_prefix:
        expected = {k: v for k, v in expected.items()
                    if not (k.startswith(allow_missing_prefix) and k not in state)}
    _check_keys(path, layout, state, expected)
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()},
                          strict=not allow_missing_prefix)
    return layout


def read_checkpoint(path: str | os.PathLike) -> tp.Tuple[tp.Dict[str, torch.Tensor], str]:
    """The state dict of ``path`` converted to our key names, and the layout it came in."""
    if not os.path.isfile(path):
        if os.path.exists(path):  # a directory, FIFO or device: torch.load would fail or block
            raise CheckpointError(f"checkpoint {path} is not a regular file")
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, truncated files, non-tensor objects
        raise CheckpointError(f"cannot read checkpoint {path}: {type(err).__name__}: {err}") from err
    state = _unwrap(raw, path)
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:  # an all-NaN (or partly inf) file would load and evaluate as "ok" at chance accuracy
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise CheckpointError(f"{path}: {len(bad)} of {len(state)} tensors hold NaN or infinite values ({shown}); "
                              "refusing a damaged checkpoint")
    if any(k.startswith(("encoder.", "decoder.")) for k in state) or "mask_token" in state:
        raise CheckpointError(
            f"{path} is a VideoMAE pre-training checkpoint (encoder-decoder keys 'encoder.*'/'decoder.*'); "
            "token-reduction benchmarks need a fine-tuned classifier: the official fine-tuned files "
            "hold {'module': {'blocks.*', 'fc_norm.*', 'head.*', ...}} (see the VideoMAE MODEL_ZOO)")
    if any(k.startswith("backbone.") for k in state):
        return _convert_mmaction2(state), "mmaction2"
    if any(k.startswith("blocks.") for k in state):
        return _convert_videomae(state), "videomae"
    sample = ", ".join(sorted(state)[:5])
    raise CheckpointError(
        f"{path}: unrecognised checkpoint layout (first keys: {sample}); expected the official "
        "VideoMAE fine-tuned layout ('blocks.*', 'fc_norm.*', 'head.*') or mmaction2's "
        "('backbone.*', 'cls_head.*')")


def _unwrap(raw: tp.Any, path) -> tp.Dict[str, torch.Tensor]:
    if isinstance(raw, dict):
        for wrapper in ("module", "model", "state_dict"):
            if wrapper in raw and isinstance(raw[wrapper], dict):
                raw = raw[wrapper]
                break
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise CheckpointError(f"{path}: expected a dict of tensors (optionally under 'module', 'model' "
                              "or 'state_dict')")
    return {k.removeprefix("module."): v.float() if v.is_floating_point() else v for k, v in raw.items()}


def _convert_videomae(state: tp.Dict[str, torch.Tensor]) -> tp.Dict[str, torch.Tensor]:
    # The sinusoid table is regenerated at construction; some exports carry it anyway.
    return {k: v for k, v in state.items() if k != "pos_embed"}


_MMACTION_RENAMES = (
    (r"^backbone\.patch_embed\.projection\.", "patch_embed.proj."),
    (r"^backbone\.blocks\.(\d+)\.mlp\.layers\.0\.0\.", r"blocks.\1.mlp.fc1."),
    (r"^backbone\.blocks\.(\d+)\.mlp\.layers\.1\.", r"blocks.\1.mlp.fc2."),
    (r"^backbone\.", ""),
    (r"^cls_head\.fc_cls\.", "head."),
)


def _convert_mmaction2(state: tp.Dict[str, torch.Tensor]) -> tp.Dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for pattern, repl in _MMACTION_RENAMES:
            key, n = re.subn(pattern, repl, key)
            if n and pattern != r"^backbone\.":
                break
        out[key] = value
    out.pop("pos_embed", None)  # a persistent buffer in mmaction2; ours is regenerated
    return out


def _check_keys(path, layout: str, state: tp.Dict[str, torch.Tensor],
                expected: tp.Dict[str, torch.Tensor]) -> None:
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in sorted(set(state) & set(expected)) if state[k].shape != expected[k].shape]
    if not (missing or unexpected or mismatched):
        return
    lines = [f"{path} ({layout} layout) does not fit the model:"]
    for title, items in (("missing in checkpoint", missing), ("unexpected in checkpoint", unexpected),
                         ("shape mismatch", mismatched)):
        if items:
            shown = items[:12] + ([f"... and {len(items) - 12} more"] if len(items) > 12 else [])
            lines.append(f"  {title} ({len(items)}): " + ", ".join(shown))
    if any(k.startswith("head.") for k in mismatched):
        lines.append("  hint: the head size differs; pass num_classes= to match the checkpoint")
    raise CheckpointError("\n".join(lines))
