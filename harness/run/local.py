"""Run a suite's cells through a launcher (``harness.run.launch``: inline or a local worker process), one
shared-decoding group at a time, skipping finished ones; train the fine-tunes they need first.

Cells run sequentially so that throughput and memory are never measured while another cell
competes for the same cores. ``local`` runs each cell in a fresh process (clean peak-memory
figures, no state leaking between methods); ``debug`` runs in this process (for debugging).

A local worker runs under ``harness.run.guard``: it dies with this process (SIGINT, SIGTERM or
``kill -9`` of ``run``), and a worker that dies says how (``WorkerDied``). Each cell is locked
(``<results>/locks/<key>.lock``) while a run computes it, so a second run of the same suite skips it
instead of computing it twice, and says so.
"""
from __future__ import annotations

import json
import os
import sys
import time
import typing as tp
from harness.layout import Layout, writes_for
from harness.run.launch import EXECUTORS as EXECUTORS, Launcher, launcher

RUN_FOLDERS = writes_for("run")  # what the local `run` writes under its results directory (harness.layout)
PROGRESS_EVERY_S = 0.5  # a fine-tuning worker's progress file is rewritten at most this often


class NotWritable(OSError):
    """A results folder that cannot be written: found before any compute (``check_writable``)."""


def check_writable(store_root: str, folders: tp.Sequence[str] = RUN_FOLDERS) -> None:
    """Raise ``NotWritable`` naming the first of ``store_root``/``folders`` that cannot be created or written.

    Each folder is created if missing, then a temporary file is created and removed in it: an actual write,
    not only ``os.access`` (which root passes whatever the mode bits, and which misses read-only mounts).
    The folders stay (never removed again: a concurrent run may be using them)."""
    import tempfile

    for sub in folders:
        folder = str(Layout(store_root).folder(sub))
        try:
            os.makedirs(folder, exist_ok=True)
            if not os.access(folder, os.W_OK | os.X_OK):
                raise PermissionError(13, "permission denied")
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".write-check-")
            os.close(fd)
            os.remove(tmp)
        except OSError as err:
            reason = err.strerror or str(err)
            raise NotWritable(f"results folder {folder} is not writable ({reason}); records, logs and fine-tunes "
                              "are written there: fix its permissions or pass --results DIR") from None


class CellLocks:
    """Per-cell locks under ``<results>/locks/``: ``<key>.lock`` (``filelock``: released by the kernel when
    the holding process dies, however it dies) and ``<key>.owner`` (pid, host, start) to say who holds it."""

    def __init__(self, store_root: str):
        self.dir = str(Layout(store_root).locks)
        self.held: tp.Dict[str, tp.Any] = {}

    def acquire(self, key: str) -> tp.Optional[dict]:
        """Take the lock of ``key`` without waiting: None when taken, else the holder's owner info."""
        import filelock

        os.makedirs(self.dir, exist_ok=True)
        lock = filelock.FileLock(os.path.join(self.dir, f"{key}.lock"))
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            try:
                with open(os.path.join(self.dir, f"{key}.owner")) as f:
                    return json.load(f)
            except (OSError, ValueError):
                return {"pid": "?"}
        self.held[key] = lock
        import socket

        from harness.run import record as rec

        tmp = os.path.join(self.dir, f".{key}.owner.{os.getpid()}")
        with open(tmp, "w") as f:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(), "since": rec.now()}, f)
        os.replace(tmp, os.path.join(self.dir, f"{key}.owner"))
        return None

    def release(self, key: str) -> None:
        lock = self.held.pop(key, None)
        if lock is not None:
            try:
                os.remove(os.path.join(self.dir, f"{key}.owner"))
            except OSError:
                pass
            lock.release()

    def release_all(self) -> None:
        for key in list(self.held):
            self.release(key)


def run_finetune_job(config: dict, out_dir: str, progress_file: tp.Optional[str] = None) -> dict:
    """Worker entry point: train (or resume) one fine-tuning run; returns its meta. With ``progress_file``,
    writes ``{"stage", "done", "total", "eta_s"}`` (optimiser steps; ETA from this session's own rate of
    training) there at most every ``PROGRESS_EVERY_S``."""
    from harness.training import FineTuneConfig, finetune

    state = {"total": 0, "t0": time.monotonic(), "last": 0.0}

    def write(done: int, eta: tp.Optional[float]) -> None:
        if progress_file is None:
            return
        tmp = f"{progress_file}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump({"stage": "train", "done": done, "total": state["total"], "eta_s": eta}, f)
        os.replace(tmp, progress_file)

    def on_plan(start: int, total: int) -> None:
        state.update(total=total, t0=time.monotonic())
        write(start, None)

    def on_step(steps_this_call: int, step: int) -> None:
        now = time.monotonic()
        if now - state["last"] >= PROGRESS_EVERY_S or step == state["total"]:
            state["last"] = now
            write(step, (state["total"] - step) * (now - state["t0"]) / steps_this_call)

    return finetune(FineTuneConfig(**config), out_dir, progress=False, on_step=on_step, on_plan=on_plan)


def run_finetunes(suite, *, executor: str = "local", store_root: str = "results",
                  out: tp.Optional[tp.TextIO] = None, needed_by: tp.Optional[list] = None,
                  force: bool = False) -> tp.Dict[str, dict]:
    """Train every fine-tune the suite's cells (or ``needed_by`` cells) use and that has not finished.

    A run shipped with the repository under the same key (``harness.training.SHIPPED``) is copied into
    the store instead of trained, unless ``force`` (which retrains every run from scratch). An
    interrupted run resumes from its last epoch checkpoint. Returns ``{key: meta or {"error": ...}}``.
    """
    from harness.run.plan import distinct_finetunes
    import shutil

    from harness.training import adopt_shipped, is_complete, run_dir as finetune_dir

    out = out or sys.stdout
    configs = suite.finetunes() if needed_by is None else distinct_finetunes(needed_by)
    results: tp.Dict[str, dict] = {}
    if force:
        for c in configs:
            shutil.rmtree(finetune_dir(store_root, c.key()), ignore_errors=True)
    finished = [c for c in configs if is_complete(finetune_dir(store_root, c.key()))]
    shipped = [c for c in configs if c not in finished and not force and adopt_shipped(store_root, c.key())]
    pending = [c for c in configs if c not in finished and c not in shipped]
    if configs:
        print(f"fine-tuning: {len(configs)} run(s), {len(finished)} finished, {len(shipped)} shipped with the "
              f"repository (checkpoints/finetunes; --force retrains), {len(pending)} to train", file=out)
    if not pending:
        return results
    launch = launcher(executor, Layout(store_root).job_logs())
    locks = CellLocks(store_root)
    try:
        for cfg in pending:
            owner = locks.acquire(f"finetune-{cfg.key()}")
            if owner is not None:
                print(f"  fine-tune {cfg.key()} is being trained by another run (pid {owner.get('pid')}); skipped",
                      file=out)
                continue
            try:
                results[cfg.key()] = _finetune_one(launch, cfg, store_root, out)
            finally:
                locks.release(f"finetune-{cfg.key()}")
    finally:
        locks.release_all()
    return results


FINETUNE_BAR = "{desc}{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} steps [{elapsed}{postfix}]"


def _finetune_one(launch: Launcher, cfg, store_root: str, out: tp.TextIO) -> dict:
    """Train one fine-tune in a worker, with a bar of optimiser steps (done / total, ETA from the worker's
    own training rate); returns its meta or ``{"error": ...}``."""
    import dataclasses

    from tqdm import tqdm

    from harness.report.safe import plain
    from harness.training import run_dir as finetune_dir

    run_dir = os.path.abspath(finetune_dir(store_root, cfg.key()))
    progress_file = str(Layout(store_root).progress(f"finetune-{cfg.key()[:16]}"))
    os.makedirs(os.path.dirname(progress_file), exist_ok=True)
    if os.path.exists(progress_file):
        os.remove(progress_file)
    desc = f"fine-tune {cfg.method['name']} {cfg.key()[:12]}"
    bar = tqdm(total=None, desc=f"{desc} (starting)", file=out, bar_format=FINETUNE_BAR)
    started = time.monotonic()
    job = launch.start(run_finetune_job, dataclasses.asdict(cfg), run_dir, os.path.abspath(progress_file))
    try:
        meta = launch.watch(job, lambda: _show_finetune(bar, desc, progress_file))
    except KeyboardInterrupt:
        raise
    except Exception as err:  # noqa: BLE001 -- the cells that need it fail with a clear message
        bar.close()
        from harness.run.guard import worker_died

        err = worker_died(job) or err
        print(f"  {cfg.key()}: FAILED ({type(err).__name__}: {plain(str(err))[-300:]}); log: {job.paths.stderr}",
              file=out)
        return {"error": f"{type(err).__name__}: {str(err)[-500:]}"}
    finally:
        bar.close()
    wall = time.monotonic() - started
    train = meta["train_wall_s"]
    resumed = " over every session (resumed)" if train > wall else ""
    print(f"  {cfg.key()}: done in {train:.0f} s of training and validation{resumed} "
          f"({wall:.0f} s here with start-up)", file=out)
    return meta


def _show_finetune(bar, desc: str, progress_file: str) -> None:
    try:
        with open(progress_file) as f:
            p = json.load(f)
        done, total, eta = int(p["done"]), int(p["total"]), p.get("eta_s")
    except (OSError, ValueError, KeyError, TypeError):
        return
    if bar.total != total:
        bar.total = total
        bar.set_description(desc)
    bar.n = done
    bar.set_postfix_str(f"ETA {_clock(eta)}" if isinstance(eta, (int, float)) and done < total else "", refresh=False)
    bar.refresh()


def _clock(seconds: float) -> str:
    seconds = int(round(max(seconds, 0)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60:02d}:{seconds % 60:02d}"


def run_suite(suite, *, executor: str = "local", store_root: str = "results", force: bool = False,
              out: tp.Optional[tp.TextIO] = None) -> tp.List[dict]:
    """Run the suite's unfinished cells: cells sharing a test protocol go through one worker together
    (``harness.run.group``: one decoding pass, interleaved timing) unless ``eval.share_decode: false``;
    groups run one after another, so no two groups compete for the cores.

    A cell locked by another live run is skipped (and said so); after the last group the store is read
    again for those cells, and the records the other run finished meanwhile are returned too."""
    from tqdm import tqdm

    from harness.run import record as rec
    from harness.run.group import plan_groups
    from harness.run.plan import plan, warn_other_code
    from harness.store import ResultStore

    out = out or sys.stdout
    todo, done = plan(suite, store_root, force)
    run_finetunes(suite, executor=executor, store_root=store_root, out=out, needed_by=todo)
    groups = plan_groups(todo)
    print(f"suite {_plain(suite.config.name)}: {len(todo) + len(done)} cells, {len(done)} already finished "
          f"(skipped; --force reruns them), {len(todo)} to run with the {executor} executor"
          + (f" in {len(groups)} shared-decoding group(s)" if len(groups) < len(todo) else ""), file=out)
    warn_other_code(done, store_root, out)
    if not todo:
        return []
    launch = launcher(executor, Layout(store_root).job_logs())
    records: tp.List[dict] = []
    started = rec.now()
    store, locks, busy = ResultStore(store_root), CellLocks(store_root), []
    # smoothing=0: the ETA from the mean time per cell; a group's cells all finish together, and the default
    # moving rate then turns a burst of records into a nonsense ETA (20/23 after 13 min showed 39 min left)
    suite_bar = tqdm(total=len(todo), desc="suite", unit="cell", position=0, file=out, smoothing=0)
    try:
        for group in groups:
            mine = []
            for cell in group:
                owner = locks.acquire(cell.key)
                if owner is not None:
                    busy.append(cell)
                    suite_bar.write(f"  {_plain(cell.label)}: cell {cell.key[:12]} is being computed by another run "
                                    f"(pid {owner.get('pid')}); skipped")
                    suite_bar.update(1)
                elif _finished_meanwhile(store, cell.key, started, force):  # by a run that just let go of it
                    locks.release(cell.key)
                    records.append(store.read(cell.key))
                    suite_bar.write(f"  {_plain(cell.label)}: finished by another run meanwhile; skipped")
                    suite_bar.update(1)
                else:
                    mine.append(cell)
            try:
                if mine:
                    for record in _run_group(launch, mine, store_root, out):
                        records.append(record)
                        suite_bar.write(f"  {_plain(record['label'])}: {_outcome(record)}")
                        suite_bar.update(1)
            finally:
                for cell in mine:
                    locks.release(cell.key)
    finally:
        locks.release_all()
        suite_bar.close()
    for cell in busy:  # the other run may have finished them by now
        record = store.read(cell.key)
        if record is not None and record.get("finished_at", "") >= started:
            records.append(record)
            print(f"  {_plain(cell.label)}: finished by the other run: {_outcome(record)}", file=out)
        else:
            print(f"  {_plain(cell.label)}: still being computed by the other run; its record will be in the store "
                  "when it finishes", file=out)
    return records


def _plain(text: tp.Any) -> str:
    from harness.report.safe import plain

    return plain(text)


def _outcome(record: dict) -> str:
    if record["status"] == "ok":
        return "ok"
    error = record.get("error") or {}
    first = (str(error.get("message") or "").splitlines() or [""])[0]
    return _plain(f"FAILED ({error.get('type')}: {first[:200]})")


def _finished_meanwhile(store, key: str, started: str, force: bool) -> bool:
    record = store.read(key)
    if record is None or record.get("status") != "ok":
        return False
    return not force or record.get("finished_at", "") >= started


def _run_group(launch: Launcher, group: list, store_root: str, out: tp.TextIO) -> tp.List[dict]:
    """One group's task through ``launch``, with a progress bar; a worker that dies leaves failed records
    for the cells it did not finish (``launch`` inline: its error propagates)."""
    from tqdm import tqdm

    from harness.run import record as rec
    from harness.run.cell import CellJob
    from harness.run.task import run_group

    title = _plain(group[0].label) if len(group) == 1 else f"{len(group)} cells"
    bar = tqdm(total=1, desc=f"{title}: starting", position=1, leave=False, file=out)
    progress_file = str(Layout(store_root).progress(group[0].key[:16]))
    os.makedirs(os.path.dirname(progress_file), exist_ok=True)
    jobs = [CellJob(c, os.path.abspath(store_root), progress_file) for c in group]

    def show(stage, n, total):
        _update_bar(bar, title, stage, n, total)

    def poll():
        try:
            with open(progress_file) as f:
                p = json.load(f)
            show(p["stage"], p["done"], p["total"])
        except (OSError, ValueError, KeyError):
            pass

    started = rec.now()
    try:
        job = launch.start(run_group, jobs, launch.callback(show))
        try:
            return launch.watch(job, poll)
        except KeyboardInterrupt:
            raise
        except Exception as err:  # the worker died without writing (killed, out of memory, ...)
            if launch.inline:
                raise
            return _lost(job, err, jobs, started)
    finally:
        bar.close()


def _update_bar(bar, label: str, stage: str, n: int, total: int) -> None:
    bar.set_description(f"{label}: {stage}")
    if bar.total != total:
        bar.reset(total=total)
    bar.n = n
    bar.refresh()


def _lost(job, err: Exception, specs: list, started: str) -> tp.List[dict]:
    """The records of a group whose worker died: those it finished before dying, a failed one for the rest."""
    from harness.run.guard import worker_died
    from harness.store import ResultStore

    err = worker_died(job) or err
    store = ResultStore(specs[0].store_root)
    kept = {s.key: store.read(s.key) for s in specs}
    return [kept[s.key] if (kept[s.key] or {}).get("finished_at", "") >= started
            else _write_lost_job(s, job, err) for s in specs]


def _write_lost_job(cell, job, err: Exception) -> dict:
    from harness.run import record as rec
    from harness.store import ResultStore

    from harness.files import last_error_line

    message = str(err)
    last = last_error_line(job.paths.stderr)
    if last and last not in message:  # whatever ended the worker, its record says what it last complained of
        message += f"; last error: {last}"
    record = rec.new_record(cell.spec)
    rec.set_failed(record, {"type": type(err).__name__, "message": message[-2000:], "log": str(job.paths.stderr)})
    rec.finish(record, {})
    try:
        ResultStore(cell.store_root).write(record)
    except OSError as write_err:  # e.g. the disk is full: what killed the worker kills this write too
        record["error"]["message"] += f" (this record could not be stored: {write_err.strerror or write_err})"
    return record
