"""One request answered by a fresh Python process: ``python -m MODULE '<json request>'`` prints its answer as
its last ``RESULT <json>`` line.

    result = run_fresh("harness.bench.worker", request, timeout_s=1800)   # the parent
    sys.exit(serve(measure, sys.argv[1:]))                                 # the MODULE's ``__main__``

A fresh process owns its peak memory and its allocator state, so repeats are independent (``harness bench``'s
measurements, ``run.memory_probe``). A process that runs out of memory (an OOM message in its last lines, a
``MemoryError``, or killed by SIGKILL: the kernel's OOM killer) answers ``{"oom": True, "error": ...}``; any
other failure raises with the last lines of its output.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import typing as tp

RESULT = "RESULT "  # the prefix of the answer line


def is_oom(text: str) -> bool:
    """Whether an error text is an allocator's out-of-memory (CUDA, CPU allocators, MPS)."""
    text = text.lower()
    return "out of memory" in text or "not enough memory" in text or "can't allocate" in text


def run_fresh(module: str, request: tp.Mapping[str, tp.Any], timeout_s: float) -> dict:
    """Run ``python -m module '<json request>'`` and return its last ``RESULT`` line, parsed.

    OpenMP threads wait passively unless the caller's environment says otherwise (busy-waiting threads of an
    idle process skew the next measurement on a small machine)."""
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        proc = subprocess.run([sys.executable, "-m", module, json.dumps(request)], capture_output=True, text=True,
                              timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{module} did not answer within {timeout_s:g} s (killed)") from None
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        if any(is_oom(line) for line in tail) or proc.returncode in (-9, 137):
            return {"oom": True, "error": " | ".join(tail)}
        raise RuntimeError(f"{module} failed (exit {proc.returncode}): " + " | ".join(tail))
    return json.loads(lines[-1][len(RESULT):])


def serve(handler: tp.Callable[[dict], dict], argv: tp.Sequence[str]) -> int:
    """The fresh process's side: ``handler(json.loads(argv[0]))`` printed as the ``RESULT`` line (a
    ``MemoryError`` answers ``{"oom": True, "error": ...}``)."""
    request = json.loads(argv[0])
    try:
        result = handler(request)
    except MemoryError as err:
        result = {"oom": True, "error": f"MemoryError: {err}"}
    print(RESULT + json.dumps(result), flush=True)
    return 0
