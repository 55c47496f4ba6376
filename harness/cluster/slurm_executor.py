"""Submit a suite to Slurm through submitit and return at once.

``submit_suite`` plans the unfinished cells, snapshots the code, writes each cell's ``cell.json``,
and submits one task per (group, shard) as one job array (several when there are more tasks than
the profile's ``max_array_size``), throttled to ``array_parallelism``. A group is the cells that
share one decoding pass (``run.group.plan_groups``, packed under half the task's memory; with
``eval.share_decode: false`` every cell is its own group). Fine-tuning runs the cells need are
submitted first as their own array; the cells that wait for one are split off into groups of their
own and submitted as a separate array per fine-tune, waiting with ``--dependency=afterok:<its
fine-tune task>`` (and cancelled, hence recorded as failed, if it fails), so that one failed
fine-tune holds back only its own cells. Nothing here waits for results: each task writes its cells'
records, ``harness status`` follows them (and ``cluster.launch.SlurmLauncher.watch``, for ``run --wait``).

Everything about one submission lives in ``<results>/slurm/<submission id>/``: ``submission.json``
(cells, shards, job ids, log paths, profile, code snapshot) and submitit's folders, one per task
(``<job>_<task>/``: the sbatch script, pickles, ``*_log.out`` / ``*_log.err``).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import sys
import typing as tp
import uuid
from pathlib import Path

from harness.cluster import shards as sh
from harness.cluster.profiles import SlurmProfile
from harness.cluster.snapshot import CodeSnapshot, job_setup_lines, take_snapshot
from harness.layout import Layout

SUBMISSION_FILE = "submission.json"


@dataclasses.dataclass
class Submission:
    """What ``submit_suite`` did (also written as ``submission.json``)."""

    id: str
    folder: str  # <results>/slurm/<id>
    suite: dict  # name, file
    profile: dict  # the profile's fields
    snapshot: dict  # CodeSnapshot.as_record()
    num_shards: int
    submitted_at: str
    tasks: tp.List[dict] = dataclasses.field(default_factory=list)  # one per array task (cells: keys, labels)
    arrays: tp.List[str] = dataclasses.field(default_factory=list)  # array job ids, in submission order
    skipped: int = 0  # finished cells not submitted
    jobs: tp.List[tp.Any] = dataclasses.field(default_factory=list, repr=False)  # submitit jobs (not saved)

    def job_ids(self) -> tp.List[str]:
        return [t["job_id"] for t in self.tasks]

    def as_record(self) -> dict:
        """What ``submission.json`` holds (every field but the submitit jobs)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "jobs"}


def make_slurm_executor(folder: Path, profile: SlurmProfile, snap: CodeSnapshot, name: str,
                        dependency: tp.Optional[str] = None):
    """A ``submitit.SlurmExecutor`` for ``profile`` whose jobs import the snapshot's code."""
    import submitit

    executor = submitit.SlurmExecutor(folder=str(folder), max_num_timeout=profile.max_timeouts,
                                      python=profile.python)
    extra = {"requeue": True, **profile.sbatch}
    if dependency:
        extra.update({"dependency": dependency, "kill_on_invalid_dep": "yes"})
    executor.update_parameters(**profile.executor_parameters(), job_name=name,
                               setup=[*profile.setup, *job_setup_lines(snap)], additional_parameters=extra)
    return executor


ExecutorFactory = tp.Callable[..., tp.Any]  # (folder, profile, snap, name, dependency) -> submitit executor


def submit_suite(suite, *, profile: SlurmProfile, store_root: str = "results", force: bool = False,
                 num_shards: int = 1, out: tp.Optional[tp.TextIO] = None,
                 executor_factory: tp.Optional[ExecutorFactory] = None) -> Submission:
    """Submit ``suite``'s unfinished cells (and the fine-tunes they need); returns without waiting.
    ``executor_factory`` defaults to ``make_slurm_executor``."""
    from harness.cluster.worker import ShardJob, ShardTask, cell_info
    from harness.run.cell import CellJob
    from harness.run.plan import plan, warn_other_code
    from harness.run.record import now

    if num_shards < 1:
        raise ValueError(f"--shards must be >= 1, got {num_shards}")
    executor_factory = executor_factory or make_slurm_executor
    out = out or sys.stdout
    store_root = os.path.abspath(store_root)
    if profile.slurm_conf:  # sbatch/squeue/scontrol, here and (inherited) in the jobs
        os.environ["SLURM_CONF"] = profile.slurm_conf
    todo, done = plan(suite, store_root, force)
    todo, busy = _not_in_flight(todo, store_root)
    if busy:
        print(f"{len(busy)} cell(s) still queued or running from an earlier submission, not resubmitted: "
              + ", ".join(f"{c.label} ({job})" for c, job in busy[:5]) + (" ..." if len(busy) > 5 else ""), file=out)
    sid = dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + _safe(suite.config.name) + "-" + uuid.uuid4().hex[:4]
    folder = Layout(store_root).submission(sid)
    snap = take_snapshot(store_root)
    sub = Submission(sid, str(folder), {"name": suite.config.name, "file": str(suite.path)},
                     dataclasses.asdict(profile), snap.as_record(), num_shards,
                     now(), skipped=len(done))
    pending = _pending_finetunes(todo, store_root)
    waiting = {ft.key() for ft in pending}
    groups = _task_groups(todo, waiting, profile)
    shared = f" in {len(groups)} shared-decoding group(s)" if len(groups) < len(todo) else ""
    print(f"suite {suite.config.name}: {len(todo) + len(done) + len(busy)} cells, {len(done)} already finished "
          f"(skipped; --force reruns them), {len(busy)} in flight, {len(todo)} to submit{shared} as "
          f"{len(groups) * num_shards} task(s) ({num_shards} shard(s) per {'group' if shared else 'cell'}); "
          f"code snapshot {snap.id}", file=out)
    warn_other_code(done, store_root, out)
    if not todo:
        return sub
    folder.mkdir(parents=True, exist_ok=True)
    ft_dependency = _submit_finetunes(suite, todo, pending, store_root, profile, snap, folder, sub, executor_factory)
    by_dependency: tp.Dict[tp.Optional[str], list] = {}
    for group in groups:
        cells = [CellJob(c, store_root) for c in group]
        jobs = [ShardJob(cells, i, num_shards, profile.save_every_s, snap.as_record(), sid) for i in range(num_shards)]
        for cell in cells:
            _prepare_cell_dir(store_root, cell.key, cell_info(jobs[0], cell), num_shards, force)
        by_dependency.setdefault(ft_dependency.get(_waits_for(group[0], waiting)), []).extend(jobs)
    for dep, jobs in by_dependency.items():
        for chunk in _chunks(jobs, profile.max_array_size):
            executor = executor_factory(folder / "%j", profile, snap, f"harness-{_safe(suite.config.name)}", dep)
            submitted = _submit_array(executor, [(ShardTask(), (job,)) for job in chunk])
            sub.jobs.extend(submitted)
            for job, sjob in zip(chunk, submitted):
                sub.tasks.append({"kind": "cell", "keys": [c.key for c in job.cells],
                                  "labels": [c.label for c in job.cells], "shard": job.shard,
                                  "num_shards": num_shards, **_job_fields(sjob), "depends_on": dep})
            sub.arrays.append(_array_id(submitted[0]))
            write_submission(sub)  # after every array: what is queued is always on record
    _print_submitted(sub, profile, store_root, suite, out)
    return sub


def _task_groups(cells: list, waiting: tp.Set[str], profile: SlurmProfile) -> tp.List[list]:
    """The cells of each array task: ``plan_groups``' shared-decoding groups, packed under
    ``MEMORY_FRACTION`` of the task's memory (``mem_gb``), then split by the fine-tune (of ``waiting``,
    the ones still to train) their cells wait for: a task has one dependency, and a failed fine-tune
    must hold back only its own cells."""
    from harness.run.group import MEMORY_FRACTION, plan_groups

    out = []
    for group in plan_groups(cells, budget=int(MEMORY_FRACTION * profile.mem_gb * 2 ** 30)):
        by_wait: tp.Dict[tp.Optional[str], list] = {}
        for cell in group:
            by_wait.setdefault(_waits_for(cell, waiting), []).append(cell)
        out.extend(by_wait.values())
    return out


def _waits_for(cell, waiting: tp.Set[str]) -> tp.Optional[str]:
    """The key of the fine-tune ``cell`` must wait for (one of ``waiting``), or None."""
    key = cell.finetune_config().key() if cell.finetune else None
    return key if key in waiting else None


def _pending_finetunes(todo, store_root: str) -> list:
    """The fine-tunes ``todo`` needs that are neither finished nor shipped with the repository."""
    from harness.run.plan import distinct_finetunes
    from harness.training import adopt_shipped, is_complete, run_dir as finetune_dir

    return [ft for ft in distinct_finetunes(todo)
            if not is_complete(finetune_dir(store_root, ft.key())) and not adopt_shipped(store_root, ft.key())]


def _submit_finetunes(suite, todo, pending, store_root, profile, snap, folder, sub,
                      executor_factory) -> tp.Dict[str, str]:
    """Submit the ``pending`` fine-tunes ``todo`` needs; ``{finetune key: "afterok:<job>"}``."""
    import dataclasses as dc

    from harness.cluster.worker import FinetuneTask
    from harness.training import run_dir as finetune_dir

    if not pending:
        return {}
    executor = executor_factory(folder / "%j", profile, snap, f"harness-ft-{_safe(suite.config.name)}", None)
    submitted = _submit_array(executor, [(FinetuneTask(), (dc.asdict(ft), os.path.abspath(
        finetune_dir(store_root, ft.key())))) for ft in pending])
    sub.jobs.extend(submitted)
    deps = {}
    names = {c.finetune_config().key(): c.method.finetune["name"] for c in todo if c.finetune}
    for ft, sjob in zip(pending, submitted):
        deps[ft.key()] = f"afterok:{sjob.job_id}"
        sub.tasks.append({"kind": "finetune", "key": ft.key(), "label": f"fine-tune {names.get(ft.key(), ft.method['name'])}",
                          "shard": 0, "num_shards": 1, **_job_fields(sjob), "depends_on": None})
    sub.arrays.append(_array_id(submitted[0]))
    write_submission(sub)
    return deps


def _not_in_flight(cells: list, store_root: str) -> tp.Tuple[list, list]:
    """(cells to submit, [(cell, job id)] of cells whose tasks from an earlier submission are still
    queued or running: two tasks must never write the same shard folder)."""
    from harness.cluster.status import SchedulerView, latest_tasks, load_submissions

    earlier = latest_tasks(load_submissions(store_root))
    tasks = {c.key: earlier.get(("cell", c.key), []) for c in cells}
    ids = [t["job_id"] for ts in tasks.values() for t in ts]
    if not ids:
        return cells, []
    view = SchedulerView(ids)
    free, busy = [], []
    for cell in cells:
        active = [t["job_id"] for t in tasks[cell.key] if view.is_active(t["job_id"])]
        (busy.append((cell, active[0])) if active else free.append(cell))
    return free, busy


def _prepare_cell_dir(store_root: str, key: str, info: dict, num_shards: int, force: bool) -> None:
    """Write ``cell.json``; drop what a rerun must not reuse (``--force``: everything; another shard count:
    the old shard folders; always: old failure markers)."""
    cdir = sh.cell_dir(store_root, key)
    if force and cdir.exists():
        shutil.rmtree(cdir)
    cdir.mkdir(parents=True, exist_ok=True)
    keep = {sh.shard_dir(cdir, i, num_shards).name for i in range(num_shards)}
    for old in cdir.glob("shard-*"):
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)
        else:
            (old / sh.FAILED).unlink(missing_ok=True)
    sh.write_json(cdir / sh.CELL, info)


def _submit_array(executor, calls: tp.Sequence[tp.Tuple[tp.Callable, tuple]]) -> list:
    with executor.batch():
        jobs = [executor.submit(fn, *args) for fn, args in calls]
    return jobs


def _chunks(items: list, size: int) -> tp.Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _job_fields(job) -> dict:
    return {"job_id": str(job.job_id), "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr)}


def _array_id(job) -> str:
    return str(job.job_id).split("_")[0]


def _short(path: str) -> str:
    """``path`` relative to the working directory when it lies below it, else absolute."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:40] or "suite"


def write_submission(sub: Submission) -> Path:
    path = Path(sub.folder) / SUBMISSION_FILE
    sh.write_json(path, sub.as_record())
    return path


def _print_submitted(sub: Submission, profile: SlurmProfile, store_root: str, suite, out: tp.TextIO) -> None:
    arrays = ", ".join(sub.arrays)
    print(f"submitted {len(sub.tasks)} task(s) as job array(s) {arrays} to partition "
          f"{profile.partition or '(default)'} with profile {profile.name!r}; submission {sub.id}", file=out)
    rel = _short(store_root)
    results = "" if rel == "results" else f" --results {rel}"
    print("follow them with:", file=out)
    if profile.slurm_conf and os.environ.get("SLURM_CONF") == profile.slurm_conf:
        print(f"  export SLURM_CONF={profile.slurm_conf}   # for squeue/sacct in your shell", file=out)
    print(f"  python -m harness status {_short(str(suite.path))}{results}        (add --wait to block)", file=out)
    print(f"  squeue -j {','.join(sub.arrays)}", file=out)
    print(f"  logs: {sub.folder}/<job>_<task>/", file=out)
    print(f"  python -m harness report{results}   when they are done", file=out)
