"""Load fine-tuned video ViT classifiers into ``VideoViT``.

A Hugging Face classifier (a model folder, or a bare weights file with the library's key prefix) is converted
by its family's ``convert`` (``harness.models.families``), the ViT families sharing ``convert_hf_blocks``.
The official layouts are recognised from signature keys (one ``_convert_*`` function each):
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


from harness.models import families, hf
from harness.models.hf import CheckpointError

__all__ = ["CheckpointError", "convert_hf_blocks", "load_checkpoint", "read_checkpoint"]


def load_checkpoint(model: nn.Module, path: str | os.PathLike,
                    allow_missing_prefix: tp.Optional[str] = None) -> str:
    """Load ``path`` into ``model`` strictly; returns the detected layout name.

    ``allow_missing_prefix`` (e.g. ``"reducer."``) lets a fine-tune start from a dense checkpoint:
    parameters under it that the file lacks keep their initialisation; nothing else may differ.
    """
    state, layout = read_checkpoint(path)
    expected = model.state_dict()
    if "pos_embed" in state and "pos_embed" not in expected:
        state = {k: v for k, v in state.items() if k != "pos_embed"}  # a sinusoid table: regenerated at construction
    state, layout = _k710_to_k400(state, layout, expected)
    if allow_missing_prefix:
        expected = {k: v for k, v in expected.items()
                    if not (k.startswith(allow_missing_prefix) and k not in state)}
    if layout == "hf":
        _check_qv_biases(path, state, expected)
    check_keys(path, layout, state, expected)
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()},
                          strict=not allow_missing_prefix)
    return layout


def _k710_to_k400(state, layout: str, expected) -> tp.Tuple[tp.Dict[str, torch.Tensor], str]:
    """A VideoMAE V2 Kinetics-710 head evaluated on K400 keeps the K400 classes' rows (the official
    code's conversion, ``harness.models.k710``); the layout then says so."""
    head, want = state.get("head.weight"), expected.get("head.weight")
    if layout != "videomae" or head is None or want is None or (head.shape[0], want.shape[0]) != (710, 400):
        return state, layout
    from harness.models.k710 import K710_TO_K400

    rows = torch.tensor(K710_TO_K400)
    state = {**state, "head.weight": head[rows], "head.bias": state["head.bias"][rows]}
    return state, "videomae+k710_to_k400"


def refuse_non_finite(state: tp.Dict[str, torch.Tensor], path: tp.Any) -> None:
    """An all-NaN (or partly infinite) file would load and evaluate as "ok" at chance accuracy."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise CheckpointError(f"{path}: {len(bad)} of {len(state)} tensors hold NaN or infinite values ({shown}); "
                              "refusing a damaged checkpoint")


def read_checkpoint(path: str | os.PathLike) -> tp.Tuple[tp.Dict[str, torch.Tensor], str]:
    """The state dict of ``path`` converted to our key names, and the layout it came in."""
    if hf.is_hf_reference(path):
        folder = hf.model_dir(path)
        config = hf.read_config(folder)  # refuses other model types and pre-training models by their config
        state = {}
        for file in hf.weight_files(folder):
            state.update(unwrap_state_dict(read_weights_file(file), file))
        refuse_non_finite(state, path)
        return _convert_hf(state, path, families.family_of_model_type(config["model_type"]).name), "hf"
    if hf.is_hf_name(path):  # one file of a hub repository
        path = hf.resolve(path)
    if not os.path.isfile(path):
        if os.path.exists(path):  # a directory, FIFO or device: torch.load would fail or block
            raise CheckpointError(f"checkpoint {path} is not a regular file")
        raise CheckpointError(f"checkpoint not found: {path}")
    state = unwrap_state_dict(read_weights_file(path), path)
    refuse_non_finite(state, path)
    prefixes = tuple(f"{families.get_family(f).hf_prefix}." for f in families.family_registry.names())
    if any(k.startswith((*prefixes, "classifier.")) for k in state):
        return _convert_hf(state, path), "hf"
    if any(k.startswith("embeddings.patch_embeddings.") for k in state):
        raise CheckpointError(f"{path} is a Hugging Face VideoMAEModel (backbone only, no fc_norm/classifier); "
                              "token-reduction benchmarks need a VideoMAEForVideoClassification checkpoint")
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


def read_weights_file(path: str) -> tp.Any:
    try:
        if str(path).endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(path, device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, truncated files, non-tensor objects, bad safetensors headers
        raise CheckpointError(f"cannot read checkpoint {path}: {type(err).__name__}: {err}") from err


def unwrap_state_dict(raw: tp.Any, path) -> tp.Dict[str, torch.Tensor]:
    if isinstance(raw, dict):
        for wrapper in ("module", "model", "state_dict"):
            if wrapper in raw and isinstance(raw[wrapper], dict):
                raw = raw[wrapper]
                break
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise CheckpointError(f"{path}: expected a dict of tensors (optionally under 'module', 'model' "
                              "or 'state_dict')")
    # "_orig_mod.": saved from a torch.compile'd model (the VideoMAE V2 loader strips it too)
    return {k.removeprefix("module.").removeprefix("_orig_mod."): v.float() if v.is_floating_point() else v
            for k, v in raw.items()}


def _convert_videomae(state: tp.Dict[str, torch.Tensor]) -> tp.Dict[str, torch.Tensor]:
    # our own key names; a sinusoid pos_embed some exports carry is dropped by load_checkpoint
    return dict(state)


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


def _convert_hf(state: tp.Dict[str, torch.Tensor], where,
                family: tp.Optional[str] = None) -> tp.Dict[str, torch.Tensor]:
    """Hugging Face classifier keys -> ours, by the converter of ``family`` (a model folder's
    ``config.json`` model_type), else of the family whose key prefix the state has (a bare weights file)."""
    if family is None:
        found = next((f for f in map(families.get_family, families.family_registry.names())
                      if any(k.startswith(f"{f.hf_prefix}.") for k in state)), None)
        family = found.name if found else "videomae"  # classifier.* alone: the harness's first family
    return families.get_family(family).convert(state, where)


# inside a layer's attention: transformers 5 module names and the hub files' (4.x) names -> q/k/v/out
_HF_ATTENTION_PARTS = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "out",
                       "attention.query": "q", "attention.key": "k", "attention.value": "v",
                       "output.dense": "out"}
_HF_BLOCK_COMMON = {"layernorm_before.": "norm1.", "layernorm_after.": "norm2.",
                    "intermediate.dense.": "mlp.fc1.", "output.dense.": "mlp.fc2.",
                    "mlp.fc1.": "mlp.fc1.", "mlp.fc2.": "mlp.fc2."}


def _attention_parts(prefix: str, rest: str) -> tp.Optional[tp.Tuple[str, str]]:
    """``("q"|"k"|"v"|"out", "weight"|"bias")`` when ``rest`` (inside a layer, after ``prefix``) is an
    attention projection; ``qkv`` (TimeSformer's stacked projection) is returned as itself."""
    if not rest.startswith(prefix):
        return None
    inner, _, kind = rest[len(prefix):].rpartition(".")
    if inner == "attention.qkv":
        return "qkv", kind
    part = _HF_ATTENTION_PARTS.get(inner)
    return (part, kind) if part else None


def convert_hf_blocks(state: tp.Dict[str, torch.Tensor], where, root: str,
                       attentions: tp.Mapping[str, str], extra: tp.Mapping[str, str],
                       top: tp.Mapping[str, str]) -> tp.Dict[str, torch.Tensor]:
    """Shared by the ViT families: ``{root}.encoder.layer.{i}.*`` -> ``blocks.{i}.*``, separate q/k/v
    projections stacked into ``qkv``; ``attentions`` maps each HF attention prefix to ours, ``extra``
    other in-layer names, ``top`` the names outside the layers."""
    layer_re = re.compile(rf"^{re.escape(root)}\.encoder\.layer\.(\d+)\.(.+)$")
    out: tp.Dict[str, torch.Tensor] = {}
    qkv: tp.Dict[tp.Tuple[int, str, str], tp.Dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        m = layer_re.match(key)
        if m:
            layer, rest = int(m.group(1)), m.group(2)
            for hf_prefix, ours in attentions.items():
                parts = _attention_parts(hf_prefix, rest)
                if parts is None:
                    continue
                part, kind = parts
                if part == "qkv":
                    out[f"blocks.{layer}.{ours}.qkv.{kind}"] = value
                elif part == "out":
                    out[f"blocks.{layer}.{ours}.proj.{kind}"] = value
                else:
                    qkv.setdefault((layer, ours, kind), {})[part] = value
                break
            else:
                name = next((p for p in (*extra, *_HF_BLOCK_COMMON) if rest.startswith(p)), None)
                mapped = {**_HF_BLOCK_COMMON, **extra}.get(name) if name else None
                out[f"blocks.{layer}." + (mapped + rest[len(name):] if mapped else rest)] = value
            continue
        prefix = next((p for p in top if key.startswith(p)), None)
        out[top[prefix] + key[len(prefix):] if prefix else key] = value
    for (layer, ours, kind), parts in sorted(qkv.items()):
        if set(parts) != {"q", "k", "v"}:
            raise CheckpointError(f"{where}: layer {layer} lacks attention {kind}(s) "
                                  f"{sorted({'q', 'k', 'v'} - set(parts))}")
        out[f"blocks.{layer}.{ours}.qkv.{kind}"] = torch.cat([parts[p] for p in "qkv"], dim=0)
    return out


def _check_qv_biases(path, state: tp.Dict[str, torch.Tensor], expected: tp.Dict[str, torch.Tensor]) -> None:
    """Refuse HF weights whose q/v biases are absent or all zero (transformers 5 loading trap).

    transformers 5 holds them as ``query.bias``/``value.bias``; a hub file spelled ``q_bias``/``v_bias``
    loaded by a version without the mapping (huggingface/transformers PR #48675) keeps zero-initialised
    biases, and re-saving writes them out: the model then runs, silently wrong.
    """
    wanted = sorted(k for k in expected if k.endswith(("attn.q_bias", "attn.v_bias")))
    absent = [k for k in wanted if k not in state]
    zero = [k for k in wanted if k in state and not state[k].any()]
    if absent:
        raise CheckpointError(f"{path}: q/v attention biases absent ({len(absent)} of {len(wanted)}, e.g. "
                              f"{absent[0]}); a VideoMAE classifier needs them (q_bias/v_bias or "
                              "query.bias/value.bias)")
    if zero:
        raise CheckpointError(
            f"{path}: q/v attention biases are all zero in {len(zero)} of {len(wanted)} tensors (e.g. {zero[0]}): "
            "these weights were most likely loaded and re-saved by a transformers 5 release without the "
            "VideoMAE q_bias/v_bias mapping (huggingface/transformers PR #48675); use the original hub files")


def check_keys(path, layout: str, state: tp.Dict[str, torch.Tensor],
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
