"""How a task is started and watched: the launchers. What runs is the same whichever launches it (a group of
cells: ``harness.run.task.run_group``; a fine-tune: ``harness.run.local.run_finetune_job``).

    launch = launcher("local", Layout(store_root).job_logs())
    job = launch.start(run_group, jobs, launch.callback(show))   # show(stage, done, total): inline progress
    records = launch.watch(job, poll=read_progress_file)         # blocks; Ctrl-C stops the job

* ``debug`` (``InlineLauncher``): the task runs in this process when watched; progress arrives by callback.
* ``local`` (``LocalLauncher``): a fresh worker process per task under ``harness.run.guard`` (it dies with
  ``run``, however ``run`` ends), its progress file polled twice a second; Ctrl-C or SIGTERM of ``run`` stops
  the worker, and a worker that dies is reported as such (``harness.run.guard.worker_died``).
* ``slurm`` (``harness.cluster.launch.SlurmLauncher``, in ``cluster/`` since ``run/`` does not import it): start
  submits a suite as job arrays (``cluster.slurm_executor.submit_suite``), watch follows its cells through the
  store and squeue/sacct until they settle (``run --wait``; ``harness status`` otherwise), stop scancels its
  tasks (``harness status --cancel``). Its task, ``cluster.worker.ShardTask``, runs the same ``GroupTask``.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
import typing as tp
from pathlib import Path

EXECUTORS = ("local", "debug")
POLL_S = 0.5  # how often a watched local job's progress is read


class Launcher:
    """Starts a task in a worker process and watches it (the ``local`` executor)."""

    name = "local"
    inline = False

    def __init__(self, folder: tp.Union[str, Path]):
        self.folder = Path(folder)
        self.executor = self._executor()

    def _executor(self):
        import shlex

        import submitit

        from harness.run.guard import PARENT_ENV, parent_token

        os.environ[PARENT_ENV] = parent_token()  # inherited by the controller and the guard
        executor = submitit.LocalExecutor(folder=str(self.folder),
                                          python=f"{shlex.quote(sys.executable)} -m harness.run.guard")
        executor.update_parameters(timeout_min=24 * 60)
        return executor

    def callback(self, show: tp.Callable[[str, int, int], None]) -> tp.Optional[tp.Callable]:
        """What to hand the task as its progress callback: nothing for a worker process (its progress file is
        polled instead), ``show`` itself inline."""
        return show if self.inline else None

    def start(self, fn: tp.Callable, *args: tp.Any):
        """``fn(*args)`` as a job. The controller starts with SIGINT ignored, so that a Ctrl-C reaches only
        ``run``, which then stops the job itself (``stop``) instead of submitit's controller dying with a
        traceback on the terminal."""
        if threading.current_thread() is not threading.main_thread():
            return self.executor.submit(fn, *args)
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            return self.executor.submit(fn, *args)
        finally:
            signal.signal(signal.SIGINT, previous)

    def watch(self, job, poll: tp.Callable[[], None] = lambda: None) -> tp.Any:
        """Block until ``job`` ends, calling ``poll`` every ``POLL_S`` (progress); its result, or its error
        raised. A KeyboardInterrupt (Ctrl-C, or SIGTERM of ``run``) stops the job first."""
        try:
            while not job.done():
                poll()
                time.sleep(POLL_S)
            poll()
        except KeyboardInterrupt:
            self.stop(job)
            raise
        return job.result()

    @staticmethod
    def stop(job, wait_s: float = 10.0) -> None:
        """Stop a local job now: SIGTERM to its controller, which forwards it to the guard, which kills the
        worker; the controller then exits. SIGKILL to the controller if it is still there after ``wait_s``."""
        try:
            pid = int(job.job_id)
        except (TypeError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + wait_s
            while not job.done() and time.monotonic() < deadline:
                time.sleep(0.1)
            if not job.done():
                os.kill(pid, signal.SIGKILL)  # the guard dies with it (parent-death signal), the worker with that
        except (ProcessLookupError, PermissionError):
            pass


class InlineLauncher(Launcher):
    """The task in this process (the ``debug`` executor), run when watched; errors propagate as they are."""

    name = "debug"
    inline = True

    def _executor(self):
        import submitit

        return submitit.DebugExecutor(folder=str(self.folder))

    def start(self, fn: tp.Callable, *args: tp.Any):
        return self.executor.submit(fn, *args)

    def watch(self, job, poll: tp.Callable[[], None] = lambda: None) -> tp.Any:
        return job.result()


def launcher(kind: str, folder: tp.Union[str, Path]) -> Launcher:
    """The launcher of ``run --executor KIND`` (``local`` or ``debug``)."""
    kinds = {"local": Launcher, "debug": InlineLauncher}
    if kind not in kinds:
        raise ValueError(f"unknown executor {kind!r}; choose one of {', '.join(EXECUTORS)}")
    return kinds[kind](folder)
