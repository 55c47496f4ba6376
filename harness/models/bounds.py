"""The one table of bounds for every number that reaches a model (torch-free).

Suite dims, ``--set`` overrides, the CLI's ``--dim`` values and a Hugging Face ``config.json`` all meet
``number_problems`` before a model is built: NaN, infinities and values no architecture means (a LayerNorm
epsilon of -1 or 1e30, a patch of 0 pixels, 100,000 blocks) are refused with the field named, instead of
building a model that computes garbage or exhausts memory.
"""
from __future__ import annotations

import math
import typing as tp

# field -> (lowest, highest) accepted value, both inclusive
DIM_BOUNDS: tp.Dict[str, tp.Tuple[float, float]] = {
    "embed_dim": (1, 65536), "depth": (1, 1024), "num_heads": (1, 1024), "patch_size": (1, 1024),
    "tubelet_size": (1, 1024), "num_frames": (1, 4096), "img_size": (1, 16384), "num_classes": (0, 10 ** 6),
    "in_chans": (1, 64), "mlp_ratio": (1e-3, 64.0), "norm_eps": (1e-12, 1.0), "fc_norm_eps": (1e-12, 1.0),
    "mlp_dim": (1, 1 << 22)}  # MLP hidden width (config.json's intermediate_size)
INTEGER_DIMS = frozenset(k for k, (lo, hi) in DIM_BOUNDS.items() if isinstance(lo, int) and isinstance(hi, int))


def number_problem(field: str, value: tp.Any, name: tp.Optional[str] = None) -> tp.Optional[str]:
    """Why ``value`` cannot be ``field`` (a ``DIM_BOUNDS`` key), None when it can or ``field`` is not bounded.

    ``name`` is how the value's source spells the field (``config.json``'s ``layer_norm_eps``)."""
    if field not in DIM_BOUNDS or value is None:
        return None
    name = name or field
    lo, hi = DIM_BOUNDS[field]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{name} must be a number within [{lo:g}, {hi:g}], got {str(value)[:40]!r}"
    if field in INTEGER_DIMS and isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return f"{name} must be a whole number within [{lo:g}, {hi:g}], got {value!r}"
    if not (math.isfinite(value) and lo <= value <= hi):
        return f"{name} must be a finite number within [{lo:g}, {hi:g}], got {value!r}"
    return None


def number_problems(values: tp.Mapping[str, tp.Any],
                    names: tp.Optional[tp.Mapping[str, str]] = None) -> tp.List[tp.Tuple[str, str]]:
    """``[(field, message)]`` for every bounded field of ``values`` out of its bounds (see ``number_problem``)."""
    names = names or {}
    out = []
    for field, value in values.items():
        message = number_problem(field, value, names.get(field))
        if message:
            out.append((field, message))
    return out


def config_number_problems(config: tp.Mapping[str, tp.Any], fields: tp.Mapping[str, str]) -> tp.List[str]:
    """Problems of a model folder's ``config.json`` numbers, before any is used: ``fields`` maps each
    config.json key to its ``DIM_BOUNDS`` field (``{"layer_norm_eps": "norm_eps"}``). Absent keys are
    left to the reader's defaults; a list value (``image_size: [224, 224]``) is checked item by item.
    Every family's config reader calls this, so no config.json number bypasses the table."""
    problems = []
    for key, field in fields.items():
        value = config.get(key)
        for item in (value if isinstance(value, (list, tuple)) and value else [value]):
            message = number_problem(field, item, key)
            if message:
                problems.append(message)
                break
    return problems
