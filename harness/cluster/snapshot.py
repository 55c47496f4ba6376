"""Code pinning: queued jobs run the code that was submitted, not whatever the checkout holds later.

``take_snapshot(store_root)`` copies the harness's Python packages (``harness/``, ``methods/``: what
``pyproject.toml`` packages) into ``<results>/code/<id>/``, where ``id`` is the first 16 hex digits
of a sha256 over every copied file's relative path and bytes: the same code gives the same folder
(taken once), an edit gives a new one. Jobs run with that folder as working directory and first on
``PYTHONPATH``, so ``import harness`` resolves there; each record names the snapshot id and the git
commit (and dirty flag / diff hash) of the checkout it was taken from. Installed dependencies (torch,
timm, ...) are not copied: they come from the job's environment, as recorded in ``provenance.versions``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import typing as tp
import uuid
from pathlib import Path

from harness.layout import Layout

PACKAGES = ("harness", "methods")  # [tool.setuptools.packages.find] include
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache"}
_SKIP_SUFFIXES = (".pyc", ".pyo", ".tmp")
MANIFEST = "SNAPSHOT.json"


@dataclasses.dataclass(frozen=True)
class CodeSnapshot:
    id: str  # content hash (16 hex digits)
    path: str  # <results>/code/<id>, absolute
    git_commit: tp.Optional[str]  # commit of the checkout the snapshot was taken from
    git_dirty: tp.Optional[bool]  # uncommitted changes to tracked files
    git_diff_sha256: tp.Optional[str]  # hash of `git diff HEAD` when dirty
    files: int  # number of files copied

    def as_record(self) -> dict:
        return dataclasses.asdict(self) | {"snapshot": self.id}


def source_root() -> Path:
    """The checkout (or install) the running harness was imported from."""
    import harness

    return Path(harness.__file__).resolve().parent.parent


def code_files(root: Path) -> tp.List[Path]:
    """The files of ``PACKAGES`` under ``root`` (relative paths, sorted), caches skipped."""
    out = []
    for package in PACKAGES:
        for dirpath, dirnames, filenames in os.walk(root / package):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
            for name in filenames:
                if not name.endswith(_SKIP_SUFFIXES) and not name.startswith("."):
                    out.append((Path(dirpath) / name).relative_to(root))
    return sorted(out)


def content_id(root: Path, files: tp.Sequence[Path]) -> str:
    h = hashlib.sha256()
    for rel in files:
        h.update(str(rel.as_posix()).encode() + b"\0")
        h.update((root / rel).read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:16]


def take_snapshot(store_root: tp.Union[str, Path], root: tp.Optional[Path] = None) -> CodeSnapshot:
    """Copy the code into ``<store_root>/code/<id>/`` (once per content) and describe it."""
    from harness.provenance import git_state
    from harness.store import dumps_record

    root = Path(root) if root is not None else source_root()
    files = code_files(root)
    if not files:
        raise FileNotFoundError(f"no {' or '.join(PACKAGES)} package under {root}: nothing to snapshot")
    sid = content_id(root, files)
    target = Layout(store_root).snapshot(sid).resolve()
    git = git_state(str(root))
    snap = CodeSnapshot(sid, str(target), git["git_commit"], git["git_dirty"], git["git_diff_sha256"], len(files))
    if not (target / MANIFEST).is_file():
        tmp = target.parent / f".{sid}.{uuid.uuid4().hex}.tmp"
        for rel in files:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / rel, tmp / rel)
        (tmp / MANIFEST).write_text(dumps_record({**snap.as_record(), "source": str(root)}) + "\n")
        try:
            os.replace(tmp, target)
        except OSError:  # another submission took the same snapshot first: same content
            shutil.rmtree(tmp, ignore_errors=True)
    return snap


def job_setup_lines(snap: CodeSnapshot) -> tp.List[str]:
    """Shell lines that make a job import the snapshot's code."""
    import shlex

    path = shlex.quote(snap.path)
    return [f"cd {path}", f'export PYTHONPATH={path}"${{PYTHONPATH:+:$PYTHONPATH}}"',
            f"export HARNESS_CODE_SNAPSHOT={snap.id}"]
