"""Optimiser with decay / no-decay groups, and the warm-up + cosine learning rate (per step)."""
from __future__ import annotations

import math
import typing as tp

import torch


def param_groups(model: torch.nn.Module, weight_decay: float, no_decay: tp.Sequence[str]) -> list:
    """Biases, norms (1-D tensors) and names containing a ``no_decay`` substring get no weight decay."""
    decay, plain = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (plain if p.ndim <= 1 or any(s in name for s in no_decay) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, recipe: dict) -> torch.optim.Optimizer:
    groups = param_groups(model, recipe["weight_decay"], recipe["no_decay"])
    name = recipe["optimizer"]
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=recipe["lr"])
    if name == "adam":  # HaltingVT's official Adam applies weight decay as L2 in the gradient
        return torch.optim.Adam(groups, lr=recipe["lr"])
    if name == "sgd":
        return torch.optim.SGD(groups, lr=recipe["lr"], momentum=0.9)
    raise ValueError(f"unknown optimizer {name!r}; expected adamw, adam or sgd")


def lr_at(step: int, steps_per_epoch: int, recipe: dict) -> float:
    """Learning rate of ``step``: linear warm-up from ``warmup_start_factor`` x peak, then cosine to 0.

    mmengine's LinearLR(start_factor) + CosineAnnealingLR(T_max) as HaltingVT configures them
    (``cosine_t_max_epochs``: its T_max spans all epochs although the cosine starts after warm-up, so
    the rate ends at ~15% of the peak, not 0), evaluated per step instead of per epoch.
    """
    peak, total = recipe["lr"], steps_per_epoch * recipe["epochs"]
    warmup = int(round(steps_per_epoch * recipe["warmup_epochs"]))
    if step < warmup:
        start = recipe["warmup_start_factor"]
        return peak * (start + (1 - start) * (step + 1) / warmup)
    if recipe["schedule"] == "constant":
        return peak
    if recipe["schedule"] != "cosine":
        raise ValueError(f"unknown schedule {recipe['schedule']!r}; expected cosine or constant")
    period = total - warmup
    if recipe.get("cosine_t_max_epochs"):  # mmengine CosineAnnealingLR(T_max) started after warm-up
        period = steps_per_epoch * recipe["cosine_t_max_epochs"]
    return 0.5 * peak * (1 + math.cos(math.pi * (step - warmup) / max(1, period)))
