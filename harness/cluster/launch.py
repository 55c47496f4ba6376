"""The Slurm launcher: the same start / watch / stop as ``harness.run.launch``'s, for a submission.

    launch = SlurmLauncher("results", profile, num_shards=2)
    sub = launch.start(suite)                 # submit_suite: job arrays, fine-tunes first; returns at once
    rows, note = launch.watch(sub, show)      # poll store + squeue/sacct until every cell is settled
    launch.stop(sub)                          # scancel the submission's queued and running tasks

``start`` is ``slurm_executor.submit_suite`` (its output, ``submission.json`` and the records are its own).
``watch`` is ``status.wait``: each poll syncs the store (a task that left the queue unfinished becomes a
failed record), so it ends however the tasks end; a Ctrl-C while watching only stops the watching, the
jobs keep running (``harness run --executor slurm --wait`` says so and how to follow or cancel them).
``stop`` cancels exactly the submission's tasks that the scheduler shows queued or running and waits
until they have left the queue; the next sync records their unfinished cells as ``failed: CANCELLED``.
Torch-free, like ``status``.
"""
from __future__ import annotations

import subprocess
import time
import typing as tp

from harness.cluster import status as st

POLL_S = 5.0  # seconds between two looks at the store and the scheduler while watching


class CancelFailed(RuntimeError):
    """``scancel`` (or the ``squeue`` before it) did not answer as expected."""


class SlurmLauncher:
    """Submits a suite to Slurm (``start``), follows the submission (``watch``) and cancels it (``stop``)."""

    name = "slurm"
    inline = False

    def __init__(self, store_root: str = "results", profile=None, *, num_shards: int = 1, force: bool = False,
                 executor_factory=None, out: tp.Optional[tp.TextIO] = None, poll_s: float = POLL_S):
        self.store_root, self.profile, self.num_shards, self.force = store_root, profile, num_shards, force
        self.executor_factory, self.out, self.poll_s = executor_factory, out, poll_s

    def start(self, suite):
        """Submit ``suite``'s unfinished cells; the ``Submission`` (``slurm_executor.submit_suite``)."""
        from harness.cluster.slurm_executor import submit_suite

        return submit_suite(suite, profile=self.profile, store_root=self.store_root, force=self.force,
                            num_shards=self.num_shards, out=self.out, executor_factory=self.executor_factory)

    def watch(self, sub, poll: tp.Optional[tp.Callable[[tp.List[dict]], None]] = None, *,
              keys: tp.Optional[tp.Sequence[tp.Tuple[str, str]]] = None,
              timeout_s: tp.Optional[float] = None) -> tp.Tuple[tp.List[dict], tp.Optional[str]]:
        """Block until every cell of ``sub`` (or ``keys``: ``(key, label)``) is settled, calling ``poll`` with
        the rows after each look; the last rows (``status.cell_rows``) and the scheduler note."""
        keys = cells_of(sub) if keys is None else list(keys)
        if not keys:
            return [], None
        return st.wait(self.store_root, keys, poll_s=self.poll_s, timeout_s=timeout_s, on_poll=poll)

    def stop(self, sub, wait_s: float = 60.0) -> tp.List[str]:
        """Cancel the tasks of ``sub`` that are queued or running (``scancel`` with their ids, nothing else);
        wait up to ``wait_s`` until they have left the queue and accounting shows how they ended. Returns
        the ids cancelled (empty: nothing was queued or running)."""
        record = as_record(sub)
        ids = [str(t["job_id"]) for t in record.get("tasks", [])]
        if not ids:
            return []
        env = st.scheduler_env([record])
        view = st.SchedulerView(ids, env)
        if not view.can_judge():
            raise CancelFailed(f"cannot see the queue, nothing cancelled ({view.problem})")
        active = [j for j in ids if view.is_active(j)]
        if not active:
            return []
        try:
            proc = subprocess.run(["scancel", *active], capture_output=True, text=True, timeout=60, env=env)
        except (OSError, subprocess.SubprocessError) as err:
            raise CancelFailed(f"scancel: {err}") from None
        # a task may end between squeue and scancel: "already completing or completed" is no failure
        problems = [line for line in proc.stderr.splitlines() if line.strip() and "already completing" not in line]
        if proc.returncode != 0 and (problems or not proc.stderr.strip()):
            raise CancelFailed(f"scancel: {'; '.join(problems) or 'exit ' + str(proc.returncode)}")
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            view = st.SchedulerView(active, env)
            if view.can_judge() and not any(view.is_active(j) or _still_open(view, j) for j in active):
                break
            time.sleep(1.0)
        return active


def progress_printer(out: tp.Optional[tp.TextIO] = None) -> tp.Callable[[tp.List[dict]], None]:
    """A ``watch`` callback: prints ``status.progress_line`` to ``out`` (stderr) when it changes, with the seconds
    since the first call."""
    import sys

    t0, last = time.monotonic(), [None]

    def show(rows: tp.List[dict]) -> None:
        line = st.progress_line(rows)
        if line != last[0]:
            last[0] = line
            print(f"[{time.monotonic() - t0:5.0f}s] {line}", file=out or sys.stderr, flush=True)
    return show


def _still_open(view: st.SchedulerView, job_id: str) -> bool:
    """Accounting still shows ``job_id`` queued or running (it lags the queue by a moment)."""
    info = view.state(job_id) or {}
    return view.sacct_ok and info.get("source") == "sacct" and info.get("state") in st.ACTIVE


def as_record(sub) -> dict:
    """A submission as ``submission.json`` holds it (a ``Submission`` or the dict read back)."""
    return sub if isinstance(sub, dict) else sub.as_record()


def cells_of(sub) -> tp.List[tp.Tuple[str, str]]:
    """``(key, label)`` of each cell of ``sub``, in submission order, once each."""
    out: tp.Dict[str, str] = {}
    for task in as_record(sub).get("tasks", []):
        if task.get("kind") == "cell":
            for key, label in zip(task.get("keys", [task.get("key")]), task.get("labels", [task.get("label")])):
                out.setdefault(key, label)
    return list(out.items())


def find_submission(store_root: str, submission_id: tp.Optional[str] = None,
                    keys: tp.Optional[tp.Sequence[str]] = None) -> tp.Optional[dict]:
    """The submission ``submission_id``; else the latest holding one of ``keys`` (a suite's cells); else the
    latest. None when there is none."""
    subs = st.load_submissions(store_root)
    if submission_id is not None:
        return next((s for s in subs if s.get("id") == submission_id), None)
    if keys is not None:
        wanted = set(keys)
        subs = [s for s in subs if wanted & {k for k, _ in cells_of(s)}]
    return subs[-1] if subs else None


def follow_hint(suite_path: tp.Optional[str], results: str, submission_id: tp.Optional[str]) -> tp.List[str]:
    """The commands that follow a suite's cells and cancel its submission (``submission_id``; None: the latest
    holding the suite's cells), as ``run --executor slurm`` prints them."""
    import os

    from harness.cluster.slurm_executor import _short

    rel = _short(os.path.abspath(results))
    where = "" if rel == "results" else f" --results {rel}"
    suite = f" {_short(str(suite_path))}" if suite_path else ""
    return [f"  follow: python -m harness status{suite}{where} --wait",
            f"  cancel: python -m harness status{suite if submission_id is None else ''}{where} --cancel"
            + (f" --submission {submission_id}" if submission_id else "")]
