"""V-JEPA 2 (Assran et al., 2025; facebookresearch/vjepa2) with its attentive probe, as transformers'
``VJEPA2ForVideoClassification``: no class token, 3-D rotary positions inside attention, joint attention,
an attentive probe (self-attention layers, then a cross-attention from a learned query) to the head."""
from __future__ import annotations

import re
import typing as tp

from harness.models.families.common import num_classes, square
from harness.models.families.registry import register_family

# transformers' VJEPA2Config defaults, for keys a config.json leaves out
_DEFAULTS = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "mlp_ratio": 4.0,
             "patch_size": 16, "crop_size": 256, "frames_per_clip": 64, "tubelet_size": 2, "in_chans": 3,
             "layer_norm_eps": 1e-6, "qkv_bias": True, "hidden_act": "gelu", "num_pooler_layers": 3}


def config_dims(config: tp.Mapping[str, tp.Any], problems: tp.List[str]) -> dict:
    """``VJEPA2Config`` -> dims: the encoder (``crop_size`` is the input side, ``frames_per_clip`` the
    frames: transformers' rotary grid follows ``crop_size``) and the probe's ``num_pooler_layers``."""
    get = {k: config.get(k, v) for k, v in _DEFAULTS.items()}
    patch = square(get, "patch_size", problems)
    if get["hidden_act"] != "gelu":
        problems.append(f"hidden_act {get['hidden_act']!r} (only 'gelu')")
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "crop_size", "frames_per_clip",
                "tubelet_size", "num_pooler_layers"):
        if not isinstance(get[key], int) or isinstance(get[key], bool):
            problems.append(f"{key} {get[key]!r} is not an integer")
    return {"family": "vjepa2", "embed_dim": get["hidden_size"], "depth": get["num_hidden_layers"],
            "num_heads": get["num_attention_heads"], "mlp_ratio": float(get["mlp_ratio"]), "patch_size": patch,
            "tubelet_size": get["tubelet_size"], "num_frames": get["frames_per_clip"], "img_size": get["crop_size"],
            "num_classes": num_classes(config), "in_chans": get["in_chans"], "qkv_bias": bool(get["qkv_bias"]),
            "norm_eps": float(get["layer_norm_eps"]), "probe_layers": get["num_pooler_layers"]}


_PROBE_SELF = re.compile(r"^pooler\.self_attention_layers\.(\d+)\.(.+)$")
_PROBE_LAYER = {"layer_norm1.": "norm1.", "layer_norm2.": "norm2.", "mlp.fc1.": "mlp.fc1.", "mlp.fc2.": "mlp.fc2.",
                "self_attn.out_proj.": "attn.proj.", "cross_attn.q_proj.": "cross.q.",
                "cross_attn.k_proj.": "cross.k.", "cross_attn.v_proj.": "cross.v."}


def convert(state: tp.Dict[str, tp.Any], where) -> tp.Dict[str, tp.Any]:
    """transformers ``VJEPA2ForVideoClassification`` keys -> ours: the encoder's layers as the other
    families' (separate query/key/value stacked into ``qkv``), the attentive probe under ``probe.`` (its
    self-attention q/k/v_proj stacked likewise). The file also holds ``VJEPA2Model``'s predictor
    (``vjepa2.predictor.*``), which the classifier never runs: those tensors are dropped, nothing else."""
    import torch

    from harness.models.checkpoint import CheckpointError, convert_hf_blocks

    if not any(k.startswith("pooler.") for k in state) or not any(k.startswith("classifier.") for k in state):
        raise CheckpointError(f"{where}: a VJEPA2Model without its attentive probe and classifier; "
                              "token-reduction benchmarks need VJEPA2ForVideoClassification weights "
                              "(e.g. hf:facebook/vjepa2-vitl-fpc16-256-ssv2)")
    encoder = {k: v for k, v in state.items() if not k.startswith(("pooler.", "vjepa2.predictor."))}
    out = convert_hf_blocks(
        encoder, where, "vjepa2", attentions={"": "attn"}, extra={"attention.proj.": "attn.proj."},
        top={"vjepa2.encoder.embeddings.patch_embeddings.proj.": "patch_embed.proj.",
             "vjepa2.encoder.layernorm.": "norm.", "classifier.": "head."})
    qkv: tp.Dict[tp.Tuple[int, str], tp.Dict[str, tp.Any]] = {}
    for key, value in state.items():
        if not key.startswith("pooler."):
            continue
        m = _PROBE_SELF.match(key)
        rest = m.group(2) if m else key.removeprefix("pooler.cross_attention_layer.")
        ours = f"probe.blocks.{m.group(1)}." if m else "probe."
        if key == "pooler.query_tokens":
            out["probe.query_token"] = value
            continue
        if m and rest.startswith("self_attn.") and rest[len("self_attn."):len("self_attn.") + 7] in (
                "q_proj.", "k_proj.", "v_proj."):
            kind = rest.rpartition(".")[2]
            qkv.setdefault((int(m.group(1)), kind), {})[rest[len("self_attn.")]] = value
            continue
        name = next((p for p in _PROBE_LAYER if rest.startswith(p)), None)
        out[ours + _PROBE_LAYER[name] + rest[len(name):] if name else key] = value  # unknown: left to fail
    for (layer, kind), parts in sorted(qkv.items()):
        if set(parts) != {"q", "k", "v"}:
            raise CheckpointError(f"{where}: probe layer {layer} lacks attention {kind}(s) "
                                  f"{sorted({'q', 'k', 'v'} - set(parts))}")
        out[f"probe.blocks.{layer}.attn.qkv.{kind}"] = torch.cat([parts[p] for p in "qkv"], dim=0)
    return out


register_family(
    "vjepa2", reproduces="V-JEPA 2 with its attentive probe (transformers VJEPA2ForVideoClassification)",
    cls_tokens=0, position="rope3d", attention="joint", order="thw", pooling="attentive",
    model_type="vjepa2", classifier="VJEPA2ForVideoClassification", config_dims=config_dims, convert=convert,
    example_changes={"probe_layers": 1})
