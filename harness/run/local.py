"""Run a suite's cells through a submitit executor, one cell at a time, skipping finished ones.

Cells run sequentially so that throughput and memory are never measured while another cell
competes for the same cores. ``local`` runs each cell in a fresh process (clean peak-memory
figures, no state leaking between methods); ``debug`` runs in this process (for debugging).
"""
from __future__ import annotations

import json
import os
import sys
import time
import typing as tp
from pathlib import Path

EXECUTORS = ("local", "debug")
RUN_FOLDERS = ("cells", "logs", "finetunes", "locks")  # what `run` writes under its results directory


class NotWritable(OSError):
    """A results folder that cannot be written: found before any compute (``check_writable``)."""


def check_writable(store_root: str, folders: tp.Sequence[str] = RUN_FOLDERS) -> None:
    """Raise ``NotWritable`` naming the first of ``store_root``/``folders`` that cannot be created or written.

    Each folder is created if missing, then a temporary file is created and removed in it: an actual write,
    not only ``os.access`` (which root passes whatever the mode bits, and which misses read-only mounts)."""
    import tempfile

    for sub in folders:
        folder = os.path.join(store_root, sub)
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


def make_executor(kind: str, folder: Path):
    import submitit

    if kind == "local":
        executor = submitit.LocalExecutor(folder=str(folder))
        executor.update_parameters(timeout_min=24 * 60)
        return executor
    if kind == "debug":
        return submitit.DebugExecutor(folder=str(folder))
    raise ValueError(f"unknown executor {kind!r}; choose one of {', '.join(EXECUTORS)}")


def run_finetune_job(config: dict, out_dir: str) -> dict:
    """Worker entry point: train (or resume) one fine-tuning run; returns its meta."""
    from harness.training import FineTuneConfig, finetune

    return finetune(FineTuneConfig(**config), out_dir, progress=False)


def run_finetunes(suite, *, executor: str = "local", store_root: str = "results",
                  out: tp.Optional[tp.TextIO] = None, needed_by: tp.Optional[list] = None) -> tp.Dict[str, dict]:
    """Train every fine-tune the suite's cells (or ``needed_by`` cells) use and that has not finished.

    An interrupted run resumes from its last epoch checkpoint. Returns ``{key: meta or {"error": ...}}``.
    """
    import dataclasses

    from tqdm import tqdm

    from harness.run.plan import distinct_finetunes
    from harness.training import epochs_done, is_complete, run_dir as finetune_dir

    out = out or sys.stdout
    configs = suite.finetunes() if needed_by is None else distinct_finetunes(needed_by)
    results: tp.Dict[str, dict] = {}
    pending = [c for c in configs if not is_complete(finetune_dir(store_root, c.key()))]
    if configs:
        print(f"fine-tuning: {len(configs)} run(s), {len(configs) - len(pending)} finished, "
              f"{len(pending)} to train", file=out)
    if not pending:
        return results
    ex = make_executor(executor, Path(store_root) / "logs" / "%j")
    for cfg in pending:
        run_dir = os.path.abspath(finetune_dir(store_root, cfg.key()))
        epochs = cfg.resolved_recipe()["epochs"]
        bar = tqdm(total=epochs, desc=f"fine-tune {cfg.method['name']} {cfg.key()}", unit="epoch", file=out)
        job = ex.submit(run_finetune_job, dataclasses.asdict(cfg), run_dir)
        while not job.done():
            bar.n = epochs_done(run_dir)
            bar.refresh()
            time.sleep(1.0)
        bar.n = epochs_done(run_dir)
        bar.close()
        try:
            meta = job.result()
            results[cfg.key()] = meta
            print(f"  {cfg.key()}: done in {meta['train_wall_s']:.0f} s", file=out)
        except Exception as err:  # noqa: BLE001 -- the cells that need it fail with a clear message
            results[cfg.key()] = {"error": f"{type(err).__name__}: {str(err)[-500:]}"}
            print(f"  {cfg.key()}: FAILED ({type(err).__name__}); log: {job.paths.stderr}", file=out)
    return results


def run_suite(suite, *, executor: str = "local", store_root: str = "results", force: bool = False,
              out: tp.Optional[tp.TextIO] = None) -> tp.List[dict]:
    """Run the suite's unfinished cells: cells sharing a test protocol go through one worker together
    (``harness.run.group``: one decoding pass, interleaved timing) unless ``eval.share_decode: false``;
    groups run one after another, so no two groups compete for the cores."""
    from tqdm import tqdm

    from harness.run import record as rec
    from harness.run.cell import CellJob
    from harness.run.group import plan_groups, run_group
    from harness.run.plan import plan, warn_other_code

    out = out or sys.stdout
    todo, done = plan(suite, store_root, force)
    run_finetunes(suite, executor=executor, store_root=store_root, out=out, needed_by=todo)
    groups = plan_groups(todo)
    print(f"suite {suite.config.name}: {len(todo) + len(done)} cells, {len(done)} already finished "
          f"(skipped; --force reruns them), {len(todo)} to run with the {executor} executor"
          + (f" in {len(groups)} shared-decoding group(s)" if len(groups) < len(todo) else ""), file=out)
    warn_other_code(done, store_root, out)
    if not todo:
        return []
    folder = Path(store_root) / "logs" / "%j"
    ex = make_executor(executor, folder)
    records = []
    suite_info = {"name": suite.config.name, "file": str(suite.path), "version": suite.config.version}
    suite_bar = tqdm(total=len(todo), desc="suite", unit="cell", position=0, file=out)
    for group in groups:
        title = group[0].label if len(group) == 1 else f"{len(group)} cells"
        bar = tqdm(total=1, desc=f"{title}: starting", position=1, leave=False, file=out)
        progress_file = os.path.join(store_root, "logs", f"progress-{group[0].key[:16]}.json")
        os.makedirs(os.path.dirname(progress_file), exist_ok=True)
        jobs = [CellJob(key=c.key, config=c.config(), label=c.label, suite=suite_info,
                        store_root=os.path.abspath(store_root), progress_file=progress_file) for c in group]
        if executor == "debug":
            def show(stage, n, total, bar=bar, label=title):
                _update_bar(bar, label, stage, n, total)
            group_records = ex.submit(run_group, jobs, show).result()
        else:
            started = rec.now()
            group_records = _wait(ex.submit(run_group, jobs), bar, title, progress_file, jobs, started)
        bar.close()
        for record in group_records:
            records.append(record)
            status = record["status"] if record["status"] == "ok" else \
                f"FAILED ({record['error']['type']}: {record['error']['message'].splitlines()[0][:200]})"
            suite_bar.write(f"  {record['label']}: {status}")
            suite_bar.update(1)
    suite_bar.close()
    return records


def _update_bar(bar, label: str, stage: str, n: int, total: int) -> None:
    bar.set_description(f"{label}: {stage}")
    if bar.total != total:
        bar.reset(total=total)
    bar.n = n
    bar.refresh()


def _wait(job, bar, label: str, progress_file: str, specs: list, started: str) -> tp.List[dict]:
    while not job.done():
        try:
            with open(progress_file) as f:
                p = json.load(f)
            _update_bar(bar, label, p["stage"], p["done"], p["total"])
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    try:
        return job.result()
    except Exception as err:  # the worker died without writing (killed, out of memory, ...)
        from harness.store import ResultStore

        store = ResultStore(specs[0].store_root)  # cells it finished before dying keep their records
        kept = {s.key: store.read(s.key) for s in specs}
        return [kept[s.key] if (kept[s.key] or {}).get("finished_at", "") >= started
                else _write_lost_job(s, job, err) for s in specs]


def _write_lost_job(spec, job, err: Exception) -> dict:
    from harness.run import record as rec
    from harness.store import ResultStore

    record = rec.new_record(spec.key, spec.config, spec.label, spec.suite)
    rec.set_failed(record, {"type": type(err).__name__, "message": str(err)[-2000:], "log": str(job.paths.stderr)})
    rec.finish(record, {})
    ResultStore(spec.store_root).write(record)
    return record
