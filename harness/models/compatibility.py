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

    return [f for f in FAMILIES if family_features(f) <= spec.supports and (spec.vit or f == "videoswin")]


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


def class_problems(dataset: tp.Any, cfg: tp.Any) -> tp.List[str]:
    """The model's head and the dataset's classes must agree: a declared class count (``num_classes``, a
    label map's length) equal to the head's, else (nothing declared) no annotation label beyond the head.
    Otherwise accuracy is computed over other classes than the labels mean, or the cell dies on a label."""
    head = getattr(cfg, "num_classes", 0)
    if not head:
        return []  # no head: features only
    declared = getattr(dataset, "num_classes", None)
    source = "num_classes"
    if declared is None and getattr(dataset, "label_map", None):
        from harness.data.annotations import read_label_map

        try:
            declared, source = len(read_label_map(dataset.label_map)), f"label_map {dataset.label_map}"
        except (OSError, ValueError):
            return []  # the label map's own check names it
    if isinstance(declared, int) and not isinstance(declared, bool):
        if declared == head:
            return []
        says = f"{source} is {declared}" if source == "num_classes" else f"{source} names {declared} classes"
        return [f"dataset {says} but the model's head has {head} classes (backbone "
                "num_classes: the preset's or the checkpoint's config.json); they must agree"]
    ann_file = getattr(dataset, "ann_file", None)
    if isinstance(ann_file, str) and ann_file:
        from harness.data.annotations import first_label_beyond

        beyond = first_label_beyond(ann_file, getattr(dataset, "ann_format", "auto"), head)
        if beyond:
            return [beyond]
    return []


def count_problems(method_name: str, params: tp.Any, cfg: tp.Any) -> tp.List[str]:
    """Knobs the method would silently cap on this backbone (``params.check_counts(cfg)``, if it has
    one; ToMe's r above N // 2, say). The model still builds -- capping is the official behaviour --
    but a suite cell labelled with the uncapped value would misreport what ran, so suites refuse it."""
    import methods

    if cfg.layout.features - methods.get_method(method_name).supports:
        return []  # refused by method_problems; its counts mean nothing on this backbone
    check = getattr(params, "check_counts", None)
    return [f"method {method_name!r}: {p}" for p in check(cfg)] if check else []
