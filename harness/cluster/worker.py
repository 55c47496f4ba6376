"""What an array task runs: one shard of a shared-decoding group of cells (or of one cell), resumable;
and the merge.

``ShardTask()(job)`` runs the one group task (``run.task.GroupTask``, as a local run does) with the
``ShardSink``: it evaluates its range of videos for every cell of ``job.cells`` on one decoding pass
(each batch decoded once, forwarded through each cell that has not saved it yet by an earlier run, and
saved into that cell's own shard folder), measures the cells once if it is shard 0 (``run.group``'s
``measure_costs``: GMACs check and memory per cell alone, throughput interleaved over the group), marks
each cell's shard complete and calls ``finalize_cell`` per cell, which writes the cell's record from its
shard folders: ``ok`` (merged) when every shard is complete, ``failed`` when a shard failed, ``partial``
otherwise. A cell whose shard is already complete is not rebuilt. A cell's failure is recorded first
(``failed.json`` in its shard folder plus a failed record naming the log file), the other cells go on,
and only then is ``ShardFailed`` raised, so that Slurm shows the task FAILED. A preemption or time-out
(submitit calls ``checkpoint``) saves what is buffered and requeues the same task, which then resumes.
"""
from __future__ import annotations

import dataclasses
import os
import traceback
import typing as tp

import submitit

from harness.cluster import shards as sh
from harness.run import record as rec
from harness.run.cell import CellJob
from harness.suite import CellSpec

COMPLETE_RECHECKS = 1  # finalize again after writing a partial record (see finalize_cell)


@dataclasses.dataclass
class ShardJob:
    """Everything one array task needs (picklable): one shard of the cells of one group."""

    cells: tp.List[CellJob]  # spec and store_root (absolute); one share key, one store
    shard: int = 0  # 0-based
    num_shards: int = 1
    save_every_s: float = 60.0  # seconds between prediction saves (0: after every batch)
    code: dict = dataclasses.field(default_factory=dict)  # snapshot id, path, git commit (see snapshot.py)
    submission: str = ""  # submission id (folder under <results>/slurm/)
    after_batch: tp.Optional[tp.Callable[[int], None]] = None  # called with each batch number once saved (tests)

    @property
    def store_root(self) -> str:
        return self.cells[0].store_root


def cell_info(job: ShardJob, cell: CellJob) -> dict:
    """The content of ``cell.json``: the cell (``CellSpec.to_json``) and how it was split, what a merge
    needs without the submitting process."""
    return {**cell.spec.to_json(), "num_shards": job.num_shards, "group": [c.label for c in job.cells],
            "code": job.code, "submission": job.submission}


def spec_of(cell: dict) -> CellSpec:
    """The ``CellSpec`` a ``cell.json`` describes (one written before specs, with a ``config``, too)."""
    if "config" in cell:
        return CellSpec.from_json({**cell["config"], "key": cell["key"], "label": cell["label"],
                                   "suite": cell["suite"]})
    return CellSpec.from_json(cell)


class ShardFailed(RuntimeError):
    """Raised by a task after its failures are recorded, so the job ends FAILED in Slurm too."""


class ShardTask(submitit.helpers.Checkpointable):
    """Callable run by submitit in the job: ``ShardTask()(job) -> summary dict``.

    Failures are recorded first (``failed.json`` + the cell's failed record), then raised as
    ``ShardFailed`` so that ``sacct`` shows FAILED; ``ShardTask(raise_on_failure=False)`` only records.
    """

    def __init__(self, raise_on_failure: bool = True) -> None:
        self.raise_on_failure = raise_on_failure
        self._writers: tp.Dict[str, sh.PredictionWriter] = {}

    def __getstate__(self) -> dict:  # never pickle a half-run state; the chunks on disk are the state
        return {"raise_on_failure": self.raise_on_failure}

    def __setstate__(self, state: dict) -> None:
        self.raise_on_failure = state.get("raise_on_failure", True)
        self._writers = {}

    def checkpoint(self, job: ShardJob) -> submitit.helpers.DelayedSubmission:
        """Preempted or timing out: save every cell's buffered batches, then requeue the same task."""
        for writer in list(self._writers.values()):
            writer.flush()
        return submitit.helpers.DelayedSubmission(ShardTask(self.raise_on_failure), job)

    def __call__(self, job: ShardJob) -> dict:
        dirs, states = {}, {}
        for cell in job.cells:
            directory = sh.shard_dir(sh.cell_dir(cell.store_root, cell.key), job.shard, job.num_shards)
            directory.mkdir(parents=True, exist_ok=True)
            (directory / sh.FAILED).unlink(missing_ok=True)
            if not (directory.parent / sh.CELL).is_file():
                sh.write_json(directory.parent / sh.CELL, cell_info(job, cell))
            dirs[cell.key], states[cell.key] = directory, sh.load_state(directory)
        todo = [c for c in job.cells if not _already_done(job, dirs[c.key], states[c.key])]
        failures: tp.Dict[str, dict] = {}
        if todo:
            try:
                failures = self._run(job, todo, dirs, states)
            except Exception as err:  # noqa: BLE001 -- e.g. the data loader died: every cell of the pass
                failures = {c.key: rec.error_of(err) for c in todo}
        for key, error in failures.items():
            sh.write_json(dirs[key] / sh.FAILED, {"shard": job.shard, **error, "log": _log_path(),
                                                  "job_id": _job_id(), "at": rec.now()})
        records = {c.key: finalize_cell(c.store_root, c.key) for c in job.cells}
        if failures and self.raise_on_failure:  # so that Slurm, too, shows the task as FAILED
            first = next(iter(failures.values()))
            labels = ", ".join(c.label for c in job.cells if c.key in failures)
            raise ShardFailed(f"{labels} shard {job.shard}: {first['type']}: {first['message']} "
                              f"(recorded in {job.store_root})")
        return {"shard": job.shard, "cells": {c.key: {"label": c.label, "status": records[c.key]["status"],
                                                      "videos_done": (states[c.key] or {}).get("videos_done")}
                                              for c in job.cells}}

    def _run(self, job: ShardJob, cells: tp.List[CellJob], dirs: dict, states: dict) -> tp.Dict[str, dict]:
        """The group task over the shard's range (``ShardSink``); updates ``states`` and returns ``{key: error}``
        of the cells that failed."""
        from harness.run.task import GroupTask

        _threads_from_slurm(cells[0].spec.measure.threads)
        return GroupTask(cells).run(ShardSink(self, job, dirs, states))

    def _start(self, job: ShardJob, directory, states: dict, key: str, start: int, end: int,
               dataset: dict) -> tp.Set[int]:
        """Open a new run in the cell's shard state (a fresh state if the range changed) and its writer;
        returns the batch numbers its chunks already hold."""
        from harness.data.decode import decoder_provenance

        state = states[key]
        if state is None or state["range"] != [start, end]:
            for stale in directory.glob(sh.CHUNK_GLOB):
                stale.unlink()
            state = sh.new_state(job.shard, job.num_shards, start, end)
        saved = sh.saved_batches(directory)  # the chunks are the truth (a kill may precede the state update)
        state.update(complete=False, videos_done=sum(saved.values()),
                     chunks=len(list(directory.glob(sh.CHUNK_GLOB))))
        state["runs"].append({"job_id": _job_id(), "restart_count": int(os.environ.get("SLURM_RESTART_COUNT", 0)),
                              "started_at": rec.now(), "resumed_at": state["videos_done"], "predicted": 0,
                              "log": _log_path(), **decoder_provenance(dataset)})  # per node
        sh.write_json(directory / sh.STATE, state)
        states[key] = state
        self._writers[key] = sh.PredictionWriter(directory, state, job.save_every_s)
        return set(saved)


class ShardSink:
    """The Slurm sink of ``run.task.GroupTask``: the shard's slice of the videos into each cell's chunk files
    (resumable: batches a cell's chunks already hold are skipped); shard 0 measures the cells not measured
    yet (``measure.json``); each cell's shard that predicted and measured without failure is marked complete."""

    def __init__(self, task: ShardTask, job: ShardJob, dirs: dict, states: dict):
        self.task, self.job, self.dirs, self.states = task, job, dirs, states
        self.listed: list = []
        self.predicted: tp.List[CellJob] = []

    def predict(self, jobs, setups, progress) -> tp.Dict[str, dict]:
        job, states = self.job, self.states
        first = setups[jobs[0].key]
        ev = first.spec.eval
        self.listed = first.dataset.items()
        items = self.listed[:ev.limit] if ev.limit else self.listed
        start, end = sh.shard_ranges(len(items), job.num_shards, ev.batch_size)[job.shard]
        saved = {c.key: self.task._start(job, self.dirs[c.key], states, c.key, start, end, c.spec.dataset)
                 for c in jobs}
        group = f" (one decoding pass for {len(jobs)} cells)" if len(jobs) > 1 else ""
        for cell in jobs:
            print(f"{cell.label} [{cell.key[:12]}] shard {job.shard}/{job.num_shards}: videos {start}-{end}, "
                  f"{states[cell.key]['videos_done']} already saved, run {len(states[cell.key]['runs'])}{group}",
                  flush=True)
        self.predicted = list(jobs)
        errors = sh.predict_range({c.key: setups[c.key].model for c in jobs}, first.dataset, items, start=start,
                                  end=end, batch_size=ev.batch_size, num_workers=ev.num_workers,
                                  device=first.device, writers=self.task._writers, skip=saved,
                                  after_batch=job.after_batch, contexts={c.key: setups[c.key].context for c in jobs})
        return {key: rec.error_of(err) for key, err in errors.items()}

    def to_measure(self, jobs) -> tp.List[CellJob]:
        return [c for c in jobs if self.job.shard == 0 and not (self.dirs[c.key].parent / sh.MEASURE).is_file()]

    def finish(self, jobs, setups, costs, failures) -> tp.Dict[str, dict]:
        from harness.run.cell import cell_runtime

        for key, cost in costs.items():
            if key in failures:
                continue
            setup = setups[key]
            measured, flops_check = cost
            sh.write_json(self.dirs[key].parent / sh.MEASURE, {
                "metrics": measured, "flops_check": flops_check, "finetune": setup.finetune,
                "runtime": cell_runtime(setup, setup.dataset.manifest(), []),
                "listed_in_annotation": len(self.listed), **rec.worker_state(), "measured_at": rec.now()})
        for cell in self.predicted:
            if cell.key in failures:
                continue
            state = self.states[cell.key]
            state["complete"] = True
            state["runs"][-1]["finished_at"] = rec.now()
            sh.write_json(self.dirs[cell.key] / sh.STATE, state)
            print(f"{cell.label} shard {self.job.shard}/{self.job.num_shards} complete: "
                  f"{state['runs'][-1]['predicted']} videos predicted in this run", flush=True)
        return failures


class FinetuneTask(submitit.helpers.Checkpointable):
    """A fine-tuning run as an array task; a requeued run resumes from its last epoch checkpoint."""

    def __call__(self, config: dict, out_dir: str) -> dict:
        from harness.run.local import run_finetune_job

        _threads_from_slurm(config.get("threads"))
        return run_finetune_job(config, out_dir)


def finalize_cell(store_root: str, key: str) -> dict:
    """Write cell ``key``'s record from its shard folders and return it.

    ``failed`` if a shard failed, ``ok`` (merged) if every shard is complete, else ``partial``. A
    shard marks itself complete *before* calling this, and a partial record is followed by one more
    look: so whichever shard completes last (or a concurrent one) always ends with the merged record.
    """
    from harness.store import ResultStore

    store = ResultStore(store_root)
    for _ in range(1 + COMPLETE_RECHECKS):
        record = _cell_record(store_root, key)
        if record["status"] == "ok":
            record["samples_file"] = store.write_samples(key, record.pop("samples")).name
        store.write(record)
        if record["status"] != "partial":
            break
    return record


def _cell_record(store_root: str, key: str) -> dict:
    cdir = sh.cell_dir(store_root, key)
    cell = sh.read_json(cdir / sh.CELL)
    if cell is None:
        raise FileNotFoundError(f"no {sh.CELL} in {cdir}: not a sharded cell")
    n = cell["num_shards"]
    dirs = [sh.shard_dir(cdir, i, n) for i in range(n)]
    states = [sh.load_state(d) for d in dirs]
    failures = [f for f in (sh.read_json(d / sh.FAILED) for d in dirs) if f is not None]
    spec = spec_of(cell)
    record = rec.new_record(spec, started_at=_first_start(states))
    record["execution"] = _execution(cell, states)
    measure = sh.read_json(cdir / sh.MEASURE)
    complete = all(s is not None and s.get("complete") for s in states)
    runtime = {}
    if not failures and complete and measure is not None:
        try:
            merged = _merged(spec, dirs, states, measure)
            runtime = merged.pop("runtime")
            record["execution"]["duplicates_dropped"] = merged.pop("duplicates_dropped")
            rec.set_ok(record, merged, samples_file=None)
            record["samples"] = merged["samples"]  # written to the samples file by finalize_cell
        except Exception as err:  # noqa: BLE001 -- e.g. no video decoded: a failed cell
            failures = [{"type": type(err).__name__, "message": f"merge: {err}", "traceback": traceback.format_exc(),
                         "log": None, "shard": None}]
    if failures:
        first = failures[0]
        rec.set_failed(record, {"type": first["type"], "message": first["message"],
                                "traceback": first.get("traceback"), "log": first.get("log"),
                                "shard": first.get("shard"), "failed_shards": [f.get("shard") for f in failures]})
    elif record.get("status") != "ok":
        rec.set_partial(record)
    return rec.finish(record, rec.provenance({**((measure or {}).get("runtime") or {}), **runtime},
                                             code=cell.get("code") or {}, worker=measure))


def _merged(spec: CellSpec, dirs, states, measure: dict) -> dict:
    predictions = sh.load_predictions(dirs)
    num_items = sum(s["videos"] for s in states)
    merged = sh.merge_predictions(predictions, aggregation=spec.dataset.get("aggregation", "prob"),
                                  num_items=num_items, listed_total=measure["listed_in_annotation"])
    metrics = merged["metrics"]
    metrics.update(measure["metrics"])
    runtime = dict(measure["runtime"], attention_kernel_per_block=list(merged["last_stats"]["attention_kernel"]))
    return {"metrics": metrics, "coverage": merged["coverage"], "flops_check": measure["flops_check"],
            "finetune": measure.get("finetune"), "samples": merged["samples"], "runtime": runtime,
            "duplicates_dropped": merged["duplicates"]}


def _execution(cell: dict, states: list) -> dict:
    shards = [{"shard": i, "range": s["range"], "videos": s["videos"], "videos_done": s["videos_done"],
               "complete": s["complete"], "runs": s["runs"]} if s else {"shard": i, "complete": False}
              for i, s in enumerate(states)]
    out = {"executor": "slurm", "submission": cell.get("submission"), "num_shards": cell["num_shards"],
           "shards": shards}
    if cell.get("group"):
        out["shared_decode"] = {"cells": len(cell["group"]), "group": cell["group"]}
    return out


def _first_start(states: list) -> tp.Optional[str]:
    starts = [r["started_at"] for s in states if s for r in s["runs"]]
    return min(starts) if starts else None


def _already_done(job: ShardJob, directory, state: tp.Optional[dict]) -> bool:
    """A complete shard (and, for shard 0, its measurement) needs no model: just the merge."""
    if not (state and state.get("complete") and state.get("num_shards") == job.num_shards):
        return False
    return job.shard != 0 or (directory.parent / sh.MEASURE).is_file()


def _threads_from_slurm(threads: tp.Optional[int]) -> None:
    """Torch threads = the task's CPUs (Slurm binds none with task/none), unless ``threads`` (measure.threads) is set."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus and not threads:
        import torch

        torch.set_num_threads(int(cpus))


def _job_id() -> tp.Optional[str]:
    return submitit.JobEnvironment().job_id if os.environ.get("SLURM_JOB_ID") else None


def _log_path() -> tp.Optional[str]:
    if not os.environ.get("SUBMITIT_FOLDER") or not os.environ.get("SLURM_JOB_ID"):
        return None
    return str(submitit.JobEnvironment().paths.stderr)
