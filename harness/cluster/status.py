"""Follow submitted cells: the store, the shard folders and the scheduler (torch-free).

``sync_store`` turns what the scheduler knows into records: a task that left the queue without
completing its shard (killed, out of memory, time limit, cancelled, node failure, or gone while
accounting is off) gets ``failed.json`` with its Slurm state, exit code and log path, and its
cell a failed record, so nothing waits for a result that will never come. A cell whose shards are
all complete but whose merge never ran (its last task died in between) is merged (this, and only
this, imports torch). ``cell_rows`` then reports every cell: ``ok``, ``failed: <type>``,
``running``/``pending``/``requeued`` (with shards and videos done), ``partial``, ``not submitted``; a
task of a shared-decoding group counts for each of its cells.
"""
from __future__ import annotations

import getpass
import os
import re
import subprocess
import time
import typing as tp

from harness.cluster import shards as sh
from harness.layout import Layout

ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SUSPENDED",
          "CONFIGURING", "COMPLETING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD", "SPECIAL_EXIT"}
SUBMISSION_FILE = "submission.json"


# --- submissions --------------------------------------------------------------------------------

def load_submissions(store_root: str) -> tp.List[dict]:
    """Every ``<results>/slurm/*/submission.json``, oldest first."""
    folder = Layout(store_root).submissions
    subs = [s for s in (sh.read_json(p) for p in folder.glob(f"*/{SUBMISSION_FILE}")) if s]
    return sorted(subs, key=lambda s: (s.get("submitted_at") or "", s.get("id") or ""))


def latest_tasks(submissions: tp.Sequence[dict]) -> tp.Dict[tp.Tuple[str, str], tp.List[dict]]:
    """``{(kind, key): tasks}`` from the latest submission that holds each cell / fine-tune. A task of a
    shared-decoding group (``keys``, ``labels``: its cells) is listed under each of its cells, as
    ``{..., "key": that cell, "label": its label}``."""
    out: tp.Dict[tp.Tuple[str, str], tp.List[dict]] = {}
    for sub in submissions:
        mine: tp.Dict[tp.Tuple[str, str], tp.List[dict]] = {}
        for task in sub.get("tasks", []):
            keys, labels = task.get("keys", [task.get("key")]), task.get("labels", [task.get("label")])
            for key, label in zip(keys, labels):
                mine.setdefault((task["kind"], key), []).append({**task, "key": key, "label": label,
                                                                 "submission": sub["id"]})
        out.update(mine)
    return out


# --- the scheduler ------------------------------------------------------------------------------

class SchedulerView:
    """Job states from ``squeue`` (queued and running) and ``sacct`` (finished; needs accounting)."""

    def __init__(self, job_ids: tp.Iterable[str], env: tp.Optional[dict] = None):
        self.env = env
        arrays = sorted({str(j).split("_")[0] for j in job_ids})
        self.states: tp.Dict[str, dict] = {}
        self.squeue_ok = self.sacct_ok = False
        self.problem: tp.Optional[str] = None
        if arrays:
            self._sacct(arrays)
            self._squeue()

    def _call(self, cmd: tp.List[str]) -> tp.Optional[str]:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=self.env)
        except (OSError, subprocess.SubprocessError) as err:
            self.problem = f"{cmd[0]}: {err}"
            return None
        if proc.returncode != 0:
            self.problem = f"{cmd[0]}: {proc.stderr.strip() or 'exit ' + str(proc.returncode)}"
            return None
        return proc.stdout

    def _sacct(self, arrays: tp.List[str]) -> None:
        text = self._call(["sacct", "-X", "-n", "-P", "-j", ",".join(arrays),
                           "-o", "JobID,State,ExitCode,Submit,Start,End,Reason"])
        if text is None:
            return
        self.sacct_ok = True
        for line in text.splitlines():
            parts = line.split("|")
            if len(parts) < 7:
                continue
            for job_id in expand_job_ids(parts[0]):
                self.states[job_id] = {"state": parts[1].split()[0] if parts[1] else "UNKNOWN",
                                       "exit_code": parts[2], "submit": parts[3], "start": parts[4],
                                       "end": parts[5], "reason": parts[6], "source": "sacct"}

    def _squeue(self) -> None:
        text = self._call(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%T|%r"])
        if text is None:
            return
        self.squeue_ok = True
        for line in text.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 3:
                for job_id in expand_job_ids(parts[0]):
                    entry = self.states.setdefault(job_id, {})
                    entry.update(state=parts[1], reason=parts[2], source="squeue", queued=True)

    def state(self, job_id: str) -> tp.Optional[dict]:
        return self.states.get(str(job_id))

    def is_active(self, job_id: str) -> bool:
        """Queued or running: in squeue when squeue answered (sacct lags), else by sacct's state."""
        info = self.state(job_id) or {}
        if self.squeue_ok:
            return bool(info.get("queued"))
        return info.get("state") in ACTIVE

    def can_judge(self) -> bool:
        """Whether a job missing from squeue can be taken as gone (squeue answered)."""
        return self.squeue_ok


_ARRAY_RE = re.compile(r"^(\d+)_\[([^\]]+)\]$")


def expand_job_ids(text: str) -> tp.List[str]:
    """``"12_[0-2,5%4]"`` -> ``["12_0", "12_1", "12_2", "12_5"]``; other ids unchanged."""
    m = _ARRAY_RE.match(text.strip())
    if not m:
        return [text.strip()]
    out = []
    for part in m.group(2).split("%")[0].split(","):
        lo, _, hi = part.partition("-")
        out.extend(f"{m.group(1)}_{i}" for i in range(int(lo), int(hi or lo) + 1))
    return out


# --- syncing the store --------------------------------------------------------------------------

def sync_store(store_root: str, view: tp.Optional[SchedulerView] = None,
               submissions: tp.Optional[tp.List[dict]] = None) -> tp.List[str]:
    """Record lost tasks as failures and merge complete-but-unmerged cells; returns what it did."""
    from harness.store import ResultStore

    submissions = load_submissions(store_root) if submissions is None else submissions
    if not submissions:
        return []
    tasks = latest_tasks(submissions)
    if view is None:  # ask the scheduler only about tasks whose shard is neither complete nor failed
        open_ids = [t["job_id"] for (kind, _), ts in tasks.items() if kind == "cell" for t in ts if _open(store_root, t)]
        view = SchedulerView(open_ids, scheduler_env(submissions))
    store, actions = ResultStore(store_root), []
    for (kind, key), ts in tasks.items():
        if kind != "cell":
            continue
        changed = False
        for task in ts:
            if _record_lost(store_root, task, view):
                changed = True
                actions.append(f"{task['label']} shard {task['shard']}: job {task['job_id']} lost")
        record = store.read(key)
        if changed or (record is not None and record.get("status") == "partial" and _all_complete(store_root, key)) \
                or (record is None and _all_complete(store_root, key)):
            from harness.cluster.worker import finalize_cell

            new = finalize_cell(store_root, key)
            actions.append(f"{ts[0]['label']}: {new['status']}")
    return actions


def _open(store_root: str, task: dict) -> bool:
    d = sh.shard_dir(sh.cell_dir(store_root, task["key"]), task["shard"], task["num_shards"])
    return not (sh.load_state(d) or {}).get("complete") and not (d / sh.FAILED).is_file()


def _record_lost(store_root: str, task: dict, view: SchedulerView) -> bool:
    """Write ``failed.json`` for a task that left the queue without finishing its shard."""
    d = sh.shard_dir(sh.cell_dir(store_root, task["key"]), task["shard"], task["num_shards"])
    state = sh.load_state(d)
    if (state and state.get("complete")) or (d / sh.FAILED).is_file() or view.is_active(task["job_id"]):
        return False
    info = view.state(task["job_id"])
    if info is None and not view.can_judge():
        return False  # the scheduler did not answer: judge nothing
    log = task.get("stderr")
    if info is not None and info.get("state") and info["state"] not in ACTIVE:
        kind = info["state"]
        reason = info.get("reason") if info.get("reason") not in (None, "", "None") else None
        message = (f"job {task['job_id']} ended {info['state']} (exit code {info.get('exit_code') or '?'}"
                   f"{', reason ' + reason if reason else ''}) without finishing shard {task['shard']}")
    else:
        kind = "JobLost"
        message = (f"job {task['job_id']} left the queue without finishing shard {task['shard']} "
                   f"(no accounting record: killed, out of memory or cancelled)")
    tail = _log_tail(log)
    if tail:
        message += f"; log ends: {tail}"
    sh.write_json(d / sh.FAILED, {"shard": task["shard"], "type": kind, "message": message, "traceback": None,
                                  "log": log, "job_id": task["job_id"], "slurm": info})
    return True


def _all_complete(store_root: str, key: str) -> bool:
    cdir = sh.cell_dir(store_root, key)
    cell = sh.read_json(cdir / sh.CELL)
    if cell is None or not (cdir / sh.MEASURE).is_file():
        return False
    n = cell["num_shards"]
    return all((sh.load_state(sh.shard_dir(cdir, i, n)) or {}).get("complete") for i in range(n))


def _log_tail(path: tp.Optional[str], limit: int = 300) -> str:
    """The log's last error line (``harness.files.last_error_line``: the same as a local worker's)."""
    from harness.files import last_error_line

    return last_error_line(path, limit)


def scheduler_env(submissions: tp.Sequence[dict]) -> tp.Optional[dict]:
    """The environment of squeue/sacct/scancel: the latest submission's SLURM_CONF (its profile's), unless the
    shell sets one (None: this process's)."""
    conf = (submissions[-1].get("profile") or {}).get("slurm_conf") if submissions else None
    if conf and not os.environ.get("SLURM_CONF"):
        return {**os.environ, "SLURM_CONF": conf}
    return None


# --- what to show -------------------------------------------------------------------------------

def cell_rows(store_root: str, keys: tp.Optional[tp.Sequence[tp.Tuple[str, str]]] = None,
              sync: bool = True) -> tp.Tuple[tp.List[dict], tp.Optional[str]]:
    """One row per cell (``keys``: ``(key, label)`` of a suite; default: every submitted cell) and a
    note about the scheduler (None when it answered)."""
    from harness.store import ResultStore

    submissions = load_submissions(store_root)
    tasks = latest_tasks(submissions)
    view = SchedulerView([t["job_id"] for ts in tasks.values() for t in ts], scheduler_env(submissions))
    if sync:
        sync_store(store_root, view, submissions)
    store = ResultStore(store_root)
    if keys is None:
        keys = [(key, ts[0]["label"]) for (kind, key), ts in tasks.items()]
        kinds = {key: kind for (kind, key) in tasks}
    else:
        kinds = {}
    rows = []
    for key, label in keys:
        kind = kinds.get(key, "cell")
        ts = tasks.get((kind, key), [])
        rows.append(_finetune_row(store_root, key, label, ts, view) if kind == "finetune"
                    else _cell_row(store_root, store, key, label, ts, view))
    note = None if view.squeue_ok or not tasks else f"scheduler not reachable ({view.problem})"
    if note is None and tasks and not view.sacct_ok:
        note = f"no accounting ({view.problem}): jobs that left the queue are judged by their shard files"
    return rows, note


def _cell_row(store_root: str, store, key: str, label: str, tasks: tp.List[dict], view: SchedulerView) -> dict:
    record = store.read(key)
    status = (record or {}).get("status")
    cdir = sh.cell_dir(store_root, key)
    n = tasks[0]["num_shards"] if tasks else ((sh.read_json(cdir / sh.CELL) or {}).get("num_shards") or 1)
    states = [sh.load_state(sh.shard_dir(cdir, i, n)) for i in range(n)]
    done = sum(1 for s in states if s and s.get("complete"))
    videos = sum((s or {}).get("videos_done", 0) for s in states)
    total = sum((s or {}).get("videos", 0) for s in states)
    active = [t for t in tasks if view.is_active(t["job_id"])]
    row = {"label": label, "key": key[:12], "shards": f"{done}/{n}" if tasks else "-",
           "videos": f"{videos}/{total}" if total else "-", "jobs": _compact([t["job_id"] for t in tasks]),
           "detail": ""}
    if active:
        states_now = sorted({view.state(t["job_id"]).get("state", "?") for t in active})
        row["state"] = "/".join(s.lower() for s in states_now)
        reasons = {view.state(t["job_id"]).get("reason") for t in active} - {None, "", "None"}
        row["detail"] = ", ".join(sorted(reasons))
        restarts = sum(max(0, len((s or {}).get("runs", [])) - 1) for s in states)
        if restarts:
            row["detail"] = (row["detail"] + f"; {restarts} resumed run(s)").lstrip("; ")
    elif status == "ok":
        row["state"] = "ok"
        top1 = (record.get("metrics") or {}).get("top1")
        row["detail"] = f"top-1 {100 * top1:.1f}%" if isinstance(top1, (int, float)) else ""
    elif status == "failed":
        error = record.get("error") or {}
        row["state"] = f"failed: {error.get('type') or '?'}"
        row["detail"] = (str(error.get("message") or "").splitlines() or [""])[0][:120]
        if error.get("log"):
            row["detail"] += f" (log: {error['log']})"
    elif status:
        row["state"] = str(status)
    else:
        row["state"] = "not submitted" if not tasks else "unknown"
    return row


def _finetune_row(store_root: str, key: str, label: str, tasks: tp.List[dict], view: SchedulerView) -> dict:
    from harness.training import epochs_done, is_complete, run_dir as finetune_dir

    run_dir = finetune_dir(store_root, key)
    complete, epochs = is_complete(run_dir), epochs_done(run_dir)
    row = {"label": label, "key": key[:12], "shards": "-", "videos": f"{epochs} epochs",
           "jobs": _compact([t["job_id"] for t in tasks]), "detail": ""}
    info = view.state(tasks[0]["job_id"]) if tasks else None
    if complete:
        row["state"] = "ok"
    elif tasks and view.is_active(tasks[0]["job_id"]):
        row["state"] = (info or {}).get("state", "?").lower()
    elif info is not None:
        row["state"] = f"failed: {info.get('state')}"
        row["detail"] = f"log: {tasks[0].get('stderr')}"
    else:
        row["state"] = "unknown"
    return row


def _compact(job_ids: tp.List[str]) -> str:
    """``["12_0", "12_1", "12_2"]`` -> ``"12_[0-2]"``."""
    if not job_ids:
        return "-"
    by_array: tp.Dict[str, tp.List[int]] = {}
    plain = []
    for j in job_ids:
        a, sep, t = str(j).partition("_")
        if sep and t.isdigit():
            by_array.setdefault(a, []).append(int(t))
        else:
            plain.append(str(j))
    parts = plain[:]
    for a, ts in by_array.items():
        ts = sorted(ts)
        ranges, start = [], ts[0]
        for prev, cur in zip(ts, ts[1:] + [None]):
            if cur != prev + 1:
                ranges.append(f"{start}-{prev}" if prev != start else f"{start}")
                start = cur
        parts.append(f"{a}_[{','.join(ranges)}]" if len(ts) > 1 else f"{a}_{ts[0]}")
    return ",".join(parts)


def is_settled(rows: tp.Sequence[dict]) -> bool:
    """No row is still queued or running."""
    return all(r["state"] in ("ok", "not submitted", "partial", "unknown") or r["state"].startswith("failed")
               for r in rows)


def format_rows(rows: tp.Sequence[dict], note: tp.Optional[str] = None) -> str:
    from tabulate import tabulate

    from harness.report.safe import term

    table = tabulate([tuple(term("" if v is None else v) for v in (r["label"], r["key"], r["state"], r["shards"],
                                                                   r["videos"], r["jobs"], r["detail"]))
                      for r in rows], headers=["cell", "key", "state", "shards", "videos", "jobs", "detail"],
                     disable_numparse=True)
    summary = f"{len(rows)} cells: {state_counts(rows)}"
    return "\n".join([table, summary] + ([f"note: {term(note)}"] if note else []))


def state_counts(rows: tp.Sequence[dict]) -> str:
    """``"1 failed, 2 ok, 3 running"``: how many cells are in each state (the part before a colon)."""
    counts: tp.Dict[str, int] = {}
    for r in rows:
        counts[r["state"].split(":")[0]] = counts.get(r["state"].split(":")[0], 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def progress_line(rows: tp.Sequence[dict]) -> str:
    """One line of progress while waiting: the state counts and, once tasks report them, the videos done."""
    from harness.report.safe import plain

    done = total = 0
    for r in rows:
        d, sep, t = str(r.get("videos", "")).partition("/")
        if sep and d.isdigit() and t.isdigit():
            done, total = done + int(d), total + int(t)
    return plain(state_counts(rows) + (f"; videos {done}/{total}" if total else ""))


def wait(store_root: str, keys=None, *, poll_s: float = 2.0, timeout_s: tp.Optional[float] = None,
         on_poll: tp.Optional[tp.Callable[[tp.List[dict]], None]] = None) -> tp.Tuple[tp.List[dict], tp.Optional[str]]:
    """Poll ``cell_rows`` until every cell is settled (or ``timeout_s``); returns the last rows."""
    start = time.monotonic()
    while True:
        rows, note = cell_rows(store_root, keys)
        if on_poll is not None:
            on_poll(rows)
        if is_settled(rows) or (timeout_s is not None and time.monotonic() - start > timeout_s):
            return rows, note
        time.sleep(poll_s)
