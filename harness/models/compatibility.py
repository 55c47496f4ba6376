"""Whether a backbone, a dataset protocol and a method can form a cell (torch-free).

Used by ``harness validate`` (so impossible cells are rejected before anything runs), by
``build_model`` (backbone x method) and by the runner (protocol x backbone).
"""
from __future__ import annotations

import typing as tp


def method_problems(method_name: str, params: tp.Any, cfg: tp.Any) -> tp.List[str]:
    """Layout features of the backbone the method does not handle (each with its reason), then the
    method's own requirements (``params.check_backbone(cfg)``, if it has one)."""
    import methods
    from harness.models.presets import LAYOUT_FEATURES

    spec = methods.get_method(method_name)
    layout = cfg.layout
    missing = sorted(layout.features - spec.supports)
    if missing:
        return [f"method {method_name!r} cannot run on {layout.family} ({cfg_family_title(cfg)}): it does not "
                f"handle {LAYOUT_FEATURES[f]}" + (f" -- {spec.refuses[f]}" if f in spec.refuses else "")
                for f in missing]
    check = getattr(params, "check_backbone", None)
    return [f"method {method_name!r}: {p}" for p in check(cfg)] if check else []


def families_supported(spec: tp.Any) -> tp.List[str]:
    """The families whose token layout ``spec`` (a ``MethodSpec``) handles."""
    from harness.models.presets import FAMILIES, family_features

    return [f for f in FAMILIES if family_features(f) <= spec.supports]


def cfg_family_title(cfg: tp.Any) -> str:
    from harness.models.presets import FAMILIES

    return FAMILIES.get(cfg.layout.family, cfg.layout.family).split(" (")[0]


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
    import methods

    if cfg.layout.features - methods.get_method(method_name).supports:
        return []  # refused by method_problems; its counts mean nothing on this backbone
    check = getattr(params, "check_counts", None)
    return [f"method {method_name!r}: {p}" for p in check(cfg)] if check else []
