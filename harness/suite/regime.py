"""The numerical regime a cell runs under, and its defaults (the one place they are stated; torch-free).

    regime = Regime.of(spec.eval, spec.measure)   # raises ValueError when measure.precision disagrees
    with regime.context(device):                  # autocast to the precision + the SDPA backend
        model(x)
    record["regime"] = regime.record(device)      # precision, backend, compile mode, versions, device

``EvalConfig``/``MeasureConfig`` take their defaults from here; the cell key leaves a regime field out
while it is at its default (so that cells keyed before the field existed keep their keys); reports
read a record's regime with ``Regime.from_config``.
"""
from __future__ import annotations

import dataclasses
import typing as tp

from harness.measure.choices import COMPILE_MODES, PRECISIONS, SDPA_BACKENDS

Precision = tp.Literal[PRECISIONS]
SdpaBackend = tp.Literal[SDPA_BACKENDS]
CompileMode = tp.Literal[COMPILE_MODES]


@dataclasses.dataclass(frozen=True)
class Regime:
    """Precision (autocast of every forward, timed ones too), SDPA backend and torch.compile mode."""

    precision: Precision = "fp32"
    sdpa_backend: SdpaBackend = "auto"
    compile: CompileMode = "off"

    @classmethod
    def of(cls, eval_: tp.Any, measure: tp.Any) -> "Regime":
        """The regime of a cell's ``EvalConfig`` and ``MeasureConfig``: accuracy is evaluated in the
        precision it is timed in, so ``measure.precision`` (None: follow ``eval.precision``) must agree."""
        chosen = eval_.precision
        if measure.precision not in (None, chosen):
            raise ValueError(f"measure.precision {measure.precision!r} differs from eval.precision {chosen!r}: "
                             "accuracy is evaluated in the precision it is timed in; set one of them")
        return cls(chosen, measure.sdpa_backend, measure.compile)

    @classmethod
    def from_config(cls, config: tp.Mapping[str, tp.Any]) -> "Regime":
        """The regime a stored record's ``config`` states (fields it lacks, or nulls: the defaults)."""
        ev, me = config.get("eval") or {}, config.get("measure") or {}
        return cls(str(ev.get("precision") or cls.precision), str(me.get("sdpa_backend") or cls.sdpa_backend),
                   str(me.get("compile") or cls.compile))

    def as_tuple(self) -> tp.Tuple[str, str, str]:
        """``(precision, compile, sdpa_backend)``: the order reports group and print regimes in."""
        return self.precision, self.compile, self.sdpa_backend

    def validate(self, device: tp.Any) -> "Regime":
        """Raise (``PrecisionError``/``SdpaBackendError``) when ``device`` cannot run this regime."""
        from harness.measure.regime import validate_precision, validate_sdpa_backend

        validate_sdpa_backend(self.sdpa_backend)
        validate_precision(self.precision, device)
        return self

    def context(self, device: tp.Any) -> tp.ContextManager:
        """A fresh context manager every forward of the cell runs under: autocast, SDPA backend."""
        from harness.measure.regime import regime_context

        return regime_context(device, self.precision, self.sdpa_backend)

    def contexts(self, device: tp.Any) -> tp.Callable[[], tp.ContextManager]:
        """``context`` as a factory (what the evaluation and timing loops take)."""
        return lambda: self.context(device)

    def record(self, device: tp.Any) -> dict:
        """What a record states about the regime: precision, SDPA backend, compile mode, torch/CUDA
        versions, TF32 switches and the device."""
        from harness.measure.regime import regime_record

        return {**regime_record(device, self.precision, self.sdpa_backend), "compile_mode": self.compile}


DEFAULT = Regime()
