"""``torch.compile`` for timing: compile, warm up, count recompilations, and turn a failure into a field.

    compiled, info = compile_for_timing(model, x, mode="default", dynamic=True, context=...)
    info = {"compile_mode": "default", "compile_dynamic": True, "compile_backend": "inductor",
            "compile_time_s": 41.2,          # the first forward (tracing + code generation + one run)
            "compile_graphs": 3, "compile_graph_breaks": 0, "recompiles": 0, "compile_error": None}

``recompiles`` counts the graphs dynamo built after the first one for the same model (a new shape,
dtype or guard failure), read from ``torch._dynamo.utils.counters`` as the change of
``stats.unique_graphs`` minus the frames of the first compile; ``recompiles_during_timing`` (filled by
``count_after``) is how many happened inside the timed loop, where each one is a stall. A compile
that raises gives ``compiled=None`` and ``compile_error = "Type: first line"``: the caller records it
instead of crashing.
"""
from __future__ import annotations

import contextlib
import time
import typing as tp

import torch

from harness.measure.choices import COMPILE_MODES


def validate_compile_mode(mode: str) -> str:
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile must be one of {'|'.join(COMPILE_MODES)}, got {mode!r}")
    return mode


def _graphs() -> tp.Tuple[int, int]:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"]), int(sum(counters["graph_break"].values()))


def compile_for_timing(model, x: torch.Tensor, *, mode: str, dynamic: tp.Optional[bool] = None,
                       context: tp.Callable[[], tp.ContextManager] = contextlib.nullcontext,
                       backend: tp.Union[str, tp.Callable] = "inductor") -> tp.Tuple[tp.Optional[tp.Callable], dict]:
    """``torch.compile(model)`` and its first forward on ``x`` under ``context`` (timed as compile time)."""
    validate_compile_mode(mode)
    name = backend if isinstance(backend, str) else getattr(backend, "__name__", "custom")
    info = {"compile_mode": mode, "compile_dynamic": dynamic, "compile_backend": name if mode != "off" else None,
            "compile_time_s": None, "compile_graphs": None, "compile_graph_breaks": None, "recompiles": None,
            "compile_error": None}
    if mode == "off":
        return model, info
    import torch._dynamo

    torch._dynamo.reset()  # one model per compile: earlier models' graphs must not count or be reused
    graphs0, breaks0 = _graphs()
    try:
        options = {"mode": None if mode == "default" else mode} if name == "inductor" else {}
        compiled = torch.compile(model, dynamic=dynamic, backend=backend, **options)
        t0 = time.perf_counter()
        with torch.inference_mode(), context():
            compiled(x)
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        info["compile_time_s"] = time.perf_counter() - t0
    except Exception as err:  # any failure of dynamo/inductor/codegen: a field, not a crash
        info["compile_error"] = one_line(err)
        torch._dynamo.reset()
        return None, info
    graphs, breaks = _graphs()
    info.update(compile_graphs=graphs - graphs0, compile_graph_breaks=breaks - breaks0, recompiles=0)
    info["_graphs_after_first"] = graphs
    return compiled, info


def count_after(info: dict, key: str = "recompiles") -> dict:
    """Graphs built since ``compile_for_timing`` returned, added to ``info[key]`` (a no-op when eager)."""
    if info.get("compile_mode") in (None, "off") or "_graphs_after_first" not in info:
        return info
    graphs, _ = _graphs()
    info[key] = (info.get(key) or 0) + graphs - info["_graphs_after_first"]
    info["_graphs_after_first"] = graphs
    return info


def one_line(err: BaseException) -> str:
    """``Type: first line`` of an error, with the wrapped error dynamo raises it for (``inner_exception``)."""
    def first(e):
        return (str(e).strip().splitlines() or [""])[0][:200]

    text = f"{type(err).__name__}: {first(err)}"
    inner = getattr(err, "inner_exception", None) or err.__cause__
    if inner is not None and inner is not err:
        text += f" ({type(inner).__name__}: {first(inner)})"
    return text


def public(info: dict) -> dict:
    return {k: v for k, v in info.items() if not k.startswith("_")}
