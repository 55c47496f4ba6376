"""The backbone-family registry: one ``register_family`` call per family, in its own module (torch-free).

A family is what a ViT backbone's preset names with ``VideoViTConfig.family``: the library model it
reproduces, its token layout (what a token-reduction method must respect), how a Hugging Face model folder
of it is read (``config.json`` -> dims, state dict -> our keys) and its test backbone for the methods'
examples. ``harness.models.families`` imports every module next to this one and those on
``HARNESS_FAMILIES_PATH``; the presets, the Hugging Face reader, the checkpoint loader and the method
registry read the declarations from here (docs/adding_a_backbone.md).
"""
from __future__ import annotations

import dataclasses
import typing as tp

from harness.registry import Registry, unknown_name_message

# the layout values harness.models.video_vit (layers) and harness.measure.flops (GMACs) implement
POSITIONS = ("sinusoid", "learned", "learned_space_time", "rope3d")
ATTENTIONS = ("joint", "divided")
ORDERS = ("thw", "hwt")
POOLINGS = ("mean", "cls", "attentive")
BIASES = ("qkv", "qv")

Converter = tp.Callable[[tp.Dict[str, tp.Any], tp.Any], tp.Dict[str, tp.Any]]
DimsReader = tp.Callable[[tp.Mapping[str, tp.Any], tp.List[str]], tp.Dict[str, tp.Any]]


@dataclasses.dataclass(frozen=True)
class BackboneFamily:
    """One ViT family, as ``register_family`` declares it."""

    name: str  # VideoViTConfig.family
    reproduces: str  # the library model, shown by ``ls backbones`` and in validate's refusals
    cls_tokens: int  # class tokens before the patch tokens (TokenLayout)
    position: str  # one of POSITIONS
    attention: str  # one of ATTENTIONS
    order: str  # one of ORDERS: patch-token order
    pooling: str  # one of POOLINGS
    model_type: str  # config.json's model_type
    classifier: str  # the transformers classifier class config.json's architectures must name
    config_dims: DimsReader  # (config.json dict, problems) -> VideoViTConfig fields; appends one message per refused variant
    convert: Converter  # (the library's state dict, where) -> ours; raises CheckpointError on a wrong model
    hf_prefix: str  # the library's base-model key prefix ("vivit." keys): how a bare weights file is recognised
    example_changes: tp.Mapping[str, tp.Any]  # what its test backbone changes in methods.registry.EXAMPLE_BACKBONE
    #                                           besides the family (methods.registry.example_backbone)
    biases: str = "qkv"  # attention biases: "qkv", or "qv" (VideoMAE: no key bias)

    @property
    def layout(self) -> tp.Tuple[int, str, str, str, str]:
        """``(cls_tokens, position, attention, order, pooling)``, the fields of ``presets.TokenLayout``."""
        return self.cls_tokens, self.position, self.attention, self.order, self.pooling


family_registry: Registry[BackboneFamily] = Registry("backbone family")


def register_family(name: str, *, reproduces: str, cls_tokens: int, position: str, attention: str, order: str,
                    pooling: str, model_type: str, classifier: str, config_dims: DimsReader, convert: Converter,
                    example_changes: tp.Mapping[str, tp.Any], hf_prefix: tp.Optional[str] = None,
                    biases: str = "qkv") -> BackboneFamily:
    """Declare family ``name`` (see ``BackboneFamily``); a value the layers do not implement is refused."""
    problems = [f"{field} {value!r} is not one of {', '.join(allowed)}"
                for field, value, allowed in (("position", position, POSITIONS), ("attention", attention, ATTENTIONS),
                                              ("order", order, ORDERS), ("pooling", pooling, POOLINGS),
                                              ("biases", biases, BIASES))
                if value not in allowed]
    if not isinstance(cls_tokens, int) or cls_tokens < 0:
        problems.append(f"cls_tokens {cls_tokens!r} is not a count")
    if "family" in example_changes and example_changes["family"] != name:
        problems.append(f"example_changes names family {example_changes['family']!r}")
    taken = family_of_model_type(model_type)
    if taken is not None:
        problems.append(f"model_type {model_type!r} is already family {taken.name!r}'s")
    if problems:
        raise ValueError(f"backbone family {name!r}: " + "; ".join(problems))
    family = BackboneFamily(name, reproduces, cls_tokens, position, attention, order, pooling, model_type,
                            classifier, config_dims, convert, hf_prefix or model_type, dict(example_changes), biases)
    family_registry.add(name, family, reproduces=reproduces, model_type=model_type)
    return family


def get_family(name: str) -> BackboneFamily:
    return family_registry.get(name)


def family_of_model_type(model_type: tp.Any) -> tp.Optional[BackboneFamily]:
    """The family whose ``config.json`` says ``model_type``, or None."""
    return next((f for f in map(family_registry.get, family_registry.names()) if f.model_type == model_type), None)


def unknown_family_message(name: str) -> str:
    return unknown_name_message("family", name, family_registry.names())
