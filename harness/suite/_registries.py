"""The suite's only view of the method, backbone and dataset registries (no torch).

Registries are looked up through their modules at call time, so a test can swap in fresh ones.
"""
from __future__ import annotations

import dataclasses
import importlib
import typing as tp

from harness.data import registry as _data_registry
from harness.models import presets as _presets
from harness.suite._schema import ENTRY_SECTIONS, EvalConfig, MeasureConfig, SuiteConfig
from harness.suite._types import field_types

_REGISTRATION_MODULES = ("methods", "harness.data.datasets", "harness.models")
_SECTIONS = {(): SuiteConfig, ("eval",): EvalConfig, ("measure",): MeasureConfig}


def _ensure_registered() -> None:
    """Import the modules whose import registers every method, dataset and backbone."""
    for name in _REGISTRATION_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as err:  # re-raised: a suite cannot be checked against half a registry
            raise ImportError(f"importing registration module {name!r} failed: {err}") from err


def _methods_module() -> tp.Any:
    # NOTE: imported lazily; ``methods/__init__`` imports every method's registration module.
    return importlib.import_module("methods.registry")


def names(section: str) -> list[str]:
    return _registry(section).names()


def _registry(section: str) -> tp.Any:
    if section == "methods":
        return _methods_module().method_registry
    if section == "backbones":
        return _presets.backbone_registry
    return _data_registry.dataset_registry


def lookup(section: str, name: str) -> tp.Any:
    """The registered object (MethodSpec, preset function, dataset class); UnknownNameError if none."""
    if section == "methods":
        return _methods_module().get_method(name)
    return _registry(section).get(name)


def entry_fields(section: str, name: str) -> dict[str, tp.Any]:
    """Valid keys (besides ``name``) of an entry and their annotations; UnknownNameError if unknown."""
    obj = lookup(section, name)
    if section == "methods":
        return field_types(obj.params)
    if section == "datasets":
        return field_types(obj)
    dims = field_types(_presets.config_class(name))  # the preset's config class defines its keys
    return {"checkpoint": tp.Optional[str], **{d: dims[d] for d in _presets.dim_names(name)}}


def entry_class(section: str, name: str) -> type:
    """The dataclass an entry of ``section`` builds (datasets and methods only)."""
    obj = lookup(section, name)
    return obj.params if section == "methods" else obj


def keys_at(data: dict, path: tuple) -> tp.Optional[dict[str, tp.Any]]:
    """Valid keys (with annotations) of the mapping at ``path`` in a suite tree, None if unknowable."""
    if path in _SECTIONS:
        return field_types(_SECTIONS[path])
    if len(path) == 2 and path[0] in ENTRY_SECTIONS and isinstance(path[1], int):
        entries = data.get(path[0])
        entry = entries[path[1]] if isinstance(entries, list) and path[1] < len(entries) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str):
            try:
                return {"name": str, **entry_fields(path[0], name)}
            except KeyError:  # UnknownNameError: reported by validation
                return None
    return None


def is_section_type(ann: tp.Any) -> bool:
    return dataclasses.is_dataclass(ann)
