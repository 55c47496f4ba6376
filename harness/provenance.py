"""Where a result came from: code version, packages, machine (torch-free at import)."""
from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
import typing as tp

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


_SHA_CACHE: dict = {}  # (abspath, size, mtime_ns) -> sha256


def cached_file_sha256(path: str) -> str:
    """``file_sha256`` remembered per (path, size, mtime); ``"missing:<path>"`` when absent."""
    try:
        st = os.stat(path)
    except OSError:
        return f"missing:{path}"
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = file_sha256(path)
    return _SHA_CACHE[key]


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
