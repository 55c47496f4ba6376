"""ViViT model 1 (Arnab et al., ICCV'21; spatio-temporal attention) as transformers'
``VivitForVideoClassification``: a class token, learned positions, joint attention, the class token's
final norm to the head; tubelet embedding, FastGELU."""
from __future__ import annotations

import typing as tp

from harness.models.families.common import common_dims
from harness.models.families.registry import register_family


def config_dims(config: tp.Mapping[str, tp.Any], problems: tp.List[str]) -> dict:
    common = common_dims(config, problems)
    tubelet = config.get("tubelet_size", [2, 16, 16])
    if not (isinstance(tubelet, (list, tuple)) and len(tubelet) == 3 and tubelet[1] == tubelet[2]):
        problems.append(f"tubelet_size {tubelet!r} is not [t, p, p]")
        tubelet = [2, 16, 16]
    act = config.get("hidden_act", "gelu_fast")
    if act not in ("gelu", "gelu_fast"):
        problems.append(f"hidden_act {act!r} (only 'gelu' or 'gelu_fast')")
    return {**common, "family": "vivit", "act": act, "tubelet_size": tubelet[0], "patch_size": tubelet[1],
            "num_frames": config.get("num_frames", 32), "qkv_bias": bool(config.get("qkv_bias", True)),
            "norm_eps": float(config.get("layer_norm_eps", 1e-6))}


def convert(state: tp.Dict[str, tp.Any], where) -> tp.Dict[str, tp.Any]:
    """transformers ``VivitForVideoClassification`` keys -> ours."""
    from harness.models.checkpoint import CheckpointError, convert_hf_blocks

    if not any(k.startswith("classifier.") for k in state):
        raise CheckpointError(f"{where}: a VivitModel without its classifier head; token-reduction "
                              "benchmarks need VivitForVideoClassification weights")
    return convert_hf_blocks(
        state, where, "vivit", attentions={"attention.": "attn"}, extra={},
        top={"vivit.embeddings.patch_embeddings.projection.": "patch_embed.proj.",
             "vivit.embeddings.cls_token": "cls_token", "vivit.embeddings.position_embeddings": "pos_embed",
             "vivit.layernorm.": "norm.", "classifier.": "head."})


register_family(
    "vivit", reproduces="ViViT model 1 (transformers VivitForVideoClassification)",
    cls_tokens=1, position="learned", attention="joint", order="thw", pooling="cls",
    model_type="vivit", classifier="VivitForVideoClassification", config_dims=config_dims, convert=convert,
    example_changes={})
