"""The guard between submitit's local controller and a worker: the worker dies with ``run``, and how it
ended is written down.

submitit's ``LocalExecutor`` starts a controller process that starts the worker; neither stops when the
process that submitted them goes (a killed ``run`` would leave its worker computing under PID 1, and a
prompt rerun would compute the same cell concurrently). ``harness.run.launch.Launcher`` therefore runs every worker
as ``python -m harness.run.guard <submitit's worker command>``. The guard

* starts the worker with ``PR_SET_PDEATHSIG`` (Linux), so the worker dies if the guard dies, and asks
  the same for itself, so it dies if the controller dies;
* watches the ``run`` process named by ``$HARNESS_RUN_PARENT`` (pid and start time, so a reused pid is
  not taken for it) and kills the worker within ``POLL_S`` once it is gone: ``kill -9`` of ``run``
  included, where no signal reaches anything;
* stops the worker on SIGTERM (what ``Launcher.stop`` sends through the controller; submitit's worker
  itself ignores SIGTERM) and forwards SIGUSR1/SIGUSR2/SIGCONT (submitit's time-out signal);
* writes ``<job folder>/<job id>_exit.json`` (return code, signal, why), which ``worker_died`` turns
  into a ``WorkerDied`` error naming what happened instead of submitit's ``UncompletedJobError``.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import typing as tp

PARENT_ENV = "HARNESS_RUN_PARENT"
POLL_S = 0.25
EXIT_SUFFIX = "_exit.json"


class WorkerDied(RuntimeError):
    """The worker process ended without a result: killed by a signal, or exited early."""


def set_pdeathsig(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send ``sig`` to this process when its parent exits (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(sig), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _start_time(pid: int) -> tp.Optional[str]:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks), or None; "Z" for a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return "Z" if fields[0] in ("Z", "X") else fields[19]


def parent_token(pid: tp.Optional[int] = None) -> str:
    """``pid:start time`` of ``pid`` (default: this process), for ``alive``."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{_start_time(pid) or ''}"


def alive(token: str) -> bool:
    """Whether the process of ``token`` (``parent_token``) still runs (a zombie or a reused pid: no)."""
    pid_text, _, start = token.partition(":")
    pid = int(pid_text)
    if os.path.isdir("/proc/self"):
        return _start_time(pid) not in (None, "Z") and (not start or _start_time(pid) == start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def exit_path(folder: str, job_id: str) -> str:
    return os.path.join(folder, f"{job_id}{EXIT_SUFFIX}")


def main(argv: tp.Sequence[str]) -> int:
    """Run ``python *argv`` (submitit's worker) under the guard; returns its exit status."""
    set_pdeathsig()
    token = os.environ.get(PARENT_ENV)
    worker = subprocess.Popen([sys.executable, *argv], preexec_fn=set_pdeathsig)
    why: tp.List[str] = []

    def stop(signum, frame):  # the controller forwards SIGTERM: a cancelled job
        why.append(f"stopped: the guard got {signal.Signals(signum).name}")
        worker.kill()

    signal.signal(signal.SIGTERM, stop)

    def forward(signum, frame):  # submitit's time-out / preemption signal: the worker checkpoints on it
        worker.send_signal(signum)

    for name in ("SIGUSR1", "SIGUSR2", "SIGCONT"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), forward)
    while True:
        try:
            code = worker.wait(timeout=POLL_S)
            break
        except subprocess.TimeoutExpired:
            if token and not alive(token):
                why.append(f"stopped: the run process {token.split(':')[0]} is gone")
                worker.kill()
    folder = _job_folder(argv)
    if folder is not None:
        try:
            with open(exit_path(folder, os.environ.get("SUBMITIT_LOCAL_JOB_ID", "?")), "w") as f:
                json.dump({"returncode": code, "pid": worker.pid, "why": "; ".join(why) or None,
                           "at": time.time()}, f)
        except OSError:
            pass
    return 128 - code if code < 0 else code


def _job_folder(argv: tp.Sequence[str]) -> tp.Optional[str]:
    try:
        from submitit.core.utils import JobPaths

        return str(JobPaths(argv[-1], os.environ["SUBMITIT_LOCAL_JOB_ID"], 0).folder)
    except (KeyError, IndexError, ImportError):
        return None


def worker_died(job) -> tp.Optional[WorkerDied]:
    """What the guard recorded about ``job``'s worker (a submitit ``LocalJob``) if it ended without a result."""
    from harness.files import read_json

    try:
        info = read_json(exit_path(str(job.paths.folder), str(job.job_id)), 1 << 16, what="worker exit file")
    except ValueError:
        return None
    if not isinstance(info, dict):
        return None
    code = info.get("returncode")
    if not isinstance(code, int) or code == 0:
        return None
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else "?"
        what = f"worker process {info.get('pid')} died (signal {-code}, {name})"
        if -code == signal.SIGKILL and not info.get("why"):
            what += ": killed from outside, e.g. `kill -9` or the out-of-memory killer (see `dmesg`)"
    else:
        what = f"worker process {info.get('pid')} exited with code {code} without a result"
    from harness.files import last_error_line

    last = last_error_line(job.paths.stderr)
    return WorkerDied(what + (f"; {info['why']}" if info.get("why") else "") + (f"; last error: {last}" if last else "")
                      + f"; log: {job.paths.stderr}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
