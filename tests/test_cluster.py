"""Slurm execution without a cluster: sharding and merge, shared-decoding group tasks, resume, failures,
profiles, status, snapshots.

Shards run in this process (``ShardTask()(job)``) or through submitit's ``DebugExecutor``; ``sinfo``,
``sbatch``, ``squeue`` and ``sacct`` are small fake scripts on ``PATH`` that print canned answers in
Slurm's formats (as submitit's own tests do with ``MockedSubprocess``).
"""
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.cluster import shards as sh
from harness.cluster.profiles import ProfileError, check_on_cluster, load_profile, parse_profile
from harness.cluster.snapshot import take_snapshot
from harness.cluster.status import cell_rows, expand_job_ids, sync_store, _compact
from harness.cluster.worker import ShardFailed, ShardJob, ShardTask
from harness.run.cell import CellJob
from harness.run.task import run_group
from harness.store import ResultStore
from harness.suite import load_suite
from conftest import FAST_MEASURE as FAST

REPO = Path(__file__).resolve().parent.parent
FAST_MEASURE = {**FAST, "timed_iters": 1, "repeats": 1}
SAME = ("top1", "top5", "num_videos", "views_per_video", "gmacs_per_view", "gflops_per_view", "gmacs_per_video",
        "tokens_per_block", "tokens_per_mlp", "tokens_out", "gmacs_breakdown", "gmacs_per_block", "aggregation")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A 10-video, 2-clip suite (dense + tome) and its local (unsharded) records."""
    root = tmp_path_factory.mktemp("cluster")
    suite = {"name": "cl", "backbones": [{"name": "synthetic_vit_tiny",
                                          "checkpoint": str(REPO / "checkpoints" / "synthetic_vit_tiny.pth")}],
             "datasets": [{"name": "synthetic_motion", "root": str(root / "data"), "num_train": 0, "num_val": 10,
                           "num_clips": 2}],
             "methods": [{"name": "dense"}, {"name": "tome", "r": 8}],
             "eval": {"batch_size": 2, "num_workers": 0}, "measure": FAST_MEASURE}
    (root / "suite.yaml").write_text(yaml.safe_dump(suite))
    loaded = load_suite(str(root / "suite.yaml"))
    local = str(root / "local")
    for cell in loaded.cells():
        assert run_group([_cell_job(cell, local)])[0]["status"] == "ok"
    return {"root": root, "suite": loaded, "local": local, "cells": {c.label: c for c in loaded.cells()}}


def _cell_job(cell, store: str) -> CellJob:
    return CellJob(cell, os.path.abspath(store))


def _job(cells, store: str, shard: int = 0, n: int = 1, **kw) -> ShardJob:
    """Shard ``shard`` of ``n`` of a task over ``cells`` (one cell, or a shared-decoding group)."""
    return ShardJob([_cell_job(c, store) for c in cells], shard, n, save_every_s=0, **kw)


def _run_shards(cell, store: str, n: int, task=None) -> dict:
    for i in range(n):
        (task or ShardTask())(_job([cell], store, i, n))
    return ResultStore(store).read(cell.key)


def _kill_after(batch_number: int):
    """An ``after_batch`` that kills the task (SIGKILL-like: not an Exception, nothing is recorded) once
    batch ``batch_number`` is saved."""
    def after_batch(g):
        if g == batch_number:
            raise SystemExit(-9)
    return after_batch


@pytest.fixture
def decodes(monkeypatch):
    """How many videos were decoded (``VideoDataset.load_views`` calls) since the test started."""
    from harness.data.video_dataset import VideoDataset

    count = {"n": 0}
    real = VideoDataset.load_views

    def counted(self, item):
        count["n"] += 1
        return real(self, item)

    monkeypatch.setattr(VideoDataset, "load_views", counted)
    return count


def _assert_same_as_local(world, cell, store: str) -> dict:
    got, want = ResultStore(store).read(cell.key), ResultStore(world["local"]).read(cell.key)
    assert got["status"] == "ok", got.get("error")
    for metric in SAME:
        assert got["metrics"][metric] == want["metrics"][metric], metric
    assert got["coverage"] == want["coverage"] and got["flops_check"] == want["flops_check"]
    assert ResultStore(store).read_samples(cell.key) == ResultStore(world["local"]).read_samples(cell.key)
    assert set(got["metrics"]) == set(want["metrics"])  # nothing evaluate_cell records is missing
    return got


# --- sharding and merging -----------------------------------------------------------------------

def test_shard_ranges_start_on_batch_boundaries_and_cover_everything_once():
    for n_items in (0, 1, 7, 10, 33):
        for shards in (1, 2, 3, 8):
            for batch in (1, 2, 4):
                ranges = sh.shard_ranges(n_items, shards, batch)
                assert len(ranges) == shards and ranges[0][0] == 0 and ranges[-1][1] == n_items
                assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))  # contiguous, no overlap, no padding
                assert all(start % batch == 0 for start, end in ranges if end > start)
    assert sh.shard_ranges(10, 3, 2) == [(0, 2), (2, 6), (6, 10)]
    assert sh.shard_ranges(3, 4, 2) == [(0, 0), (0, 2), (2, 2), (2, 3)]
    with pytest.raises(ValueError):
        sh.shard_ranges(10, 0, 2)


def test_three_shards_merge_to_the_unsharded_record(world, tmp_path):
    cell = world["cells"]["tome r=8"]
    store = str(tmp_path / "store")
    first = ShardTask()(_job([cell], store, 1, 3))
    assert first["cells"][cell.key]["status"] == "partial"
    assert ResultStore(store).read(cell.key)["status"] == "partial"
    _run_shards(cell, store, 3)
    got = _assert_same_as_local(world, cell, store)
    assert got["execution"]["num_shards"] == 3 and got["execution"]["duplicates_dropped"] == 0
    assert [s["videos"] for s in got["execution"]["shards"]] == [2, 4, 4]
    measured = sh.read_json(sh.cell_dir(store, cell.key) / sh.MEASURE)
    assert measured["machine"] and "clips_per_s" in got["metrics"]  # measured once, by shard 0


def test_merge_deduplicates_views_saved_twice(world, tmp_path):
    cell = world["cells"]["dense"]
    store = str(tmp_path / "store")
    _run_shards(cell, store, 2)
    shard1 = sh.shard_dir(sh.cell_dir(store, cell.key), 1, 2)
    chunk = sorted(shard1.glob(sh.CHUNK_GLOB))[0]
    shutil.copy(chunk, shard1 / "chunk-999999.npz")  # e.g. a checkpoint flush racing a regular save
    from harness.cluster.worker import finalize_cell

    record = finalize_cell(store, cell.key)
    assert record["execution"]["duplicates_dropped"] == 2 * 2  # one batch: 2 videos x 2 clips
    _assert_same_as_local(world, cell, store)


def test_report_shows_a_partial_cell_as_such(world, tmp_path, capsys):
    from harness.cli import main

    cell = world["cells"]["dense"]
    store = str(tmp_path / "store")
    ShardTask()(_job([cell], store, 0, 2))
    capsys.readouterr()
    assert main(["report", "--results", store, "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["status"] == "partial: 1/2 shards" and row["top1"] is None


# --- resume -------------------------------------------------------------------------------------

def test_a_killed_shard_resumes_from_its_saved_batches(world, tmp_path):
    cell = world["cells"]["dense"]
    store = str(tmp_path / "store")
    with pytest.raises(SystemExit):
        ShardTask()(_job([cell], store, after_batch=_kill_after(1)))
    state = sh.load_state(sh.shard_dir(sh.cell_dir(store, cell.key), 0, 1))
    assert state["videos_done"] == 4 and not state["complete"]  # batches 0 and 1 were saved
    assert ShardTask()(_job([cell], store))["cells"][cell.key]["status"] == "ok"
    runs = _assert_same_as_local(world, cell, store)["execution"]["shards"][0]["runs"]
    assert [(r["resumed_at"], r["predicted"]) for r in runs] == [(0, 4), (4, 6)]  # resumed, not restarted


# --- shared-decoding groups ----------------------------------------------------------------------

def test_group_shard_tasks_decode_once_and_give_each_cell_its_own_record(world, tmp_path, decodes):
    cells = [world["cells"]["dense"], world["cells"]["tome r=8"]]
    store = str(tmp_path / "store")
    for i in range(3):
        summary = ShardTask()(_job(cells, store, i, 3))
        assert set(summary["cells"]) == {c.key for c in cells}
    assert decodes["n"] == 10  # each of the 10 videos decoded once for both cells
    for cell in cells:  # each cell's own folders, merged as usual: the record of evaluating it alone
        got = _assert_same_as_local(world, cell, store)
        assert got["execution"]["num_shards"] == 3 and [s["videos"] for s in got["execution"]["shards"]] == [2, 4, 4]
        assert got["execution"]["shared_decode"] == {"cells": 2, "group": ["dense", "tome r=8"]}
        timing = got["metrics"]["timing"]
        assert timing["interleaved_with"] == 2  # shard 0 timed the group's cells interleaved


def test_a_restarted_group_task_resumes_each_cell_from_its_own_saved_batches(world, tmp_path, decodes):
    dense, tome = world["cells"]["dense"], world["cells"]["tome r=8"]
    store = str(tmp_path / "store")
    with pytest.raises(SystemExit):  # the group task dies once batch 0 is saved for both cells
        ShardTask()(_job([dense, tome], store, after_batch=_kill_after(0)))
    with pytest.raises(SystemExit):  # dense alone gets one batch further
        ShardTask()(_job([dense], store, after_batch=_kill_after(1)))
    decodes["n"] = 0
    ShardTask()(_job([dense, tome], store))
    assert decodes["n"] == 8  # batch 1 for tome only, batches 2-4 for both: each decoded once
    runs = {c.label: _assert_same_as_local(world, c, store)["execution"]["shards"][0]["runs"] for c in (dense, tome)}
    assert [(r["resumed_at"], r["predicted"]) for r in runs["dense"]] == [(0, 2), (2, 2), (4, 6)]
    assert [(r["resumed_at"], r["predicted"]) for r in runs["tome r=8"]] == [(0, 2), (2, 8)]


def test_a_complete_cell_of_a_group_is_not_recomputed(world, tmp_path, monkeypatch):
    import harness.run.cell as cell_module

    dense, tome = world["cells"]["dense"], world["cells"]["tome r=8"]
    store = str(tmp_path / "store")
    ShardTask()(_job([dense], store))
    dense_dir = sh.cell_dir(store, dense.key)
    before = {p.name: p.stat().st_mtime_ns for p in dense_dir.rglob("*.*")}
    built = []
    real = cell_module.prepare_cell
    monkeypatch.setattr(cell_module, "prepare_cell", lambda spec, *a: built.append(spec.method.name)
                        or real(spec, *a))
    ShardTask()(_job([dense, tome], store))
    assert built == ["tome"]  # dense's model is not even built
    assert {p.name: p.stat().st_mtime_ns for p in dense_dir.rglob("*.*") if p.name != "cell.json"} == \
        {k: v for k, v in before.items() if k != "cell.json"}
    for cell in (dense, tome):
        _assert_same_as_local(world, cell, store)


def test_checkpoint_saves_buffered_batches_and_requeues_the_same_task(tmp_path):
    import submitit

    directory = tmp_path / "shard"
    state = sh.new_state(0, 1, 0, 4)
    state["runs"].append({"predicted": 0})
    task = ShardTask()
    task._writers = {"k": sh.PredictionWriter(directory, state, save_every_s=1e9)}
    task._writers["k"].add({"batch": 0, "videos": [], "paths": [], "labels": [], "failed": [
        {"index": 0, "path": "x.mp4", "error": "E"}], "num_crops": 1, "views_per_video": 1})
    assert not list(directory.glob(sh.CHUNK_GLOB))
    from harness.suite import CellSpec, EvalConfig, MeasureConfig, MethodSpec

    spec = CellSpec({"name": "video_vit"}, {"name": "synthetic_motion"}, MethodSpec("dense"), EvalConfig(),
                    MeasureConfig(), label="l")
    job = ShardJob([CellJob(spec, str(tmp_path))])
    delayed = task.checkpoint(job)
    assert isinstance(delayed, submitit.helpers.DelayedSubmission) and delayed.args == (job,)
    assert len(list(directory.glob(sh.CHUNK_GLOB))) == 1 and sh.load_state(directory)["videos_done"] == 1
    assert sh.saved_batches(directory) == {0: 1}
    import pickle

    assert pickle.loads(pickle.dumps(delayed.function))._writers == {}  # never pickles half-run state


# --- failures -----------------------------------------------------------------------------------

def test_a_failing_cell_is_recorded_the_group_goes_on_then_the_task_raises(world, tmp_path, monkeypatch):
    import pdb

    import submitit

    monkeypatch.setattr(pdb, "post_mortem", lambda *a, **k: None)  # DebugExecutor's post-mortem
    cell, other = world["cells"]["dense"], world["cells"]["tome r=8"]
    store = str(tmp_path / "store")
    from harness.suite import CellSpec

    broken = CellSpec.from_json({**cell.to_json(), "backbone": {**cell.backbone, "checkpoint": str(tmp_path / "missing.pth")}})
    spec = _cell_job(broken, store)  # the same key, weights that are gone
    executor = submitit.DebugExecutor(folder=str(tmp_path / "logs"))
    job = executor.submit(ShardTask(), ShardJob([spec, _cell_job(other, store)], 0, 1, save_every_s=0))
    with pytest.raises(ShardFailed, match="dense shard 0: CheckpointError: checkpoint not found"):
        job.result()
    record = ResultStore(store).read(cell.key)
    assert record["status"] == "failed" and record["error"]["shard"] == 0
    assert "checkpoint not found" in record["error"]["message"] and "Traceback" in record["error"]["traceback"]
    failed = sh.read_json(sh.shard_dir(sh.cell_dir(store, cell.key), 0, 1) / sh.FAILED)
    assert failed["type"] == record["error"]["type"]
    _assert_same_as_local(world, other, store)  # the other cell of the group finished


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """Fake sinfo/sbatch/squeue/sacct on PATH; ``set(name, stdout, rc=0)`` changes an answer."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()

    def set_answer(name, stdout="", rc=0, stderr=""):
        (bin_dir / f"{name}.out").write_text(stdout)
        (bin_dir / f"{name}.err").write_text(stderr)
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\necho "$@" >> "{bin_dir}/{name}.calls"\ncat "{bin_dir}/{name}.out"\n'
                          f'cat "{bin_dir}/{name}.err" >&2\nexit {rc}\n')
        script.chmod(0o755)

    for name in ("sinfo", "sbatch", "squeue", "sacct"):
        set_answer(name)
    set_answer("sinfo", "debug*\ngpu\n")
    set_answer("sbatch", "sbatch: Job 7 to start at now\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("SLURM_CONF", raising=False)
    set_answer.dir = bin_dir
    return set_answer


def _fake_submission(store: str, cell, num_shards: int = 1) -> dict:
    """A submission of ``cell`` (or a list of cells: one group) as job 12_*, cell.json written, nothing run."""
    from harness.cluster.slurm_executor import _prepare_cell_dir
    from harness.cluster.worker import cell_info

    cells = cell if isinstance(cell, list) else [cell]
    job = _job(cells, store, 0, num_shards)
    for c in job.cells:
        _prepare_cell_dir(store, c.key, cell_info(job, c), num_shards, force=False)
    folder = Path(store) / "slurm" / "sub1"
    tasks = [{"kind": "cell", "keys": [c.key for c in cells], "labels": [c.label for c in cells], "shard": i,
              "num_shards": num_shards, "job_id": f"12_{i}", "stdout": str(folder / f"12_{i}" / "o.out"),
              "stderr": str(folder / f"12_{i}" / "e.err")} for i in range(num_shards)]
    sub = {"id": "sub1", "submitted_at": "2026-01-01T00:00:00+00:00", "tasks": tasks, "profile": {}}
    sh.write_json(folder / "submission.json", sub)
    for t in tasks:
        Path(t["stderr"]).parent.mkdir(parents=True, exist_ok=True)
        Path(t["stderr"]).write_text("torch.OutOfMemoryError: ...\nslurmstepd: error: Detected 1 oom_kill event\n")
    return sub


def test_a_task_killed_without_a_result_becomes_a_failed_record(world, tmp_path, fake_slurm):
    cell = world["cells"]["dense"]
    store = str(tmp_path / "store")
    _fake_submission(store, cell, num_shards=2)
    fake_slurm("squeue", "12_1|RUNNING|None\n")
    fake_slurm("sacct", "12_0|OUT_OF_MEMORY|0:125|2026-01-01T00:00:01|2026-01-01T00:00:02|2026-01-01T00:00:09|None\n"
                        "12_1|RUNNING|0:0|2026-01-01T00:00:01|2026-01-01T00:00:02|Unknown|None\n")
    rows, note = cell_rows(store)
    assert note is None
    assert rows[0]["state"] == "running" and rows[0]["jobs"] == "12_[0-1]"
    fake_slurm("squeue", "")  # shard 1 vanished too, and sacct has nothing more on it (accounting lag)
    fake_slurm("sacct", "12_0|OUT_OF_MEMORY|0:125|2026-01-01T00:00:01|2026-01-01T00:00:02|2026-01-01T00:00:09|None\n")
    rows, _ = cell_rows(store)
    record = ResultStore(store).read(cell.key)
    assert record["status"] == "failed" and record["error"]["type"] == "OUT_OF_MEMORY"
    assert record["error"]["log"].endswith("12_0/e.err") and "oom_kill" in record["error"]["message"]
    assert sorted(record["error"]["failed_shards"]) == [0, 1]
    assert rows[0]["state"] == "failed: OUT_OF_MEMORY" and "log:" in rows[0]["detail"]
    assert sync_store(store) == []  # judged once


def test_a_lost_group_task_fails_each_of_its_cells_and_status_shows_every_cell(world, tmp_path, fake_slurm):
    cells = [world["cells"]["dense"], world["cells"]["tome r=8"]]
    store = str(tmp_path / "store")
    _fake_submission(store, cells)
    fake_slurm("squeue", "12_0|RUNNING|None\n")
    rows, _ = cell_rows(store)
    assert [(r["label"], r["state"], r["jobs"]) for r in rows] == [("dense", "running", "12_0"),
                                                                   ("tome r=8", "running", "12_0")]
    fake_slurm("squeue", "")
    fake_slurm("sacct", "12_0|OUT_OF_MEMORY|0:125|2026-01-01T00:00:01|2026-01-01T00:00:02|2026-01-01T00:00:09|None\n")
    rows, _ = cell_rows(store)
    assert [r["state"] for r in rows] == ["failed: OUT_OF_MEMORY"] * 2
    for cell in cells:
        assert ResultStore(store).read(cell.key)["error"]["type"] == "OUT_OF_MEMORY"


def test_status_reads_a_submission_of_one_cell_per_task_written_before_groups(world, tmp_path, fake_slurm):
    cell = world["cells"]["dense"]
    store = str(tmp_path / "store")
    sub = _fake_submission(store, cell)
    for task in sub["tasks"]:  # the format before shared-decoding tasks: one "key" and "label" per task
        task["key"], task["label"] = task.pop("keys")[0], task.pop("labels")[0]
    sh.write_json(Path(store) / "slurm" / "sub1" / "submission.json", sub)
    fake_slurm("squeue", "12_0|PENDING|Priority\n")
    rows, _ = cell_rows(store)
    assert [(r["label"], r["state"]) for r in rows] == [("dense", "pending")]


def test_without_accounting_a_job_gone_from_the_queue_is_lost_not_awaited(world, tmp_path, fake_slurm):
    cell = world["cells"]["dense"]
    store = str(tmp_path / "store")
    _fake_submission(store, cell)
    fake_slurm("sacct", "", rc=1, stderr="sacct: error: Slurm accounting storage is disabled")
    rows, note = cell_rows(store)
    assert "no accounting" in note
    assert rows[0]["state"] == "failed: JobLost"
    fake_slurm("squeue", "", rc=1, stderr="slurm_load_jobs error: Unable to contact slurm controller")
    shutil.rmtree(sh.cell_dir(store, cell.key))
    ResultStore(store).path_for(cell.key).unlink()
    _fake_submission(store, cell)
    rows, note = cell_rows(store)  # the scheduler is unreachable: judge nothing
    assert "not reachable" in note and rows[0]["state"] == "unknown"
    assert ResultStore(store).read(cell.key) is None


def test_status_merges_complete_shards_whose_merge_never_ran(world, tmp_path, fake_slurm):
    cell = world["cells"]["tome r=8"]
    store = str(tmp_path / "store")
    _fake_submission(store, cell, num_shards=2)
    _run_shards(cell, store, 2)
    ResultStore(store).path_for(cell.key).unlink()  # the last task died between "complete" and its merge
    rows, _ = cell_rows(store)
    assert rows[0]["state"] == "ok" and rows[0]["shards"] == "2/2"
    _assert_same_as_local(world, cell, store)


def test_status_command_is_torch_free(world, tmp_path, fake_slurm):
    store = str(tmp_path / "store")
    _fake_submission(store, world["cells"]["dense"])
    fake_slurm("squeue", "12_0|PENDING|Priority\n")
    code = ("import sys; from harness.cli import main; rc = main(['status', '--results', %r]); "
            "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)" % store)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO))
    assert proc.returncode == 3, proc.stderr  # 3: still queued
    assert "pending" in proc.stdout and "Priority" in proc.stdout


# --- submission (DebugExecutor instead of sbatch) -----------------------------------------------

def test_submit_runs_every_shard_and_records_the_code_snapshot(world, tmp_path, monkeypatch):
    import submitit

    from harness.cluster.slurm_executor import submit_suite

    store = str(tmp_path / "store")
    profile = parse_profile({"save_every_s": 0}, name="test")
    factory = lambda folder, profile, snap, name, dep: submitit.DebugExecutor(folder=str(folder))  # noqa: E731
    out = io.StringIO()
    sub = submit_suite(world["suite"], profile=profile, store_root=store, num_shards=2, executor_factory=factory,
                       out=out)
    assert "2 to submit in 1 shared-decoding group(s) as 2 task(s) (2 shard(s) per group)" in out.getvalue()
    assert len(sub.tasks) == 2 and len(sub.jobs) == 2  # one task per shard of the group of both cells
    assert [t["labels"] for t in sub.tasks] == [["dense", "tome r=8"]] * 2
    for job in sub.jobs:
        job.result()
    saved = json.loads((Path(sub.folder) / "submission.json").read_text())
    assert saved["snapshot"]["id"] == sub.snapshot["id"] and "jobs" not in saved
    for cell in world["cells"].values():
        record = _assert_same_as_local(world, cell, store)
        assert record["provenance"]["code_snapshot"] == sub.snapshot["id"]
        assert record["suite"]["name"] == "cl" and record["execution"]["submission"] == sub.id
        assert record["execution"]["shared_decode"]["cells"] == 2
    rows, _ = cell_rows(store, sync=False)
    assert sorted((r["label"], r["state"], r["shards"]) for r in rows) == [("dense", "ok", "2/2"),
                                                                           ("tome r=8", "ok", "2/2")]
    again = submit_suite(world["suite"], profile=profile, store_root=store, num_shards=2, executor_factory=factory,
                         out=open(os.devnull, "w"))
    assert again.tasks == [] and again.skipped == 2  # finished cells are not resubmitted


def test_without_share_decode_each_cell_shard_is_its_own_task(world, tmp_path):
    from harness.cluster.slurm_executor import submit_suite

    suite = load_suite(str(world["root"] / "suite.yaml"), ["eval.share_decode=false"])
    assert [c.key for c in suite.cells()] == [c.key for c in world["cells"].values()]  # not part of the key
    _RecordingExecutor.arrays = []
    sub = submit_suite(suite, profile=parse_profile({}, name="t"), store_root=str(tmp_path / "store"),
                       num_shards=2, executor_factory=_RecordingExecutor, out=open(os.devnull, "w"))
    assert [(t["labels"], t["shard"]) for t in sub.tasks] == [(["dense"], 0), (["dense"], 1),
                                                              (["tome r=8"], 0), (["tome r=8"], 1)]
    (array,) = _RecordingExecutor.arrays
    assert [len(c[1][0].cells) for c in array.calls] == [1, 1, 1, 1]


class _RecordingExecutor:
    """Stands in for submitit.SlurmExecutor: records each array (name, dependency, calls)."""

    arrays: list = []

    def __init__(self, folder, profile, snap, name, dependency):
        self.folder, self.name, self.dependency, self.calls = Path(str(folder)), name, dependency, []

    def batch(self):
        import contextlib

        @contextlib.contextmanager
        def ctx():
            yield
            _RecordingExecutor.arrays.append(self)
        return ctx()

    def submit(self, fn, *args):
        import submitit

        array = 100 + len(_RecordingExecutor.arrays)
        self.calls.append((type(fn).__name__, args))
        job_id = f"{array}_{len(self.calls) - 1}"
        return type("Job", (), {"job_id": job_id,
                                "paths": submitit.core.utils.JobPaths(self.folder, job_id=job_id)})()


def test_finetunes_are_submitted_first_and_their_cells_wait_for_them(tmp_path):
    from harness.cluster.slurm_executor import submit_suite

    train = {"name": "synthetic_motion", "root": str(tmp_path / "data"), "num_train": 8, "num_val": 4,
             "split": "train"}
    suite = {"name": "ft", "backbones": [{"name": "synthetic_vit_tiny",
                                          "checkpoint": str(REPO / "checkpoints" / "synthetic_vit_tiny.pth")}],
             "datasets": [{**train, "split": "val"}],
             "methods": [{"name": "dense"}, {"name": "tome", "r": 8, "finetune": "tome8"}, {"name": "tome", "r": 4}],
             "finetunes": [{"name": "tome8", "method": {"name": "tome", "r": 8}, "dataset": train,
                            "recipe": {"epochs": 1}}]}
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(suite))
    _RecordingExecutor.arrays = []
    sub = submit_suite(load_suite(str(tmp_path / "ft.yaml")), profile=parse_profile({}, name="t"),
                       store_root=str(tmp_path / "store"), num_shards=2, executor_factory=_RecordingExecutor,
                       out=open(os.devnull, "w"))
    first, *rest = _RecordingExecutor.arrays
    assert [c[0] for c in first.calls] == ["FinetuneTask"] and first.dependency is None
    (dependent,) = [a for a in rest if a.dependency]
    (free,) = [a for a in rest if not a.dependency]
    assert dependent.dependency == "afterok:100_0" and len(dependent.calls) == 2  # tome8's 2 shards
    assert [[c.label for c in call[1][0].cells] for call in dependent.calls] == [["tome r=8 ft=tome8"]] * 2
    # the cells that wait for nothing still share one decoding pass, apart from the fine-tuned one
    assert [[c.label for c in call[1][0].cells] for call in free.calls] == [["dense", "tome r=4"]] * 2
    assert [t["label"] for t in sub.tasks if t["kind"] == "finetune"] == ["fine-tune tome8"]
    assert len(sub.arrays) == 3


def test_sbatch_script_runs_the_snapshot(tmp_path):
    from harness.cluster.slurm_executor import make_slurm_executor

    snap = take_snapshot(tmp_path / "store")
    profile = load_profile("example_gpu")
    shutil.which("srun") or pytest.skip("submitit's SlurmExecutor needs srun on PATH")
    ex = make_slurm_executor(tmp_path / "logs" / "%j", profile, snap, "harness-x", dependency="afterok:5_0")
    text = ex._make_submission_file_text("python -m x", "uid")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1", "#SBATCH --account=my_account",
                 "#SBATCH --dependency=afterok:5_0", "#SBATCH --kill-on-invalid-dep=yes", "#SBATCH --requeue",
                 "#SBATCH --signal=USR2@180", f"cd {snap.path}", "module load cuda/12.1"):
        assert line in text, line


# --- code snapshots -----------------------------------------------------------------------------

def test_snapshot_is_content_addressed(tmp_path):
    src = tmp_path / "src"
    for package in ("harness", "methods"):
        (src / package / "__pycache__").mkdir(parents=True)
        (src / package / "__init__.py").write_text(f"NAME = {package!r}\n")
        (src / package / "__pycache__" / "x.pyc").write_bytes(b"junk")
    first = take_snapshot(tmp_path / "store", root=src)
    assert take_snapshot(tmp_path / "store", root=src).id == first.id
    assert (Path(first.path) / "harness" / "__init__.py").is_file() and first.files == 2
    assert not (Path(first.path) / "harness" / "__pycache__").exists()
    (src / "methods" / "__init__.py").write_text("NAME = 'changed'\n")
    second = take_snapshot(tmp_path / "store", root=src)
    assert second.id != first.id and (Path(first.path) / "methods" / "__init__.py").read_text() == "NAME = 'methods'\n"


# --- profiles -----------------------------------------------------------------------------------

def test_bundled_profiles_load():
    local = load_profile("local")
    assert local.partition == "debug" and local.slurm_conf.endswith("/etc/slurm.conf")
    gpu = load_profile("example_gpu")
    assert gpu.gpus_per_node == 1 and "--account=my_account" in gpu.sbatch_flags()


def test_profile_errors_name_every_problem_once(tmp_path):
    with pytest.raises(ProfileError) as err:
        parse_profile({"partion": "gpu", "mem_gb": "lots", "cpus_per_task": 0, "sbatch": {"time": 5}}, path="p.yaml")
    text = str(err.value)
    assert "unknown key 'partion'; did you mean 'partition'" in text
    assert "mem_gb: expected float, got str 'lots'" in text and "cpus_per_task: must be >= 1" in text
    assert "sbatch.time: set by the harness" in text and "4 problem(s)" in text
    with pytest.raises(ProfileError, match="Did you mean 'local'"):
        load_profile("locl")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ProfileError, match="must be a mapping"):
        load_profile(str(bad))


def test_profile_env_expansion(monkeypatch):
    monkeypatch.setenv("HARNESS_SLURM_DIR", "/x/y")
    assert load_profile("local").slurm_conf == "/x/y/etc/slurm.conf"
    monkeypatch.delenv("HARNESS_SLURM_DIR")
    assert load_profile("local").slurm_conf == "/tmp/harness-slurm/etc/slurm.conf"


def test_partition_and_resources_are_checked_with_the_scheduler(fake_slurm):
    profile = parse_profile({"partition": "debug"}, name="p")
    check_on_cluster(profile)
    calls = (fake_slurm.dir / "sbatch.calls").read_text()
    assert "--test-only" in calls and "--partition=debug" in calls
    with pytest.raises(ProfileError, match=r"partition 'gpuu' does not exist.*Did you mean 'gpu'.*default: debug"):
        check_on_cluster(parse_profile({"partition": "gpuu"}, name="p"))
    fake_slurm("sbatch", "", rc=1, stderr="sbatch: error: Invalid generic resource (gres) specification\n")
    with pytest.raises(ProfileError, match="Slurm refuses the request.*gres"):
        check_on_cluster(parse_profile({"gpus_per_node": 1}, name="p"))


def test_cli_refuses_a_bad_profile_before_submitting(world, tmp_path, capsys, fake_slurm):
    from harness.cli import main

    suite = str(world["root"] / "suite.yaml")
    assert main(["run", suite, "--executor", "slurm", "--profile", "nope", "--results", str(tmp_path)]) == 2
    assert "unknown profile 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "slurm").exists()


def test_job_id_helpers():
    assert expand_job_ids("12_[0-2,5%4]") == ["12_0", "12_1", "12_2", "12_5"]
    assert expand_job_ids("12_3") == ["12_3"] and expand_job_ids("13") == ["13"]
    assert _compact(["12_0", "12_1", "12_2", "12_5", "13"]) == "13,12_[0-2,5]"


def test_cluster_script_usage_and_status_of_a_stopped_cluster(tmp_path):
    script = str(REPO / "slurm" / "cluster.sh")
    assert subprocess.run(["bash", "-n", script]).returncode == 0
    usage = subprocess.run(["bash", script], capture_output=True, text=True)
    assert usage.returncode == 2 and "install|up|down|status|env" in usage.stderr
    env = {**os.environ, "HARNESS_SLURM_DIR": str(tmp_path / "c")}
    status = subprocess.run(["bash", script, "status"], capture_output=True, text=True, env=env)
    assert status.returncode == 3 and status.stdout.count("stopped") == 5
    down = subprocess.run(["bash", script, "down"], capture_output=True, text=True, env=env)  # nothing to stop
    assert down.returncode == 0, down.stderr
    shown = subprocess.run(["bash", script, "env"], capture_output=True, text=True, env=env).stdout
    assert shown.strip() == f"export SLURM_CONF={tmp_path / 'c'}/etc/slurm.conf"


# --- the launcher: start (submit), watch, stop (scancel) -----------------------------------------

class _RunningExecutor(_RecordingExecutor):
    """A ``_RecordingExecutor`` whose tasks run at once, in this process (a task that raises is only noted:
    its failure is on record, as a FAILED array task's is)."""

    def submit(self, fn, *args):
        job = super().submit(fn, *args)
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 -- ShardFailed after the failed cell's record
            pass
        return job


def _slurm_cli(world, tmp_path, monkeypatch, executor, methods=None):
    """``run SUITE --executor slurm --profile P --results R`` arguments, with ``executor`` standing in for
    submitit's SlurmExecutor; the suite is the world's (or its data with ``methods``)."""
    from harness.cluster import slurm_executor

    _RecordingExecutor.arrays = []
    monkeypatch.setattr(slurm_executor, "make_slurm_executor", executor)
    suite = str(world["root"] / "suite.yaml")
    if methods is not None:
        data = yaml.safe_load(Path(suite).read_text())
        suite = str(tmp_path / "suite.yaml")
        Path(suite).write_text(yaml.safe_dump({**data, "name": "cl2", "methods": methods}))
    profile = tmp_path / "p.yaml"
    profile.write_text(yaml.safe_dump({"partition": "debug", "save_every_s": 0}))
    return ["run", suite, "--executor", "slurm", "--profile", str(profile), "--results", str(tmp_path / "store")]


def test_launcher_starts_the_submission_and_watches_it_to_the_end(world, tmp_path, fake_slurm):
    from harness.cluster.launch import SlurmLauncher, cells_of

    store = str(tmp_path / "store")
    _RecordingExecutor.arrays = []
    launch = SlurmLauncher(store, parse_profile({"save_every_s": 0}, name="t"), executor_factory=_RunningExecutor,
                           out=io.StringIO(), poll_s=0.01)
    sub = launch.start(world["suite"])
    saved = json.loads((Path(sub.folder) / "submission.json").read_text())
    assert saved == json.loads(json.dumps(sub.as_record())) and [t["job_id"] for t in saved["tasks"]] == ["100_0"]
    assert cells_of(saved) == cells_of(sub) == [(c.key, c.label) for c in world["cells"].values()]
    seen = []
    rows, note = launch.watch(sub, seen.append)
    assert note is None and [(r["label"], r["state"]) for r in rows] == [("dense", "ok"), ("tome r=8", "ok")]
    assert seen == [rows]
    for cell in world["cells"].values():
        _assert_same_as_local(world, cell, store)
    assert launch.watch(launch.start(world["suite"]), seen.append) == ([], None)  # nothing submitted: nothing to watch


def test_run_slurm_wait_follows_to_the_end_and_exits_like_a_local_run(world, tmp_path, monkeypatch, capsys,
                                                                      fake_slurm):
    from harness.cli import main

    args = _slurm_cli(world, tmp_path, monkeypatch, _RunningExecutor,
                      methods=[{"name": "dense"}, {"name": "haltingvt"}])  # haltingvt: not a HaltingVT checkpoint
    assert main(args + ["--wait"]) == 1
    out, err = capsys.readouterr()
    assert "submitted 1 task(s)" in out and "waiting for the suite's cells" in err
    assert "1 failed, 1 ok" in err  # the progress line
    table, leaderboard = out.split("2 cells: 1 failed, 1 ok")
    assert "failed: CheckpointError" in table and "top-1" in table
    assert "dense" in leaderboard and "failed: CheckpointError" in leaderboard  # and its HaltingVT row
    assert main(args + ["--wait"]) == 1  # the failed cell is submitted again, fails again
    capsys.readouterr()
    args = _slurm_cli(world, tmp_path, monkeypatch, _RunningExecutor, methods=[{"name": "dense"}])
    assert main(args + ["--wait"]) == 0  # every cell ok (finished before: nothing submitted)
    assert "0 to submit" in capsys.readouterr().out


def test_ctrl_c_while_waiting_detaches_and_says_how_to_follow_and_cancel(world, tmp_path, monkeypatch, capsys,
                                                                         fake_slurm):
    from harness.cli import main
    from harness.cluster import status

    args = _slurm_cli(world, tmp_path, monkeypatch, _RecordingExecutor)
    fake_slurm("squeue", "100_0|PENDING|Priority\n")

    real_wait = status.wait

    def ctrl_c_after_the_first_poll(*args, on_poll, **kw):
        def poll(rows):
            on_poll(rows)
            raise KeyboardInterrupt
        return real_wait(*args, on_poll=poll, **kw)

    monkeypatch.setattr(status, "wait", ctrl_c_after_the_first_poll)
    assert main(args + ["--wait"]) == 130
    out, err = capsys.readouterr()
    (sub,) = (tmp_path / "store" / "slurm").glob("*/submission.json")
    sid = json.loads(sub.read_text())["id"]
    assert "2 pending" in err and f"stopped waiting (Ctrl-C); the 1 task(s) of submission {sid} keep running" in err
    assert f"follow: python -m harness status {world['root'] / 'suite.yaml'} --results {tmp_path / 'store'} --wait" \
        in err
    assert f"cancel: python -m harness status --results {tmp_path / 'store'} --cancel --submission {sid}" in err
    assert not (fake_slurm.dir / "scancel.calls").exists()  # nothing cancelled


def test_run_without_wait_returns_after_submitting(world, tmp_path, monkeypatch, capsys, fake_slurm):
    from harness.cli import main

    args = _slurm_cli(world, tmp_path, monkeypatch, _RecordingExecutor)
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert out.startswith("suite cl: 2 cells") and "(add --wait to block)" in out and err == ""
    assert not (fake_slurm.dir / "squeue.calls").exists()  # not followed
    assert main(["run", args[1], "--wait"]) == 2
    assert "--wait applies to --executor slurm only" in capsys.readouterr().err


def _fake_scancel(fake_slurm, squeue: str, sacct: str) -> None:
    """``scancel``: notes its arguments; then squeue and sacct answer ``squeue`` and ``sacct``."""
    bin_dir = fake_slurm.dir
    (bin_dir / "scancel").write_text(f'#!/bin/sh\necho "$@" >> "{bin_dir}/scancel.calls"\n'
                                     f'printf "{squeue}" > "{bin_dir}/squeue.out"\n'
                                     f'printf "{sacct}" > "{bin_dir}/sacct.out"\n')
    (bin_dir / "scancel").chmod(0o755)


def test_stop_cancels_exactly_the_submissions_queued_and_running_tasks(world, tmp_path, capsys, fake_slurm):
    from harness.cli import main

    cell, other = world["cells"]["dense"], world["cells"]["tome r=8"]
    store = str(tmp_path / "store")
    _fake_submission(store, cell, num_shards=3)  # sub1: tasks 12_0 12_1 12_2
    sh.write_json(Path(store) / "slurm" / "sub2" / "submission.json",  # a later one, still running
                  {"id": "sub2", "submitted_at": "2026-01-02T00:00:00+00:00", "profile": {},
                   "tasks": [{"kind": "cell", "keys": [other.key], "labels": [other.label], "shard": 0,
                              "num_shards": 1, "job_id": "99_0", "stderr": None}]})
    fake_slurm("squeue", "12_0|RUNNING|None\n12_1|PENDING|Priority\n99_0|RUNNING|None\n")
    fake_slurm("sacct", "12_2|COMPLETED|0:0|x|x|x|None\n")
    end = "2026-01-01T00:00:09"
    _fake_scancel(fake_slurm, "99_0|RUNNING|None\\n", f"12_0|CANCELLED by 0|0:15|x|x|{end}|None\\n12_1|CANCELLED by 0|0:0|x|None|{end}|None"
                              f"\\n12_2|COMPLETED|0:0|x|x|{end}|None\\n")
    assert main(["status", "--results", store, "--cancel", "--submission", "sub1"]) == 0
    assert (fake_slurm.dir / "scancel.calls").read_text() == "12_0 12_1\n"  # not 12_2 (ended), not 99_0 (sub2's)
    out = capsys.readouterr().out
    assert "cancelled 2 queued or running task(s) of submission sub1 (job array(s) 12)" in out
    assert "failed: CANCELLED" in out and "tome" not in out  # sub1's cell only
    record = ResultStore(store).read(cell.key)
    assert record["status"] == "failed" and record["error"]["type"] == "CANCELLED"
    assert main(["status", "--results", store, "--cancel", "--submission", "sub1"]) == 0  # again: nothing left
    assert "no task queued or running, nothing to cancel" in capsys.readouterr().out
    assert (fake_slurm.dir / "scancel.calls").read_text() == "12_0 12_1\n"


def test_cancel_picks_the_latest_submission_and_refuses_what_it_cannot_see(world, tmp_path, capsys, fake_slurm):
    from harness.cli import main
    from harness.cluster.launch import CancelFailed, SlurmLauncher, find_submission

    store = str(tmp_path / "store")
    assert main(["status", "--results", store, "--cancel"]) == 2
    assert "no submission under" in capsys.readouterr().err
    sub = _fake_submission(store, world["cells"]["dense"])
    assert find_submission(store)["id"] == "sub1" and find_submission(store, keys=["nope"]) is None
    assert find_submission(store, "sub9") is None
    fake_slurm("squeue", "", rc=1, stderr="slurm_load_jobs error: Unable to contact slurm controller")
    with pytest.raises(CancelFailed, match="cannot see the queue"):
        SlurmLauncher(store).stop(sub)
    assert main(["status", "--results", store, "--cancel"]) == 1
    assert "nothing cancelled" in capsys.readouterr().err
    fake_slurm("squeue", "12_0|RUNNING|None\n")
    fake_slurm("scancel", "", rc=1, stderr="scancel: error: Invalid job id 12_0")
    with pytest.raises(CancelFailed, match="Invalid job id"):
        SlurmLauncher(store).stop(sub)
    fake_slurm("scancel", "", rc=1, stderr="scancel: error: Kill job error on job id 12_0: Job/step already "
                                           "completing or completed\n")  # it ended between squeue and scancel
    assert SlurmLauncher(store).stop(sub, wait_s=0) == ["12_0"]
