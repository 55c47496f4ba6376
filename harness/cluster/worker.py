"""What an array task runs: one shard of one cell, resumable; and the merge.

``ShardTask()(job)`` evaluates its range of videos (skipping batches saved by an earlier run),
measures the model once if it is shard 0, marks itself complete and calls ``finalize_cell``, which
writes the cell's record from the shard folders: ``ok`` (merged) when every shard is complete,
``failed`` when a shard failed, ``partial`` otherwise. An exception is recorded first (``failed.json``
in the shard folder plus a failed record naming the log file) and only then raised as ``ShardFailed``,
so that Slurm shows the task FAILED. A preemption or time-out (submitit calls ``checkpoint``) saves
what is buffered and requeues the same task, which then resumes.
"""
from __future__ import annotations

import dataclasses
import os
import time
import traceback
import typing as tp

import submitit

from harness.cluster import shards as sh
from harness.run import record as rec
from harness.run.cell import CellJob

COMPLETE_RECHECKS = 1  # finalize again after writing a partial record (see finalize_cell)


@dataclasses.dataclass
class ShardJob:
    """Everything one array task needs (picklable)."""

    cell: CellJob  # key, config, label, suite, store_root (absolute)
    shard: int = 0  # 0-based
    num_shards: int = 1
    save_every_s: float = 60.0  # seconds between prediction saves (0: after every batch)
    code: dict = dataclasses.field(default_factory=dict)  # snapshot id, path, git commit (see snapshot.py)
    submission: str = ""  # submission id (folder under <results>/slurm/)


def cell_info(job: ShardJob) -> dict:
    """The content of ``cell.json``: what a merge needs without the submitting process."""
    c = job.cell
    return {"key": c.key, "config": c.config, "label": c.label, "suite": c.suite, "num_shards": job.num_shards,
            "code": job.code, "submission": job.submission}


class ShardFailed(RuntimeError):
    """Raised by a task after its failure is recorded, so the job ends FAILED in Slurm too."""


class ShardTask(submitit.helpers.Checkpointable):
    """Callable run by submitit in the job: ``ShardTask()(job) -> summary dict``.

    A failure is recorded first (``failed.json`` + the cell's failed record), then raised as
    ``ShardFailed`` so that ``sacct`` shows FAILED; ``ShardTask(raise_on_failure=False)`` only records.
    """

    def __init__(self, raise_on_failure: bool = True) -> None:
        self.raise_on_failure = raise_on_failure
        self._writer: tp.Optional[sh.PredictionWriter] = None

    def __getstate__(self) -> dict:  # never pickle a half-run state; the chunks on disk are the state
        return {"raise_on_failure": self.raise_on_failure}

    def __setstate__(self, state: dict) -> None:
        self.raise_on_failure = state.get("raise_on_failure", True)
        self._writer = None

    def checkpoint(self, job: ShardJob) -> submitit.helpers.DelayedSubmission:
        """Preempted or timing out: save the buffered batches, then requeue the same task."""
        if self._writer is not None:
            self._writer.flush()
        return submitit.helpers.DelayedSubmission(ShardTask(self.raise_on_failure), job)

    def __call__(self, job: ShardJob) -> dict:
        directory = sh.shard_dir(sh.cell_dir(job.cell.store_root, job.cell.key), job.shard, job.num_shards)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / sh.FAILED).unlink(missing_ok=True)
        if not (directory.parent / sh.CELL).is_file():
            sh.write_json(directory.parent / sh.CELL, cell_info(job))
        state = sh.load_state(directory)
        error = None
        try:
            if not _already_done(job, directory, state):
                state = self._run(job, directory, state)
        except Exception as err:  # noqa: BLE001 -- a failed shard is a record, not a crash
            error = err
            sh.write_json(directory / sh.FAILED, {
                "shard": job.shard, "type": type(err).__name__, "message": str(err),
                "traceback": traceback.format_exc(), "log": _log_path(), "job_id": _job_id(), "at": rec.now()})
        record = finalize_cell(job.cell.store_root, job.cell.key)
        if error is not None and self.raise_on_failure:  # so that Slurm, too, shows the task as FAILED
            raise ShardFailed(f"{job.cell.label} shard {job.shard}: {type(error).__name__}: {error} "
                              f"(recorded in {job.cell.store_root})") from error
        return {"key": job.cell.key, "shard": job.shard, "status": record["status"],
                "videos_done": (state or {}).get("videos_done")}

    def _run(self, job: ShardJob, directory, state: tp.Optional[dict]) -> dict:
        from harness.data.decode import decoder_provenance
        from harness.run.cell import Progress, cell_runtime, measure_cell, prepare_cell, regime

        _threads_from_slurm(job.cell.config)
        progress = Progress(None)
        config = job.cell.config
        setup = prepare_cell(config, progress, job.cell.store_root)
        listed = setup.dataset.items()
        items = listed[:config["eval"]["limit"]] if config["eval"].get("limit") else listed
        batch_size = config["eval"]["batch_size"]
        start, end = sh.shard_ranges(len(items), job.num_shards, batch_size)[job.shard]
        if state is None or state["range"] != [start, end]:
            for stale in directory.glob(sh.CHUNK_GLOB):
                stale.unlink()
            state = sh.new_state(job.shard, job.num_shards, start, end)
        saved = sh.saved_batches(directory)  # the chunks are the truth (a kill may precede the state update)
        state.update(complete=False, videos_done=sum(saved.values()),
                     chunks=len(list(directory.glob(sh.CHUNK_GLOB))))
        state["runs"].append({"job_id": _job_id(), "restart_count": int(os.environ.get("SLURM_RESTART_COUNT", 0)),
                              "started_at": rec.now(), "resumed_at": state["videos_done"], "predicted": 0,
                              "log": _log_path(), **decoder_provenance(config["dataset"])})  # per node
        sh.write_json(directory / sh.STATE, state)
        print(f"{job.cell.label} [{job.cell.key[:12]}] shard {job.shard}/{job.num_shards}: videos {start}-{end}, "
              f"{state['videos_done']} already saved, run {len(state['runs'])}", flush=True)
        self._writer = sh.PredictionWriter(directory, state, job.save_every_s)
        from harness.measure.speed import reset_peak_memory

        reset_peak_memory(setup.device)
        ev = config["eval"]
        sh.predict_range(setup.model, setup.dataset, items, start=start, end=end, batch_size=batch_size,
                         num_workers=ev.get("num_workers", 0), device=setup.device, writer=self._writer,
                         skip=set(saved), after_batch=_test_pause, context=regime(config, setup.device))
        measure_file = directory.parent / sh.MEASURE
        if job.shard == 0 and not measure_file.is_file():
            measured, flops_check = measure_cell(setup, config, progress)
            sh.write_json(measure_file, {
                "metrics": measured, "flops_check": flops_check, "finetune": setup.finetune,
                "runtime": cell_runtime(setup, config, setup.dataset.manifest(), []),
                "listed_in_annotation": len(listed), **_worker_provenance(), "measured_at": rec.now()})
        state["complete"] = True
        state["runs"][-1]["finished_at"] = rec.now()
        sh.write_json(directory / sh.STATE, state)
        print(f"shard {job.shard}/{job.num_shards} complete: {state['runs'][-1]['predicted']} videos predicted "
              f"in this run", flush=True)
        return state


class FinetuneTask(submitit.helpers.Checkpointable):
    """A fine-tuning run as an array task; a requeued run resumes from its last epoch checkpoint."""

    def __call__(self, config: dict, out_dir: str) -> dict:
        from harness.run.local import run_finetune_job

        _threads_from_slurm({"measure": {"threads": config.get("threads")}})
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
    record = rec.new_record(key, cell["config"], cell["label"], cell["suite"], started_at=_first_start(states))
    record["execution"] = _execution(cell, states)
    measure = sh.read_json(cdir / sh.MEASURE)
    complete = all(s is not None and s.get("complete") for s in states)
    runtime = {}
    if not failures and complete and measure is not None:
        try:
            merged = _merged(cell, dirs, states, measure)
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
    return rec.finish(record, {**_provenance(cell, measure), **runtime})


def _merged(cell: dict, dirs, states, measure: dict) -> dict:
    predictions = sh.load_predictions(dirs)
    num_items = sum(s["videos"] for s in states)
    config = cell["config"]
    merged = sh.merge_predictions(predictions, aggregation=config["dataset"].get("aggregation", "prob"),
                                  num_items=num_items, listed_total=measure["listed_in_annotation"])
    metrics = merged["metrics"]
    metrics.update(measure["metrics"])
    runtime = dict(measure["runtime"], attention_kernel_per_block=list(merged["last_stats"]["attention_kernel"]))
    return {"metrics": metrics, "coverage": merged["coverage"], "flops_check": measure["flops_check"],
            "finetune": measure.get("finetune"), "samples": merged["samples"], "runtime": runtime,
            "duplicates_dropped": merged["duplicates"]}


def _provenance(cell: dict, measure: tp.Optional[dict]) -> dict:
    code = cell.get("code") or {}
    out = {"git_commit": code.get("git_commit"), "git_dirty": code.get("git_dirty"),
           "git_diff_sha256": code.get("git_diff_sha256"), "code_snapshot": code.get("snapshot")}
    if measure is not None:
        out.update({"versions": measure.get("versions"), **measure.get("machine", {}),
                    "code_path": measure.get("code_path"), **measure.get("runtime", {})})
    return out


def _execution(cell: dict, states: list) -> dict:
    shards = [{"shard": i, "range": s["range"], "videos": s["videos"], "videos_done": s["videos_done"],
               "complete": s["complete"], "runs": s["runs"]} if s else {"shard": i, "complete": False}
              for i, s in enumerate(states)]
    return {"executor": "slurm", "submission": cell.get("submission"), "num_shards": cell["num_shards"],
            "shards": shards}


def _first_start(states: list) -> tp.Optional[str]:
    starts = [r["started_at"] for s in states if s for r in s["runs"]]
    return min(starts) if starts else None


def _worker_provenance() -> dict:
    import harness
    from harness.provenance import machine, package_versions

    return {"versions": package_versions(), "machine": machine(),
            "code_path": os.path.dirname(os.path.dirname(os.path.abspath(harness.__file__)))}


def _already_done(job: ShardJob, directory, state: tp.Optional[dict]) -> bool:
    """A complete shard (and, for shard 0, its measurement) needs no model: just the merge."""
    if not (state and state.get("complete") and state.get("num_shards") == job.num_shards):
        return False
    return job.shard != 0 or (directory.parent / sh.MEASURE).is_file()


def _threads_from_slurm(config: dict) -> None:
    """Torch threads = the task's CPUs (Slurm binds none with task/none), unless measure.threads is set."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus and not config["measure"].get("threads"):
        import torch

        torch.set_num_threads(int(cpus))


def _job_id() -> tp.Optional[str]:
    return submitit.JobEnvironment().job_id if os.environ.get("SLURM_JOB_ID") else None


def _log_path() -> tp.Optional[str]:
    if not os.environ.get("SUBMITIT_FOLDER") or not os.environ.get("SLURM_JOB_ID"):
        return None
    return str(submitit.JobEnvironment().paths.stderr)


def _test_pause(batch: int) -> None:
    """``HARNESS_TEST_BATCH_PAUSE_S``: sleep after each batch (tests use it to preempt a task mid-run)."""
    pause = float(os.environ.get("HARNESS_TEST_BATCH_PAUSE_S", 0) or 0)
    if pause > 0:
        time.sleep(pause)
