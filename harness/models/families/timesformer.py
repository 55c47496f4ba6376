"""TimeSformer (Bertasius et al., ICML'21), divided space-time attention, as transformers'
``TimesformerForVideoClassification``: a class token, learned space and time positions, temporal attention
per patch position then spatial attention per frame, patch-major token order, the class token to the head."""
from __future__ import annotations

import typing as tp

from harness.models.families.common import common_dims
from harness.models.families.registry import register_family


def config_dims(config: tp.Mapping[str, tp.Any], problems: tp.List[str]) -> dict:
    common = common_dims(config, problems)
    if config.get("attention_type", "divided_space_time") != "divided_space_time":
        problems.append(f"attention_type {config.get('attention_type')!r} (only 'divided_space_time')")
    if config.get("hidden_act", "gelu") != "gelu":
        problems.append(f"hidden_act {config.get('hidden_act')!r} (only 'gelu')")
    return {**common, "family": "timesformer", "tubelet_size": 1, "patch_size": config.get("patch_size", 16),
            "num_frames": config.get("num_frames", 8), "qkv_bias": bool(config.get("qkv_bias", True)),
            "norm_eps": float(config.get("layer_norm_eps", 1e-6))}


def convert(state: tp.Dict[str, tp.Any], where) -> tp.Dict[str, tp.Any]:
    """transformers ``TimesformerForVideoClassification`` keys -> ours (its per-frame Conv2d patch
    embedding becomes our Conv3d with a temporal kernel of 1)."""
    from harness.models.checkpoint import CheckpointError, convert_hf_blocks

    if not any(k.startswith("classifier.") for k in state):
        raise CheckpointError(f"{where}: a TimesformerModel without its classifier head; token-reduction "
                              "benchmarks need TimesformerForVideoClassification weights")
    out = convert_hf_blocks(
        state, where, "timesformer",
        attentions={"temporal_attention.": "attn_t", "attention.": "attn"},
        extra={"temporal_layernorm.": "norm_t.", "temporal_dense.": "temporal_fc."},
        top={"timesformer.embeddings.patch_embeddings.projection.": "patch_embed.proj.",
             "timesformer.embeddings.cls_token": "cls_token",
             "timesformer.embeddings.position_embeddings": "pos_embed",
             "timesformer.embeddings.time_embeddings": "time_embed",
             "timesformer.layernorm.": "norm.", "classifier.": "head."})
    weight = out.get("patch_embed.proj.weight")
    if weight is not None and weight.dim() == 4:
        out["patch_embed.proj.weight"] = weight.unsqueeze(2)
    return out


register_family(
    "timesformer", reproduces="TimeSformer divided space-time (transformers TimesformerForVideoClassification)",
    cls_tokens=1, position="learned_space_time", attention="divided", order="hwt", pooling="cls",
    model_type="timesformer", classifier="TimesformerForVideoClassification", config_dims=config_dims,
    convert=convert, example_changes={"tubelet_size": 1})  # 16 frames of 4 x 4
