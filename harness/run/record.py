"""The one record builder: every cell record is assembled here (torch-free).

A record is ``{"schema", "key", "suite", "config", "label", "started_at", "status", "error",
"metrics", "coverage", "flops_check", "finetune", "samples_file", "provenance", "finished_at"}``;
``status`` is ``ok``, ``failed`` or (a sharded cell with shards still running) ``partial``. The local
runner, a lost local job, the Slurm shard merge and a lost Slurm task all build their records with
these functions, so the fields and their meaning cannot drift apart.
"""
from __future__ import annotations

import datetime as dt
import traceback as tb
import typing as tp

SCHEMA = 1
RESULT_FIELDS = ("metrics", "coverage", "flops_check", "finetune")


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def new_record(spec: tp.Any, started_at: tp.Optional[str] = None) -> dict:
    """A record of cell ``spec`` (a ``CellSpec``) before its outcome is known."""
    return {"schema": SCHEMA, "key": spec.key, "suite": dict(spec.suite), "config": spec.config(), "label": spec.label,
            "started_at": started_at}


def set_ok(record: dict, result: tp.Mapping[str, tp.Any], samples_file: tp.Optional[str]) -> dict:
    """Mark ``record`` finished: the measured fields of ``result`` and the per-video samples file's name."""
    record.update({k: result.get(k) for k in RESULT_FIELDS})
    record.update(status="ok", error=None, samples_file=samples_file)
    return record


def error_of(err: BaseException, **extra: tp.Any) -> dict:
    """The ``error`` field for an exception raised in this process (type, message, its traceback)."""
    return {"type": type(err).__name__, "message": str(err),
            "traceback": "".join(tb.format_exception(type(err), err, err.__traceback__)), **extra}


def set_failed(record: dict, error: tp.Mapping[str, tp.Any]) -> dict:
    """Mark ``record`` failed with ``error`` (``type`` and ``message`` at least; ``traceback``, ``log``...)."""
    if not error.get("type") or "message" not in error:
        raise ValueError("a failure needs an error type and a message")
    record.update(status="failed", error=dict(error))
    return record


def set_partial(record: dict) -> dict:
    record.update(status="partial", error=None)
    return record


def finish(record: dict, provenance: tp.Mapping[str, tp.Any]) -> dict:
    """Stamp ``provenance`` and ``finished_at``; the record is then ready for ``ResultStore.write``."""
    record["provenance"] = dict(provenance)
    record["finished_at"] = now()
    return record


def worker_state() -> dict:
    """What the measuring process knows of itself: packages, machine, and where its code was imported from."""
    import os

    import harness
    from harness.provenance import machine, package_versions

    return {"versions": package_versions(), "machine": machine(),
            "code_path": os.path.dirname(os.path.dirname(os.path.abspath(harness.__file__)))}


def provenance(runtime: tp.Optional[tp.Mapping[str, tp.Any]] = None, *, code: tp.Optional[tp.Mapping] = None,
               worker: tp.Optional[tp.Mapping[str, tp.Any]] = None) -> dict:
    """The one provenance builder: the code, the packages and machine that measured, and what the worker
    measured (``runtime``: device, threads, hashes, kernels...).

    Without ``code`` the cell ran here, from this checkout: its git state, this process's packages and
    machine. With ``code`` (a Slurm submission's snapshot record) the git fields are the snapshot's, and
    packages, machine and code path are ``worker``'s (``worker_state()`` of the shard that measured, kept
    in its ``measure.json``; None when no shard measured)."""
    from harness.provenance import git_state

    if code is None:
        worker = worker or worker_state()
        out = {**git_state(), "versions": worker["versions"], **worker["machine"]}
    else:
        out = {"git_commit": code.get("git_commit"), "git_dirty": code.get("git_dirty"),
               "git_diff_sha256": code.get("git_diff_sha256"), "code_snapshot": code.get("snapshot")}
        if worker is not None:
            out.update({"versions": worker.get("versions"), **worker.get("machine", {}),
                        "code_path": worker.get("code_path")})
    return {**out, **(runtime or {})}
