"""Where a result came from: code version, packages, machine (torch-free at import)."""
from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import re
import socket
import subprocess
import sys
import typing as tp

from harness.files import FAMILIES_PATH_VARIABLE, cached_file_sha256, path_variable_folders

PACKAGES = ("torch", "timm", "decord", "fvcore", "numpy", "av", "submitit", "pyyaml")
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git_state(repo: str = _REPO) -> dict:
    """Commit and dirty flag of the harness checkout (None outside a git checkout)."""
    def git(*args: str) -> tp.Optional[str]:
        try:
            return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    diff = git("diff", "HEAD") if status else ""
    return {"git_commit": commit, "git_dirty": bool(status) if status is not None else None,
            "git_diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if diff else None}


def package_versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine() -> dict:
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"hostname": socket.gethostname(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "load_avg": load, "slurm_job_id": os.environ.get("SLURM_JOB_ID")}


# Code whose change can change a cell's numbers (besides the method's own package): building the model, the
# models, the data pipeline and measurement (accuracy, GMACs, speed, memory, the device switches). The
# runners, the cluster code, planning, reports, the CLI and the store only move those numbers around.
NUMERICS_PATHS = ("harness/build.py", "harness/models", "harness/data", "harness/measure")
_METHOD_IMPORT = re.compile(r"^\s*(?:from|import)\s+methods\.(\w+)", re.MULTILINE)


def numerics_code(method: str, params: tp.Optional[tp.Mapping] = None, root: str = _REPO) -> dict:
    """A content hash of the code that computes a cell of ``method``: ``NUMERICS_PATHS`` plus the method's
    package, the method packages it imports (e.g. the random baselines use ToMe's merge) and those a
    parameter names (``random_drop match=sta`` follows STA's schedule).

    Records keep it so that a finished cell computed by other code than the current checkout can be told
    apart (``harness run`` warns about such cells instead of silently reusing them as current).
    Returns ``{"id": 16 hex digits, "paths": [...]}``.
    """
    import methods

    named = [method] + [v for v in (params or {}).values() if isinstance(v, str) and v in methods.list_methods()]
    paths, todo = list(NUMERICS_PATHS), []
    for name in named:
        spec = methods.get_method(name)
        module = (spec.architecture or spec.implementation).split(":")[0]
        if module.startswith("methods."):
            todo.append(module.split(".")[1])
    files = {p: os.path.join(root, p) for entry in paths for p in _python_files(root, entry)}  # label -> file
    for label, path in _outside_families(root):  # hashed as if they were in harness/models/families/
        paths.append(label)
        files[label] = path
    seen: set = set()
    while todo:
        name = todo.pop()
        if name in seen or name == "registry":
            continue
        seen.add(name)
        base = _method_base(root, name, methods.__path__[1:])
        rel = name if os.path.isdir(os.path.join(base, name)) else f"{name}.py"
        paths.append(f"methods/{rel}")
        for path in _python_files(base, rel):
            files[f"methods/{path}"] = os.path.join(base, path)
            with open(os.path.join(base, path), encoding="utf-8") as f:
                todo.extend(_METHOD_IMPORT.findall(f.read()))
    h = hashlib.sha256()
    for label in sorted(files):
        h.update(label.encode() + b"\0" + cached_file_sha256(files[label]).encode() + b"\0")
    return {"id": h.hexdigest()[:16], "paths": sorted(set(paths))}


def code_state(record: tp.Mapping, method: str, params: tp.Mapping, current: tp.Optional[dict] = None) -> str:
    """How a record's ``provenance.numerics_code`` relates to this checkout: "current", "other code",
    "code unrecorded" (a record from before the hash existed) or "unknown method" (not in this checkout).
    ``current`` caches this checkout's ids per (method, params) across calls."""
    stored = ((record.get("provenance") or {}).get("numerics_code") or {}).get("id")
    if not stored:
        return "code unrecorded"
    current = {} if current is None else current
    key = (method, repr(sorted((params or {}).items())))
    if key not in current:
        try:
            current[key] = numerics_code(method, params)["id"]
        except KeyError:  # UnknownNameError: a method this checkout does not have
            current[key] = None
    if current[key] is None:
        return "unknown method"
    return "current" if current[key] == stored else "other code"


def _method_base(root: str, name: str, extra: tp.Sequence[str]) -> str:
    """The folder holding method package ``name``: ``root/methods``, else the first ``HARNESS_METHODS_PATH``
    folder that has it (a method kept outside the repository is hashed as if it were in ``methods/``)."""
    for base in (os.path.join(root, "methods"), *extra):
        if os.path.isdir(os.path.join(base, name)) or os.path.isfile(os.path.join(base, f"{name}.py")):
            return base
    return os.path.join(root, "methods")


def _outside_families(root: str) -> tp.List[tp.Tuple[str, str]]:
    """``(label, file)`` of each family module (or package) on ``HARNESS_FAMILIES_PATH`` that is imported (the
    first folder holding a name wins, and a name in the repository's families folder shadows them all)."""
    import pkgutil

    out, seen = [], {m.name for m in pkgutil.iter_modules([os.path.join(root, "harness", "models", "families")])}
    for folder in path_variable_folders(FAMILIES_PATH_VARIABLE):
        for module in pkgutil.iter_modules([folder]):
            if module.name in seen:
                continue
            seen.add(module.name)
            out += [(f"harness/models/families/{rel}", os.path.join(folder, rel))
                    for rel in _python_files(folder, module.name if module.ispkg else f"{module.name}.py")]
    return out


def _python_files(root: str, rel: str) -> tp.List[str]:
    full = os.path.join(root, rel)
    if os.path.isfile(full):
        return [rel]
    out = []
    for folder, dirs, files in os.walk(full):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        out.extend(os.path.relpath(os.path.join(folder, f), root).replace(os.sep, "/")
                   for f in sorted(files) if f.endswith(".py"))
    return out
