"""VideoMAE (Tong et al., NeurIPS'22; MCG-NJU/VideoMAE) as transformers' ``VideoMAEForVideoClassification``:
no class token, a fixed sinusoid position table added once, joint attention, mean pool + ``fc_norm``;
q and v biases, no k bias. VideoMAE V2's distilled classifiers are the same network."""
from __future__ import annotations

import re
import typing as tp

from harness.models.families.common import common_dims, given, square
from harness.models.families.registry import register_family


def config_dims(config: tp.Mapping[str, tp.Any], problems: tp.List[str]) -> dict:
    common = common_dims(config, problems)
    if config.get("use_mean_pooling", True) is not True:
        problems.append("use_mean_pooling=false (first-token pooling with a final layernorm) is not "
                        "the VideoMAE classifier the harness builds")
    if config.get("hidden_act", "gelu") != "gelu":
        problems.append(f"hidden_act {config.get('hidden_act')!r} (only 'gelu')")
    patch = square(config, "patch_size", problems)
    qkv_bias = config.get("qv_bias", config.get("qkv_bias", True))  # transformers 5 / 4 spelling
    return {**common, "patch_size": given(patch, 16),
            "tubelet_size": config.get("tubelet_size", 2), "num_frames": config.get("num_frames", 16),
            "norm_eps": float(config.get("layer_norm_eps", 1e-12)), "qkv_bias": bool(qkv_bias),
            # transformers builds fc_norm as nn.LayerNorm(hidden_size): torch's default 1e-5, whatever
            # layer_norm_eps says (the official VideoMAE code: 1e-6 everywhere)
            "fc_norm_eps": 1e-5}


_LAYER = re.compile(r"^videomae\.encoder\.layer\.(\d+)\.(.+)$")
_IN_LAYER = {  # HF name inside a layer -> ours inside blocks.{i}
    "attention.attention.q_bias": "attn.q_bias", "attention.attention.query.bias": "attn.q_bias",
    "attention.attention.v_bias": "attn.v_bias", "attention.attention.value.bias": "attn.v_bias",
    "attention.output.dense.weight": "attn.proj.weight", "attention.output.dense.bias": "attn.proj.bias",
    "layernorm_before.weight": "norm1.weight", "layernorm_before.bias": "norm1.bias",
    "layernorm_after.weight": "norm2.weight", "layernorm_after.bias": "norm2.bias",
    "intermediate.dense.weight": "mlp.fc1.weight", "intermediate.dense.bias": "mlp.fc1.bias",
    "output.dense.weight": "mlp.fc2.weight", "output.dense.bias": "mlp.fc2.bias",
}
_TOP = {"videomae.embeddings.patch_embeddings.projection.": "patch_embed.proj.",
        "fc_norm.": "fc_norm.", "classifier.": "head."}
_QKV = ("query", "key", "value")


def convert(state: tp.Dict[str, tp.Any], where) -> tp.Dict[str, tp.Any]:
    """Hugging Face VideoMAEForVideoClassification keys -> ours; q/k/v weights stacked into qkv."""
    import torch

    from harness.models.hf import CheckpointError

    if any(k.startswith(("decoder.", "encoder_to_decoder.")) for k in state) or "mask_token" in state:
        raise CheckpointError(
            f"{where} is a Hugging Face VideoMAEForPreTraining checkpoint (keys 'decoder.*', "
            "'encoder_to_decoder.*'); token-reduction benchmarks need a fine-tuned "
            "VideoMAEForVideoClassification, e.g. hf:MCG-NJU/videomae-base-finetuned-kinetics")
    if any(k.startswith("videomae.layernorm.") for k in state):
        raise CheckpointError(f"{where}: has 'videomae.layernorm.*' (use_mean_pooling=false: first-token "
                              "pooling), which is not the mean-pooled VideoMAE classifier the harness builds")
    out, qkv = {}, {}
    for key, value in state.items():
        m = _LAYER.match(key)
        if m:
            layer, rest = int(m.group(1)), m.group(2)
            part = rest.removeprefix("attention.attention.").removesuffix(".weight")
            if rest.startswith("attention.attention.") and rest.endswith(".weight") and part in _QKV:
                qkv.setdefault(layer, {})[part] = value
                continue
            if rest == "attention.attention.key.bias":
                if value.any():
                    raise CheckpointError(f"{where}: {key} is non-zero; VideoMAE attention has no key bias")
                continue
            ours = f"blocks.{layer}." + _IN_LAYER.get(rest, rest)
            if ours in out:
                raise CheckpointError(f"{where}: layer {layer} holds both the q_bias/v_bias and the "
                                      "query.bias/value.bias spelling; keep one")
            out[ours] = value
            continue
        if key == "videomae.embeddings.position_embeddings":
            continue  # the fixed sinusoid table, regenerated at construction
        prefix = next((p for p in _TOP if key.startswith(p)), None)
        out[_TOP[prefix] + key[len(prefix):] if prefix else key] = value
    for layer, parts in sorted(qkv.items()):
        if set(parts) != set(_QKV):
            raise CheckpointError(f"{where}: layer {layer} lacks attention weight(s) "
                                  f"{sorted(set(_QKV) - set(parts))}")
        out[f"blocks.{layer}.attn.qkv.weight"] = torch.cat([parts[p] for p in _QKV], dim=0)
    return out


register_family(
    "videomae", reproduces="VideoMAE (MCG-NJU/VideoMAE, transformers VideoMAEForVideoClassification)",
    cls_tokens=0, position="sinusoid", attention="joint", order="thw", pooling="mean", biases="qv",
    model_type="videomae", classifier="VideoMAEForVideoClassification", config_dims=config_dims, convert=convert,
    example_changes={})
