"""The folders of a results directory, named once (torch-free).

    <results>/cells/<key>.json, <key>.samples.csv   one record and its per-video rows per cell (harness.store)
    <results>/logs/                                  submitit's job folders and the runners' progress files
    <results>/finetunes/<key>/                       one fine-tuning run's checkpoints, log and meta
    <results>/locks/<key>.lock, <key>.owner          who computes a cell (or a fine-tune) now
    <results>/shards/<key>/                          a Slurm cell's shard folders (harness.cluster.shards)
    <results>/code/<id>/                             the code snapshot a Slurm submission's tasks import
    <results>/slurm/<id>/                            one Slurm submission: submission.json, submitit's folders
    <results>/bench/                                 ``harness bench`` records

Every module asks ``Layout`` for these paths, so that the write checks of a command (``writes_for``)
cover every folder it writes.
"""
from __future__ import annotations

import os
import typing as tp
from pathlib import Path

CELLS, LOGS, FINETUNES, LOCKS, SHARDS, CODE, SLURM, BENCH = (
    "cells", "logs", "finetunes", "locks", "shards", "code", "slurm", "bench")

# what each command writes under its results directory (checked for writability before any compute)
WRITES = {
    "run": (CELLS, LOGS, FINETUNES, LOCKS),
    "run-slurm": (CELLS, LOGS, FINETUNES, SHARDS, CODE, SLURM),
    "finetune": (LOGS, FINETUNES, LOCKS),
    "bench": (BENCH,),
}


def writes_for(command: str) -> tp.Tuple[str, ...]:
    """The folders ``command`` (a key of ``WRITES``) writes under the results directory."""
    return WRITES[command]


class Layout:
    """The paths under one results directory."""

    def __init__(self, root: tp.Union[str, os.PathLike] = "results"):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Layout({str(self.root)!r})"

    def folder(self, name: str) -> Path:
        return self.root / name

    @property
    def cells(self) -> Path:
        return self.root / CELLS

    @property
    def logs(self) -> Path:
        return self.root / LOGS

    @property
    def locks(self) -> Path:
        return self.root / LOCKS

    @property
    def submissions(self) -> Path:
        return self.root / SLURM

    @property
    def bench(self) -> Path:
        return self.root / BENCH

    def finetune(self, key: str) -> Path:
        """A fine-tuning run's folder."""
        return self.root / FINETUNES / key

    def shards(self, key: str) -> Path:
        """Where the shards of Slurm cell ``key`` keep their predictions."""
        return self.root / SHARDS / key

    def snapshot(self, snapshot_id: str) -> Path:
        return self.root / CODE / snapshot_id

    def submission(self, submission_id: str) -> Path:
        return self.root / SLURM / submission_id

    def job_logs(self) -> Path:
        """submitit's folder pattern for local jobs (``%j``: the job id)."""
        return self.logs / "%j"

    def progress(self, name: str) -> Path:
        """A worker's progress file (``progress-<name>.json``), polled by the runner that waits for it."""
        return self.logs / f"progress-{name}.json"
