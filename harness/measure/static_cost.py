"""GMACs of a cell without weights or data: a forward on the meta device (static token schedules only)."""
from __future__ import annotations

import typing as tp


def meta_gmacs(backbone: dict, method: dict) -> tp.Optional[float]:
    """GMACs per view of ``backbone`` x ``method`` (cell dicts), or None for adaptive methods."""
    import torch

    import methods
    from harness.build import build_model
    from harness.measure.flops import model_macs

    if methods.get_method(method["name"]).adaptive_token_count:
        return None  # token counts depend on the data: only a real evaluation can count them
    dims = _dims(backbone)
    with torch.device("meta"):
        model = build_model(backbone["name"], method=method["name"], method_args=method["params"], **dims)
        cfg = model.cfg
        with torch.no_grad():
            model(torch.empty(1, cfg.in_chans, cfg.num_frames, cfg.img_size, cfg.img_size))
    return model_macs(model).total / 1e9


def meta_gmacs_upper_bound(backbone: dict, method: dict) -> tp.Optional[float]:
    """GMACs per view of an adaptive method when nothing is saved adaptively (HaltingVT: every token
    through every halting block, what masked mode executes), or None when the method cannot say.

    Asks a model built on the meta device for ``view_macs()`` before any forward.
    """
    import torch

    from harness.build import build_model

    dims = _dims(backbone)
    with torch.device("meta"):
        model = build_model(backbone["name"], method=method["name"], method_args=method["params"], **dims)
    try:
        return model.view_macs().total / 1e9
    except Exception:  # noqa: BLE001 -- a method whose count needs a forward: no bound to show
        return None


def _dims(backbone: dict) -> dict:
    """The cell's dims; a Hugging Face checkpoint's config.json supplies (and checks) them."""
    from harness.models.hf import reconcile_dims

    dims = {k: v for k, v in backbone.items() if k not in ("name", "checkpoint")}
    return reconcile_dims(backbone["name"], dims, backbone.get("checkpoint"))
