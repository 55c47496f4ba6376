"""What a fine-tuning run is (torch-free): its config, the method's recipe defaults, and its key."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import typing as tp

# The generic recipe; a method's ``train_recipe`` (official configs) overrides it, a suite overrides both.
DEFAULT_RECIPE: tp.Dict[str, tp.Any] = {
    "optimizer": "adamw",  # "adamw" | "adam" | "sgd"
    "lr": 1e-4,  # peak learning rate
    "weight_decay": 0.05,
    "no_decay": [],  # parameter-name substrings without weight decay (biases and norms never decay)
    "clip_grad": None,  # max gradient norm (None: no clipping)
    "warmup_epochs": 1.0,  # linear warm-up length
    "warmup_start_factor": 0.0,  # lr at the start of warm-up, as a fraction of the peak
    "schedule": "cosine",  # after warm-up: "cosine" (to 0) | "constant"
    "cosine_t_max_epochs": None,  # cosine period in epochs (None: the epochs after warm-up; HaltingVT: all epochs)
    "epochs": 5,
    "batch_size": 16,  # clips per step, before a method adds its own (HaltingVT doubles them)
    "label_smoothing": 0.0,
}
RECIPE_KEYS = tuple(DEFAULT_RECIPE)
_CHOICES = {"optimizer": ("adamw", "adam", "sgd"), "schedule": ("cosine", "constant")}
# key -> (lo, hi, integer?, nullable?)
_RANGES = {"lr": (1e-12, 10.0, False, False), "weight_decay": (0.0, 10.0, False, False),
           "clip_grad": (1e-12, 1e6, False, True), "warmup_epochs": (0.0, 1e5, False, False),
           "warmup_start_factor": (0.0, 1.0, False, False), "cosine_t_max_epochs": (1e-6, 1e5, False, True),
           "epochs": (1, 100_000, True, False), "batch_size": (1, 65_536, True, False),
           "label_smoothing": (0.0, 0.999, False, False)}


def recipe_problems(recipe: tp.Mapping[str, tp.Any]) -> tp.List[tp.Tuple[str, str]]:
    """``[(key, message)]`` for every recipe value of the wrong type or outside its sane range."""
    import math

    out = []
    for key, value in recipe.items():
        if key not in RECIPE_KEYS:
            out.append((key, f"unknown recipe key {key!r}; valid: {', '.join(RECIPE_KEYS)}"))
        elif key in _CHOICES:
            if value not in _CHOICES[key] or not isinstance(value, str):
                out.append((key, f"{key} must be one of {', '.join(map(repr, _CHOICES[key]))}, got {value!r}"))
        elif key == "no_decay":
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                out.append((key, f"no_decay must be a list of parameter-name substrings, got {value!r}"))
        else:
            lo, hi, integer, nullable = _RANGES[key]
            if value is None and nullable:
                continue
            kind = "an integer" if integer else "a number"
            ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
            if isinstance(value, bool) or not ok_type:
                out.append((key, f"{key} must be {kind}{' or null' if nullable else ''}, got {value!r}"))
            elif not (math.isfinite(value) and lo <= value <= hi):
                out.append((key, f"{key} must be {kind} within [{lo:g}, {hi:g}], got {value!r}"))
    return out


@dataclasses.dataclass
class FineTuneConfig:
    """One fine-tuning run. ``recipe`` holds only overrides; ``resolved_recipe()`` fills the rest."""

    backbone: dict  # {"name", "checkpoint" (initial weights, optional), dims...}
    method: dict  # {"name", "params": {...}}
    dataset: dict  # a training dataset config, e.g. {"name": "synthetic_motion", "split": "train"}
    recipe: dict = dataclasses.field(default_factory=dict)  # overrides of the method's recipe
    val_dataset: tp.Optional[dict] = None  # evaluated (top-1) after every epoch when given
    limit: tp.Optional[int] = None  # use only the first ``limit`` training videos
    val_limit: tp.Optional[int] = None  # ... and validation videos
    augment: dict = dataclasses.field(default_factory=lambda: {"scale": [0.5, 1.0], "flip": True})
    seed: int = 0
    threads: tp.Optional[int] = None  # torch CPU threads (results are deterministic per thread count)
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA (never on CPU)

    def resolved_recipe(self) -> dict:
        import methods

        spec = methods.get_method(self.method["name"])
        unknown = sorted(set(self.recipe) - set(RECIPE_KEYS))
        if unknown:
            raise ValueError(f"unknown recipe key(s) {unknown}; valid: {', '.join(RECIPE_KEYS)}")
        recipe = {**DEFAULT_RECIPE, **{k: v for k, v in spec.train_recipe.items() if k in RECIPE_KEYS},
                  **self.recipe}
        problems = recipe_problems(recipe)
        if problems:
            raise ValueError("invalid recipe: " + "; ".join(message for _, message in problems))
        return recipe

    def key(self) -> str:
        """Content key of everything that changes the trained weights (not device/threads/amp off CPU, not the
        method's inference-only knobs)."""
        from harness.models.hf import content_key

        backbone = dict(self.backbone)
        if backbone.get("checkpoint"):  # the initial weights by content, not by path (HF: config + weights)
            backbone["checkpoint"] = content_key(backbone["checkpoint"])
        from harness.data.registry import strip_unkeyed_fields

        dataset = strip_unkeyed_fields(dict(self.dataset))
        import methods

        inference_only = set(methods.get_method(self.method["name"]).inference_only)  # cannot change weights
        method = {**self.method, "params": {k: v for k, v in (self.method.get("params") or {}).items()
                                            if k not in inference_only}}
        material = {"backbone": backbone, "method": method, "dataset": dataset,
                    "recipe": self.resolved_recipe(), "limit": self.limit, "augment": self.augment,
                    "seed": self.seed, "threads": self.threads}
        digest = hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()
        return f"ft-{self.method['name']}-{digest[:12]}"

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "resolved_recipe": self.resolved_recipe()}
