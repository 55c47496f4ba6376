"""Checkpoints of HaltingVT: strict loading of trained models and initialisation for fine-tuning.

Layouts, recognised from signature keys:
- ``haltingvt``: ours, ``{'module': state_dict}`` with ``HaltingVTModel``'s names;
- ``haltingvt_official``: the official mmaction2 recogniser (``{'state_dict': ...}`` from
  mmengine), ``backbone.model.*`` + ``cls_head.fc_cls.*`` + ``cls_head.fc_motion.*``; its per-frame
  Conv2d patch weight [C, 3, p, p] gains a time axis (tubelet 1 only);
- ``deit``: a timm/DeiT image ViT (``cls_token``, ``pos_embed``, ``blocks.i.attn.qkv.*``, ...), the
  official initialisation (init only);
- a dense VideoMAE-style checkpoint (our ``VideoViT``, official VideoMAE or mmaction2 ViT-MAE, read
  by ``harness.models.checkpoint.read_checkpoint``) (init only).
"""
from __future__ import annotations

import math
import os
import typing as tp

import torch
import torch.nn.functional as F

from harness.models.checkpoint import CheckpointError, check_keys, read_weights_file, unwrap_state_dict, read_checkpoint
from methods.haltingvt import GLIMPSER_BLOCKS

OFFICIAL_PREFIXES = (("backbone.model.", ""), ("cls_head.fc_cls.", "head."),
                     ("cls_head.fc_motion.", "motion_head."))
BLOCK_PARAMS = ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")


def read_raw(path: str | os.PathLike) -> tp.Dict[str, torch.Tensor]:
    """The tensors of ``path`` (unwrapped from 'module'/'model'/'state_dict'), loaded weights-only
    (``.safetensors`` files with safetensors)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    if str(path).endswith(".safetensors"):
        return unwrap_state_dict(read_weights_file(path), path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"cannot read checkpoint {path} with torch.load(weights_only=True): {type(err).__name__}: {err}\n"
            "  hint: an mmengine checkpoint also pickles its training state; keep only the weights with "
            "torch.save({'state_dict': torch.load(path, weights_only=False)['state_dict']}, new_path) "
            "in an environment you trust") from err
    return unwrap_state_dict(raw, path)


def detect_layout(state: tp.Mapping[str, torch.Tensor]) -> str:
    if any(k.startswith(prefix) for k in state for prefix, _ in OFFICIAL_PREFIXES):
        return "haltingvt_official"
    if "time_embed" in state and any(".temporal_attn." in k for k in state):
        return "haltingvt"
    if any(k.startswith("backbone.") for k in state):
        return "dense"  # mmaction2's ViT-MAE
    if "blocks.0.attn.qkv.weight" in state:
        return "deit" if "cls_token" in state and "pos_embed" in state else "dense"
    sample = ", ".join(sorted(state)[:5])
    raise CheckpointError(f"unrecognised checkpoint layout (first keys: {sample}); expected HaltingVT "
                          "(ours or official 'backbone.model.*'), a DeiT/timm ViT or a dense VideoMAE ViT")


def convert_official(state: tp.Mapping[str, torch.Tensor]) -> tp.Dict[str, torch.Tensor]:
    """Official recogniser keys -> ours; the Conv2d patch weight becomes a tubelet-1 Conv3d weight."""
    out = {}
    for key, value in state.items():
        for prefix, repl in OFFICIAL_PREFIXES:
            if key.startswith(prefix):
                key = repl + key[len(prefix):]
                break
        if key == "patch_embed.proj.weight" and value.dim() == 4:
            value = value.unsqueeze(2)
        out[key] = value
    return out


def load_haltingvt(model, path: str | os.PathLike) -> str:
    """Strict load of a trained HaltingVT (ours or official layout); returns the layout name."""
    state = read_raw(path)
    layout = detect_layout(state)
    if layout in ("dense", "deit"):
        raise CheckpointError(
            f"{path} is a {'dense video ViT' if layout == 'dense' else 'DeiT/timm image ViT'} checkpoint, "
            "not a trained HaltingVT; HaltingVT must be fine-tuned: start from it with model.init_from(path)")
    if layout == "haltingvt_official":
        state = convert_official(state)
    expected = model.state_dict()
    try:
        check_keys(path, layout, state, expected)
    except CheckpointError as err:
        hint = ""
        if "patch_embed.proj.weight" in str(err) and layout == "haltingvt_official":
            hint = "\n  hint: official checkpoints embed frame by frame: build with tubelet_size=1"
        raise CheckpointError(str(err) + hint) from None
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
    return layout


def init_haltingvt(model, path: str | os.PathLike) -> dict:
    """Non-strict initialisation before fine-tuning; returns what was loaded, derived, left new, unused."""
    state = read_raw(path)
    layout = detect_layout(state)
    if layout in ("haltingvt", "haltingvt_official"):
        layout = load_haltingvt(model, path)
        return {"layout": layout, "loaded": sorted(model.state_dict()), "derived": {}, "new": [],
                "unused": []}
    if layout == "deit":
        mapped, derived, used = from_deit(state, model)
    else:
        state, dense_layout = read_checkpoint(path)
        layout = f"dense:{dense_layout}"
        mapped, derived, used = from_dense(state, model)
    return _apply(model, path, layout, mapped, derived, sorted(set(state) - used))


def from_deit(state: tp.Mapping[str, torch.Tensor], model) -> tp.Tuple[dict, dict, set]:
    """The official initialisation from an ImageNet DeiT (``vit_utils.load_pretrained``).

    Spatial weights go to the same names; in the Glimpser blocks ``temporal_attn``/``temporal_norm1``
    are copies of ``attn``/``norm1`` and ``temporal_fc`` is zero; ``time_embed`` stays zero; the
    classifier is dropped. A different patch grid resamples ``pos_embed`` with 2-D nearest
    interpolation (the official forward's rule; the official loader instead resamples the flattened
    sequence 1-D, which only differs for non-224 inputs). A tubelet > 1 inflates the patch weight
    (repeated over time / tubelet, as I3D).
    """
    cfg = model.cfg
    out, derived, used = {}, {}, set()

    def take(src: str, dst: tp.Optional[str] = None) -> torch.Tensor:
        used.add(src)
        out[dst or src] = state[src]
        return state[src]

    weight = state["patch_embed.proj.weight"]
    used.add("patch_embed.proj.weight")
    if weight.dim() == 4:
        weight = weight.unsqueeze(2).repeat(1, 1, cfg.tubelet_size, 1, 1) / cfg.tubelet_size
        derived["patch_embed.proj.weight"] = f"image patch weight inflated to tubelet {cfg.tubelet_size}"
    out["patch_embed.proj.weight"] = weight
    take("patch_embed.proj.bias")
    take("cls_token")
    prefix = 1 + ("dist_token" in state)
    pos = state["pos_embed"]
    used.add("pos_embed")
    grid = pos[:, prefix:]
    if grid.shape[1] != model.per_frame:
        grid = resize_grid(grid, model.per_frame)
        derived["pos_embed"] = f"2-D nearest resampling of {pos.shape[1] - prefix} patch positions"
    out["pos_embed"] = torch.cat((pos[:, :1], grid), dim=1)
    depth = sum(1 for i in range(cfg.depth) if f"blocks.{i}.attn.qkv.weight" in state)
    for i in range(depth):
        for name in BLOCK_PARAMS:
            for suffix in ("weight", "bias"):
                take(f"blocks.{i}.{name}.{suffix}")
        if i < GLIMPSER_BLOCKS:
            _temporal_from_spatial(out, derived, i)
    take("norm.weight")
    take("norm.bias")
    return out, derived, used


def from_dense(state: tp.Mapping[str, torch.Tensor], model) -> tp.Tuple[dict, dict, set]:
    """Initialise from a dense VideoMAE-style classifier (``VideoViT`` names).

    - patch embedding copied (same tubelet); the CLS token is zero: its query is then the same in
      every frame (LayerNorm bias only), so the Glimpser CLS starts out as a near-uniform attention
      average of the patches, close to the dense model's mean pooling;
    - the fixed sinusoid table over the time-major index t*S + s is split into the least-squares
      additive fit spatial[s] + temporal[t] (row and column means): pos_embed[1 + s] = mean_t P[t, s],
      time_embed[t] = mean_s P[t, s] - mean P; the CLS position is zero;
    - q_bias/v_bias become the full qkv bias (k bias 0); blocks 0..1 become the Glimpser's spatial
      attention and MLP, with temporal attention copied from the spatial one and ``temporal_fc`` zero
      (TimeSformer's initialisation: the block starts as a per-frame spatial block); blocks 2.. become
      the halting blocks; ``fc_norm`` -> final ``norm``; ``head`` kept when the class count matches.
    """
    from harness.models.video_vit import sinusoid_table

    cfg = model.cfg
    C = cfg.embed_dim
    out, derived, used = {}, {}, set()
    for key in ("patch_embed.proj.weight", "patch_embed.proj.bias"):
        out[key] = state[key]
        used.add(key)
    table = sinusoid_table(model.frames * model.per_frame, C)[0].reshape(model.frames, model.per_frame, C)
    spatial, temporal = table.mean(dim=0), table.mean(dim=1) - table.mean(dim=(0, 1))
    out["pos_embed"] = torch.cat((torch.zeros(1, C), spatial)).unsqueeze(0)
    out["time_embed"] = temporal.unsqueeze(0)
    out["cls_token"] = torch.zeros(1, 1, C)
    derived.update({"pos_embed": "spatial part of the sinusoid table (mean over time); CLS position 0",
                    "time_embed": "temporal part of the sinusoid table (mean over space, centred)",
                    "cls_token": "zero"})
    depth = sum(1 for i in range(cfg.depth) if f"blocks.{i}.attn.qkv.weight" in state)
    for i in range(depth):
        for name in ("norm1", "norm2", "attn.proj", "mlp.fc1", "mlp.fc2"):
            for suffix in ("weight", "bias"):
                out[f"blocks.{i}.{name}.{suffix}"] = state[f"blocks.{i}.{name}.{suffix}"]
                used.add(f"blocks.{i}.{name}.{suffix}")
        weight = state[f"blocks.{i}.attn.qkv.weight"]
        q, v = state.get(f"blocks.{i}.attn.q_bias"), state.get(f"blocks.{i}.attn.v_bias")
        zero = torch.zeros(weight.shape[0] // 3)
        out[f"blocks.{i}.attn.qkv.weight"] = weight
        q, v = (zero if b is None else b for b in (q, v))
        out[f"blocks.{i}.attn.qkv.bias"] = torch.cat((q, zero, v))
        derived[f"blocks.{i}.attn.qkv.bias"] = "q_bias, zero k bias, v_bias"
        used.update(k for k in (f"blocks.{i}.attn.qkv.weight", f"blocks.{i}.attn.q_bias",
                                f"blocks.{i}.attn.v_bias") if k in state)
        if i < GLIMPSER_BLOCKS:
            _temporal_from_spatial(out, derived, i)
    for src, dst in (("fc_norm.weight", "norm.weight"), ("fc_norm.bias", "norm.bias")):
        if src in state:
            out[dst] = state[src]
            used.add(src)
    if "head.weight" in state and state["head.weight"].shape[0] == cfg.num_classes:
        out["head.weight"], out["head.bias"] = state["head.weight"], state["head.bias"]
        used.update(("head.weight", "head.bias"))
    return out, derived, used


def _temporal_from_spatial(out: dict, derived: dict, i: int) -> None:
    for src, dst in (("attn.qkv", "temporal_attn.qkv"), ("attn.proj", "temporal_attn.proj"),
                     ("norm1", "temporal_norm1")):
        for suffix in ("weight", "bias"):
            out[f"blocks.{i}.{dst}.{suffix}"] = out[f"blocks.{i}.{src}.{suffix}"].clone()
            derived[f"blocks.{i}.{dst}.{suffix}"] = f"copy of blocks.{i}.{src}.{suffix}"
    C = out[f"blocks.{i}.attn.proj.weight"].shape[0]
    out[f"blocks.{i}.temporal_fc.weight"] = torch.zeros(C, C)
    out[f"blocks.{i}.temporal_fc.bias"] = torch.zeros(C)
    derived[f"blocks.{i}.temporal_fc.weight"] = derived[f"blocks.{i}.temporal_fc.bias"] = "zero"


def resize_grid(grid: torch.Tensor, tokens: int) -> torch.Tensor:
    """[1, S0, C] positions of a square grid -> [1, tokens, C] by 2-D nearest interpolation."""
    side0, side = math.isqrt(grid.shape[1]), math.isqrt(tokens)
    if side0 * side0 != grid.shape[1] or side * side != tokens:
        raise CheckpointError(f"cannot resample {grid.shape[1]} positions to {tokens}: not square grids")
    image = grid.reshape(1, side0, side0, -1).permute(0, 3, 1, 2)
    image = F.interpolate(image, size=(side, side), mode="nearest")
    return image.flatten(2).transpose(1, 2)


def _apply(model, path, layout: str, mapped: dict, derived: dict, unused: tp.List[str]) -> dict:
    expected = model.state_dict()
    unknown = sorted(set(mapped) - set(expected))
    mismatched = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
                  for k, v in sorted(mapped.items()) if k in expected and v.shape != expected[k].shape]
    if unknown or mismatched:
        shown = (mismatched + [f"{k}: not in the model" for k in unknown])[:12]
        raise CheckpointError(f"{path} ({layout} layout) does not fit the model: " + "; ".join(shown))
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in mapped.items()}, strict=False)
    return {"layout": layout, "loaded": sorted(set(mapped) - set(derived)),
            "derived": dict(sorted(derived.items())), "new": sorted(set(expected) - set(mapped)),
            "unused": unused}
