"""One cell, typed: what a backbone x dataset x method run is, and the keys derived from it (torch-free).

A suite expands into ``CellSpec``s (``Suite.cells()``); everything downstream (the local runner, the
Slurm shard task, ``bench``, plans and reports of a run) reads these fields instead of config dicts.

    spec.key            # sha256 of everything that determines the cell's results (the record's file name)
    spec.share_key      # cells with equal share keys may be evaluated on one decoding pass
    spec.config()       # the record's "config": backbone, dataset, method, eval, measure (as plain dicts)
    spec.regime         # Regime: precision, SDPA backend, compile mode (harness.suite.regime)
    spec.to_json() / CellSpec.from_json(d)   # what a Slurm task's pickle and cell.json carry

``backbone`` and ``dataset`` stay dicts: their fields are open-ended (``DIM_NAMES``, the registered dataset
dataclass), checked when the suite is loaded.

What cannot change results is stripped by one rule per part: ``UNKEYED_EVAL``, the regime fields at their
defaults (``REGIME_DEFAULTS``) and the dataset's ``strip_unkeyed_fields`` (also what makes two suite entries
duplicates). Two other keys stay separate on purpose: ``FineTuneConfig.key`` hashes what changes trained
weights (no eval protocol, inference-only params left out) with its own JSON form, and the shipped fine-tunes
in ``checkpoints/finetunes`` are found by it, so unifying it would orphan them; ``bench``'s ``Target.key`` is
this key plus a readable regime suffix, not a second hash.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import typing as tp

from harness.suite._schema import EvalConfig, MeasureConfig
from harness.suite.regime import DEFAULT as REGIME, Regime

KEY_SCHEMA = 1  # bump when the key payload changes meaning
UNKEYED_EVAL = ("num_workers", "share_decode")  # eval fields that cannot change results
# regime fields at their defaults stay out of the key, so cells keyed before the fields existed keep their keys
# (measure.precision's default is None: "follow eval.precision")
REGIME_DEFAULTS = (("eval", "precision", REGIME.precision), ("measure", "precision", None),
                   ("measure", "compile", REGIME.compile), ("measure", "sdpa_backend", REGIME.sdpa_backend))


def digest(payload: tp.Any) -> str:
    """sha256 of the canonical JSON of ``payload`` (sorted keys, no spaces): the cell key's hash."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """The method of a cell: its registered name, every field of its params dataclass, and the weights it
    evaluates when they are not the backbone's (a fine-tune's, or the method entry's own checkpoint)."""

    name: str
    params: tp.Dict[str, tp.Any] = dataclasses.field(default_factory=dict)
    finetune: tp.Optional[tp.Dict[str, str]] = None  # {"name", "key"} of the fine-tune whose weights it evaluates
    weights: tp.Optional[str] = None  # the method entry's own released checkpoint

    def as_dict(self) -> dict:
        """The record's ``config.method``: ``{"name", "params", "weights"?, "finetune"?}`` (a deep copy)."""
        out = {"name": self.name, "params": copy.deepcopy(self.params)}
        if self.weights:
            out["weights"] = self.weights
        if self.finetune:
            out["finetune"] = dict(self.finetune)
        return out

    @classmethod
    def from_dict(cls, method: tp.Mapping[str, tp.Any]) -> "MethodSpec":
        return cls(method["name"], copy.deepcopy(dict(method.get("params") or {})),
                   dict(method["finetune"]) if method.get("finetune") else None, method.get("weights"))

    def params_object(self) -> tp.Any:
        """The method's params dataclass filled with ``params``."""
        import methods

        return methods.get_method(self.name).params(**self.params)

    def capabilities(self) -> dict:
        import methods

        return methods.get_method(self.name).capabilities()


@dataclasses.dataclass(frozen=True)
class CellSpec:
    """One benchmark run: a backbone x dataset x method combination under one eval/measure protocol."""

    backbone: tp.Dict[str, tp.Any]  # name, checkpoint and the explicitly given dims (sorted, no None)
    dataset: tp.Dict[str, tp.Any]  # name + every field of the resolved dataset dataclass (defaults filled in)
    method: MethodSpec
    eval: EvalConfig
    measure: MeasureConfig
    finetune: tp.Optional[tp.Dict[str, tp.Any]] = None  # FineTuneConfig fields of the run whose weights it evaluates
    label: str = ""  # method name plus the params that differ from its defaults: "dense", "tome r=8"
    suite: tp.Dict[str, tp.Any] = dataclasses.field(default_factory=dict)  # the record's suite: name, file, version
    dataset_object: tp.Any = dataclasses.field(default=None, repr=False, compare=False)  # the validated dataset

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.method.name)

    # -- what the record states -------------------------------------------------------------------

    def config(self) -> dict:
        """The five config parts as plain dicts (a deep copy): the record's ``config``."""
        return copy.deepcopy({"backbone": self.backbone, "dataset": self.dataset, "method": self.method.as_dict(),
                              "eval": dataclasses.asdict(self.eval), "measure": dataclasses.asdict(self.measure)})

    @property
    def regime(self) -> Regime:
        """Raises ValueError when ``measure.precision`` disagrees with ``eval.precision``."""
        return Regime.of(self.eval, self.measure)

    def with_regime(self, regime: Regime) -> "CellSpec":
        """This cell under ``regime`` (a new spec: its key is that cell's own)."""
        return dataclasses.replace(self, eval=dataclasses.replace(self.eval, precision=regime.precision),
                                   measure=dataclasses.replace(self.measure, precision=None, compile=regime.compile,
                                                               sdpa_backend=regime.sdpa_backend))

    def finetune_config(self) -> tp.Any:
        """The ``FineTuneConfig`` this cell needs trained first, or None."""
        from harness.training import FineTuneConfig

        return FineTuneConfig(**self.finetune) if self.finetune else None

    def checkpoint(self) -> tp.Optional[str]:
        """The weights file named by the suite (the method entry's own, else the backbone's); a fine-tuned
        cell's weights are found in the store (``harness.training.resolve_checkpoint``)."""
        return self.method.weights or self.backbone.get("checkpoint")

    # -- keys ---------------------------------------------------------------------------------------

    @functools.cached_property
    def key(self) -> str:
        """sha256 of the canonical JSON of everything that determines this cell's results (computed once).

        The payload is the config without what cannot change results (``UNKEYED_EVAL``, the regime fields at
        their defaults, the dataset's unkeyed fields: ``harness.data.registry.strip_unkeyed_fields``), the
        checkpoint's content key (``"missing:<path>"`` if absent, None without a checkpoint; a fine-tune's
        key for fine-tuned weights), the dataset's ``key_material()`` and the decoder's distribution and
        version (``decoder_identity``: another decord build may decode other pixels; fine-tune keys leave
        it out, so that shipped fine-tunes stay found). It deliberately excludes the git commit (a
        refactor must not invalidate stored results) and the suite (the same cell in two suites is shared).
        """
        from harness.data.decode import decoder_provenance
        from harness.data.registry import strip_unkeyed_fields
        from harness.models import hf

        config = self.config()
        for field in UNKEYED_EVAL:
            config["eval"].pop(field, None)
        for part, field, default in REGIME_DEFAULTS:
            if config[part].get(field, default) == default:
                config[part].pop(field, None)
        strip_unkeyed_fields(config["dataset"])
        checkpoint = self.checkpoint()
        obj = self.dataset_object
        material = obj.key_material() if hasattr(obj, "key_material") else {}
        weights = hf.content_key(checkpoint) if checkpoint else None  # a file's sha256; HF: config + weights
        if self.finetune:  # the evaluated weights are the fine-tune's, identified by its content key
            weights = "finetune:" + self.method.finetune["key"]
        return digest({"schema": KEY_SCHEMA, "config": config, "checkpoint": weights, "dataset": material,
                       **decoder_provenance(self.dataset)})

    @property
    def share_key(self) -> str:
        """Cells with equal share keys can be evaluated on one decoding pass: the same dataset (every
        field: the group decodes with one dataset object) and the same keyed ``eval`` settings."""
        ev = {k: v for k, v in dataclasses.asdict(self.eval).items() if k not in UNKEYED_EVAL}
        return json.dumps({"dataset": self.dataset, "eval": ev}, sort_keys=True, default=str)

    # -- shapes -------------------------------------------------------------------------------------

    def backbone_config(self) -> tp.Any:
        """The resolved backbone config (preset + the suite's dims), built without weights."""
        from harness.models.dims import backbone_config

        return backbone_config(self.backbone)

    def clip_shape(self, batch: int = 1) -> tp.Tuple[int, int, int, int, int]:
        """``(batch, channels, frames, height, width)`` of the clips the backbone takes."""
        cfg = self.backbone_config()
        return batch, cfg.in_chans, cfg.num_frames, cfg.img_size, cfg.img_size

    # -- JSON ---------------------------------------------------------------------------------------

    def to_json(self) -> dict:
        """Plain JSON data: what a Slurm task's pickle and ``cell.json`` carry (the key as computed here,
        where the checkpoint files are)."""
        return {"key": self.key, "label": self.label, "suite": copy.deepcopy(self.suite),
                "finetune": copy.deepcopy(self.finetune), **self.config()}

    @classmethod
    def from_json(cls, data: tp.Mapping[str, tp.Any]) -> "CellSpec":
        spec = cls(copy.deepcopy(data["backbone"]), copy.deepcopy(data["dataset"]), MethodSpec.from_dict(data["method"]),
                   EvalConfig(**data["eval"]), MeasureConfig(**data["measure"]), copy.deepcopy(data.get("finetune")),
                   data.get("label") or "", copy.deepcopy(data.get("suite") or {}))
        if data.get("key"):
            spec.__dict__["key"] = data["key"]  # the cached key: a worker need not see the checkpoint to know it
        return spec

    def __reduce__(self):  # pickles carry the JSON form (not the dataset object, not code-bound state)
        return CellSpec.from_json, (self.to_json(),)
