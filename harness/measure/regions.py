"""Time spent in a method's own operations (matching, scoring, gathering, halting bookkeeping).

Methods wrap their own work in ``reduction_region("...")``. Outside a measurement this is a no-op
costing one attribute lookup; inside ``RegionTimer`` each region is timed with ``perf_counter``
(with a CUDA synchronisation on both sides on GPU, so that the kernels it launched are counted).

    with RegionTimer(sync=device.type == "cuda") as timer:
        model(x)
    timer.seconds  # {"block3/after_attention": 0.0012, ...}
"""
from __future__ import annotations

import collections
import time
import typing as tp

_ACTIVE: tp.Optional["RegionTimer"] = None


class RegionTimer:
    def __init__(self, sync: bool = False):
        self.sync = sync
        self.seconds: tp.Dict[str, float] = collections.defaultdict(float)
        self.calls: tp.Dict[str, int] = collections.defaultdict(int)

    def __enter__(self) -> "RegionTimer":
        global _ACTIVE
        self._previous, _ACTIVE = _ACTIVE, self
        return self

    def __exit__(self, *exc) -> None:
        global _ACTIVE
        _ACTIVE = self._previous


class _Region:
    __slots__ = ("name", "t0", "timer")

    def __init__(self, name: str):
        self.name, self.timer = name, _ACTIVE

    def __enter__(self) -> None:
        if self.timer is not None:
            if self.timer.sync:
                _synchronize()
            self.t0 = time.perf_counter()

    def __exit__(self, *exc) -> None:
        if self.timer is not None:
            if self.timer.sync:
                _synchronize()
            self.timer.seconds[self.name] += time.perf_counter() - self.t0
            self.timer.calls[self.name] += 1


def reduction_region(name: str) -> _Region:
    """Context manager marking a method's own work (name it ``block<l>/<what>``)."""
    return _Region(name)


def _synchronize() -> None:
    import torch

    torch.cuda.synchronize()
