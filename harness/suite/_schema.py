"""The suite schema: typed dataclasses whose fields are the valid YAML keys, plus ``Problem``.

Nothing here lists keys by hand: validation derives them from ``dataclasses.fields`` (sections),
``DIM_NAMES`` (backbones), the registered dataset dataclass and ``get_method(name).params``.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing as tp

from harness.suite.regime import DEFAULT as REGIME, CompileMode, Precision, SdpaBackend


@dataclasses.dataclass
class EvalConfig:
    """How accuracy is evaluated (all of it is part of the cell key except ``num_workers`` and ``share_decode``)."""

    batch_size: int = 8  # videos per batch
    num_workers: int = 2  # decoder processes (does not change results; excluded from the key)
    limit: tp.Optional[int] = None  # evaluate the first N videos only; None = all
    device: tp.Literal["auto", "cpu", "cuda"] = "auto"  # auto = cuda when available
    share_decode: bool = True  # cells with the same data and protocol share one decoding pass (same results)
    precision: Precision = REGIME.precision  # autocast of every forward, timed ones too (fp16: CUDA only)

    def check(self) -> list[str]:
        problems = _positive(self, "batch_size")
        if self.num_workers < 0:
            problems.append(f"num_workers must be >= 0, got {self.num_workers}")
        if self.limit is not None and self.limit < 1:
            problems.append(f"limit must be >= 1 or null, got {self.limit}")
        return problems or bounded(self, batch_size=(1, 4096), num_workers=(0, 256), limit=(1, 10 ** 9))


@dataclasses.dataclass
class MeasureConfig:
    """How cost is measured: throughput timing, FLOPs and peak memory."""

    throughput: bool = True  # time forwards (clips/s)
    batch_size: int = 8  # clips per timed forward
    warmup_iters: int = 10  # untimed forwards before timing (at least this many ...)
    warmup_s: float = 2.0  # ... and at least this many seconds of them
    timed_iters: int = 30  # timed forwards per repeat (at least this many ...)
    min_timed_s: float = 2.0  # ... and at least this many seconds per repeat
    repeats: int = 5  # independent timing repeats (median and spread are reported)
    threads: tp.Optional[int] = None  # torch CPU threads; None = leave as is
    flops: bool = True  # cross-check the analytic GMACs with fvcore (one traced forward); GMACs are always recorded
    memory: bool = True  # record peak memory, GiB
    seed: int = 0  # RNG seed of the synthetic timing input
    precision: tp.Optional[Precision] = None  # None: eval.precision (they must agree)
    compile: CompileMode = REGIME.compile  # torch.compile the timed model (after its warm-up)
    sdpa_backend: SdpaBackend = REGIME.sdpa_backend  # force one SDPA kernel

    def check(self) -> list[str]:
        problems = _positive(self, "batch_size", "timed_iters", "repeats")
        for name in ("warmup_iters", "warmup_s", "min_timed_s"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            problems.append(f"threads must be >= 1 or null, got {self.threads}")
        return problems or bounded(self, batch_size=(1, 4096), warmup_iters=(0, 10 ** 6), warmup_s=(0, 3600),
                                   timed_iters=(1, 10 ** 6), min_timed_s=(0, 3600), repeats=(1, 1000),
                                   threads=(1, 4096), seed=(0, 2 ** 63 - 1))


@dataclasses.dataclass
class FineTuneEntry:
    """A fine-tuning run that evaluation cells use through ``methods[].finetune: <name>``.

    It is trained once per backbone entry of the suite, starting from that backbone's checkpoint,
    before the cells that use it; its output lives in ``<results>/finetunes/<key>/``.
    """

    name: str = ""  # referenced by methods[].finetune
    method: tp.Dict[str, tp.Any] = dataclasses.field(default_factory=dict)  # {name, <params>} (no sweeps)
    dataset: tp.Dict[str, tp.Any] = dataclasses.field(default_factory=dict)  # training set {name, <fields>}
    val_dataset: tp.Optional[tp.Dict[str, tp.Any]] = None  # top-1 after every epoch (optional)
    recipe: tp.Dict[str, tp.Any] = dataclasses.field(default_factory=dict)  # overrides of the method's recipe
    limit: tp.Optional[int] = None  # first N training videos only
    val_limit: tp.Optional[int] = None  # first N validation videos only
    augment: tp.Dict[str, tp.Any] = dataclasses.field(default_factory=lambda: {"scale": [0.5, 1.0], "flip": True})
    seed: int = 0
    threads: tp.Optional[int] = None  # torch CPU threads (fixes the numerics of a CPU run)


@dataclasses.dataclass
class SuiteConfig:
    """One suite file after includes, ``${VAR}`` expansion and ``--set`` overrides.

    ``backbones``/``datasets``/``methods`` hold the entry mappings as written (list values are
    sweep axes); ``Suite.cells()`` expands and validates them against the registries.
    """

    name: str = ""  # suite name; "" = the suite file's stem (never inherited from an include)
    version: int = 1  # the suite's own version, bumped when its meaning changes; stored in results
    description: str = ""  # one line for listings
    include: tp.List[str] = dataclasses.field(default_factory=list)  # files merged under this one, relative to it
    variables: tp.Dict[str, str] = dataclasses.field(default_factory=dict)  # ${VAR} -> what it must point to (shown when unset)
    backbones: tp.List[tp.Dict[str, tp.Any]] = dataclasses.field(default_factory=list)  # {name, checkpoint?, <dims>}
    datasets: tp.List[tp.Dict[str, tp.Any]] = dataclasses.field(default_factory=list)  # {name, <dataset fields>}
    methods: tp.List[tp.Dict[str, tp.Any]] = dataclasses.field(default_factory=list)  # {name, finetune? | checkpoint?, <method params>}
    finetunes: tp.List[tp.Dict[str, tp.Any]] = dataclasses.field(default_factory=list)  # FineTuneEntry mappings
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)  # accuracy protocol
    measure: MeasureConfig = dataclasses.field(default_factory=MeasureConfig)  # cost protocol


ENTRY_SECTIONS = ("backbones", "datasets", "methods")  # list-of-entry sections, in cell nesting order
PATH_KEYS = {  # entry keys holding file paths, resolved against the declaring file's directory
    "backbones": ("checkpoint",),
    "datasets": ("ann_file", "data_root", "label_map", "root", "label_file", "class_index"),
    "methods": ("checkpoint",),
}
OVERRIDE_FILE = "--set"  # Problem.file for values that came from the command line


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong with a suite: where it was declared, which field, and what to do."""

    file: str  # the file that declared the offending value ("--set" for the command line)
    field: str  # e.g. "methods[1].r", "eval.batch_szie"; "" for the whole file
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message}" if self.field else f"{self.file}: {self.message}"


class SuiteError(ValueError):
    """Raised by ``load_suite`` with every problem found; ``.problems`` holds them."""

    def __init__(self, problems: tp.Sequence[Problem]):
        self.problems = list(problems)
        super().__init__(format_problems(self.problems))


def format_problems(problems: tp.Sequence[Problem]) -> str:
    """One line per problem, then a count line (``harness validate`` prints this)."""
    lines = [str(p) for p in problems]
    n = len(problems)
    lines.append(f"{n} problem{'' if n == 1 else 's'} found")
    return "\n".join(lines)


def bounded(obj: tp.Any, **bounds: tp.Tuple[float, float]) -> list[str]:
    """``name must be a finite number within [lo, hi], got v`` for each field outside its bounds
    (NaN and infinities included; None = unset is fine)."""
    import math

    out = []
    for name, (lo, hi) in bounds.items():
        v = getattr(obj, name)
        if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if not (math.isfinite(v) and lo <= v <= hi):
            out.append(f"{name} must be a finite number within [{lo:g}, {hi:g}], got {v}")
    return out


def _positive(obj: tp.Any, *names: str) -> list[str]:
    return [f"{n} must be >= 1, got {getattr(obj, n)}" for n in names if getattr(obj, n) < 1]


def unknown_key_message(key: str, valid: tp.Iterable[str]) -> str:
    """``unknown key 'batch_szie'; did you mean 'batch_size'? Valid keys: ...``."""
    valid = list(valid)
    msg = f"unknown key {key!r}"
    close = difflib.get_close_matches(str(key), valid, n=3, cutoff=0.6)
    if close:
        msg += "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    return msg + " Valid keys: " + ", ".join(valid)
