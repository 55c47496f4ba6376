"""Dataset registry: each entry is a dataclass whose fields are the suite keys (torch-free).

An instance is a fully resolved dataset + test protocol. ``build()`` returns the torch dataset
(imported lazily), ``num_classes`` and ``manifest()`` describe it for records.
"""
from __future__ import annotations

import dataclasses
import math
import os
import typing as tp

from harness.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

dataset_registry: Registry[type] = Registry("dataset")

# How views are resized and cropped, each value one reference loader (harness.data.transforms)
SPATIAL = ("mmaction2", "videomae", "torch_antialias")
LEGACY_SPATIAL = "torch_antialias"  # what every key made before ``spatial`` existed meant: kept out of keys


def register_dataset(name: str, **meta: tp.Any):
    def decorator(cls: type) -> type:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"@register_dataset({name!r}) must decorate a dataclass")
        dataset_registry.add(name, cls, **meta)
        return cls

    return decorator


def data_home() -> str:
    """Where generated data is cached: $HARNESS_DATA, else ~/.cache/harness."""
    return os.environ.get("HARNESS_DATA") or os.path.join(os.path.expanduser("~"), ".cache", "harness")


@dataclasses.dataclass
class VideoProtocol:
    """How test views are sampled, transformed and aggregated (part of every cell's key)."""

    sampler: tp.Literal["dense", "uniform", "videomae_dense"] = "dense"  # dense: mmaction2 clip_len x frame_interval x num_clips (K400); uniform: TSN segments (VideoMAE SSv2); videomae_dense: VideoMAE's K400 clips
    clip_len: int = 16  # frames per view
    frame_interval: int = 4  # stride between sampled frames (dense sampler only)
    num_clips: int = 1  # temporal views per video
    num_crops: tp.Literal[1, 3] = 1  # 1 = centre crop, 3 = three crops along the long side
    short_side: int = 224  # resize the short side to this many pixels
    crop_size: int = 224  # square crop side, pixels
    spatial: tp.Literal["mmaction2", "videomae", "torch_antialias"] = "mmaction2"  # resize + crop reference (harness.data.transforms)
    mean: tp.List[float] = dataclasses.field(default_factory=lambda: list(IMAGENET_MEAN))  # per channel, on [0,1] pixels
    std: tp.List[float] = dataclasses.field(default_factory=lambda: list(IMAGENET_STD))  # per channel, on [0,1] pixels
    aggregation: tp.Literal["prob", "score"] = "prob"  # prob = mean of softmax over views; score = mean of logits
    decoder: str = "decord"  # video decoding backend: decord | pyav | torchcodec (harness.data.decode)
    decode_timeout_s: float = 60.0  # a video taking longer is failed with reason "timeout" (not in the cell key)

    @property
    def views(self) -> int:
        return self.num_clips * self.num_crops

    def check(self) -> list[str]:
        problems = []
        for name in ("clip_len", "frame_interval", "num_clips", "short_side", "crop_size"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive, got {getattr(self, name)}")
        if self.crop_size > self.short_side:
            problems.append(f"crop_size {self.crop_size} is larger than short_side {self.short_side}")
        if len(self.mean) != 3 or len(self.std) != 3:
            problems.append("mean and std need 3 values each")
        elif any(s <= 0 for s in self.std):
            problems.append(f"std must be positive, got {self.std}")
        problems += bounds_problems(self, {"clip_len": (1, 4096), "frame_interval": (1, 4096),
                                           "num_clips": (1, 1024), "short_side": (1, 16384),
                                           "crop_size": (1, 16384)},
                                    skip=lambda v: isinstance(v, (int, float)) and v <= 0)  # "must be positive" above
        problems += bounds_problems(self, {"decode_timeout_s": (0.01, 86400.0)})
        for name in ("mean", "std"):
            values = getattr(self, name)
            if not all(isinstance(v, (int, float)) and math.isfinite(v) and abs(v) <= 1e6 for v in values):
                problems.append(f"{name} values must be finite numbers, got {values}")
        problems += decoder_problems(self.decoder)
        if self.sampler == "videomae_dense" and self.num_clips < 2:
            problems.append(f"sampler videomae_dense needs num_clips >= 2 (VideoMAE spreads its clips over "
                            f"num_clips - 1 steps), got {self.num_clips}")
        if self.spatial not in SPATIAL:
            problems.append(f"spatial must be one of {', '.join(SPATIAL)}, got {self.spatial!r}")
        elif self.spatial == "videomae" and self.num_crops == 3 and self.crop_size != self.short_side:
            problems.append(f"spatial videomae takes its three crops at the short side (crop_size = short_side), "
                            f"got crop_size {self.crop_size} and short_side {self.short_side}")
        return problems


def decoder_problems(decoder: tp.Any) -> list[str]:
    """An unknown decoder (with close matches) or one that cannot run here (with the reason)."""
    import difflib

    from harness.data.decode import decoder_available, decoder_names

    names = decoder_names()
    if not isinstance(decoder, str) or decoder not in names:
        close = difflib.get_close_matches(str(decoder), names, n=2, cutoff=0.5)
        hint = "; did you mean " + " or ".join(map(repr, close)) + "?" if close else ""
        return [f"decoder must be one of {', '.join(names)}, got {decoder!r}{hint}"]
    ok, why = decoder_available(decoder)
    return [] if ok else [f"decoder {decoder!r} is unavailable here: {why}"]


def bounds_problems(obj: tp.Any, bounds: tp.Dict[str, tp.Tuple[float, float]],
                    skip: tp.Callable[[tp.Any], bool] = lambda v: False) -> list[str]:
    """``name must be ... within [lo, hi], got v`` for each numeric field outside its bounds (NaN/inf
    too); values ``skip`` accepts are left to a more specific check."""
    out = []
    for name, (lo, hi) in bounds.items():
        value = getattr(obj, name, None)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or skip(value):
            continue
        if not (math.isfinite(value) and lo <= value <= hi):
            out.append(f"{name} must be a finite number within [{lo:g}, {hi:g}], got {value}")
    return out


def strip_unkeyed_fields(dataset: dict) -> dict:
    """Drop, in place, the fields of a dataset dict that cannot change results (cell and fine-tune
    keys): the decode deadline, the decoder while it is the default, and ``spatial`` while it is
    ``torch_antialias``, the only resize there was before the field (older keys stay valid)."""
    dataset.pop("decode_timeout_s", None)
    if dataset.get("decoder") == "decord":
        dataset.pop("decoder")
    if dataset.get("spatial") == LEGACY_SPATIAL:
        dataset.pop("spatial")
    return dataset
