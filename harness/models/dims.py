"""A suite/cell ``backbone`` dict -> the dims and config to build: the preset, the dims the suite gives and, for a
Hugging Face checkpoint, its ``config.json`` (``harness.models.hf.reconcile_dims``: every disagreement refused).

Above both ``presets`` (torch-free preset registry) and ``hf`` (which checks config.json against a preset).
"""
from __future__ import annotations

import typing as tp

from harness.models.presets import resolve_config


def backbone_dims(backbone: tp.Mapping[str, tp.Any]) -> dict:
    """The architecture overrides of a suite/cell backbone dict (everything but ``name`` and ``checkpoint``);
    a Hugging Face checkpoint's config.json supplies (and checks) them (``harness.models.hf.reconcile_dims``)."""
    from harness.models.hf import reconcile_dims

    dims = {k: v for k, v in backbone.items() if k not in ("name", "checkpoint")}
    return reconcile_dims(backbone["name"], dims, backbone.get("checkpoint"))


def resolve_backbone(name: str, dims: tp.Mapping[str, tp.Any], checkpoint: tp.Any = None) -> tp.Any:
    """The config of preset ``name`` with ``dims``; a Hugging Face ``checkpoint``'s config.json gives (and
    checks) the dims."""
    from harness.models.hf import reconcile_dims

    return resolve_config(name, **reconcile_dims(name, dims, checkpoint))


def backbone_config(backbone: tp.Mapping[str, tp.Any]) -> tp.Any:
    """The resolved config of a suite/cell backbone dict."""
    return resolve_config(backbone["name"], **backbone_dims(backbone))
