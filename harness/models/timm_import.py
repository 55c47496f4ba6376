"""Import timm on a CPU-only torch whose torchvision was built for CUDA.

PyPI ships torchvision only as a CUDA build. With the CPU wheel of torch, ``import torchvision``
fails in ``torchvision/_meta_registrations.py`` ("operator torchvision::nms does not exist") because
it registers fake kernels for C++ ops the CPU torch never loaded, and timm imports torchvision.
``import_timm`` only acts when that exact failure happens: it declares the two missing op schemas
(no kernels, so ``torchvision.ops.nms`` stays unusable, which the harness never calls) and imports
again. On a working install (GPU clusters) nothing is touched.
"""
from __future__ import annotations

import sys

_MISSING_OPS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_fragment = None  # keeps the schema library alive


def import_timm():
    try:
        import timm
    except RuntimeError as err:
        if "torchvision::" not in str(err):
            raise
        _declare_missing_torchvision_ops()
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith(("torchvision.", "timm"))]:
            del sys.modules[name]
        import timm
    return timm


def _declare_missing_torchvision_ops() -> None:
    global _fragment
    import torch

    _fragment = torch.library.Library("torchvision", "FRAGMENT")  # noqa: TOR901
    for schema in _MISSING_OPS.values():
        try:
            _fragment.define(schema)
        except RuntimeError:  # already declared by a partial earlier import
            pass
