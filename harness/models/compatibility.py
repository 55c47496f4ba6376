"""Whether a backbone, a dataset protocol and a method can form a cell (torch-free).

Used by ``harness validate`` (so impossible cells are rejected before anything runs), by
``build_model`` (backbone x method) and by the runner (protocol x backbone).
"""
from __future__ import annotations

import typing as tp


def method_problems(method_name: str, params: tp.Any, cfg: tp.Any) -> tp.List[str]:
    """The method's own requirements on the backbone (``params.check_backbone(cfg)``, if it has one)."""
    check = getattr(params, "check_backbone", None)
    return [f"method {method_name!r}: {p}" for p in check(cfg)] if check else []


def protocol_problems(dataset: tp.Any, cfg: tp.Any) -> tp.List[str]:
    """The test views must have the shape the backbone was built for."""
    problems = []
    if dataset.clip_len != cfg.num_frames:
        problems.append(f"dataset clip_len {dataset.clip_len} != backbone num_frames {cfg.num_frames}")
    if dataset.crop_size != cfg.img_size:
        problems.append(f"dataset crop_size {dataset.crop_size} != backbone img_size {cfg.img_size}")
    return problems


def count_problems(method_name: str, params: tp.Any, cfg: tp.Any) -> tp.List[str]:
    """Knobs the method would silently cap on this backbone (``params.check_counts(cfg)``, if it has
    one; ToMe's r above N // 2, say). The model still builds -- capping is the official behaviour --
    but a suite cell labelled with the uncapped value would misreport what ran, so suites refuse it."""
    check = getattr(params, "check_counts", None)
    return [f"method {method_name!r}: {p}" for p in check(cfg)] if check else []
