"""Slurm execution without a cluster: sharding and merge, resume, failures, profiles, status, snapshots.

Shards run in this process (``ShardTask()(job)``) or through submitit's ``DebugExecutor``; ``sinfo``,
``sbatch``, ``squeue`` and ``sacct`` are small fake scripts on ``PATH`` that print canned answers in
Slurm's formats (as submitit's own tests do with ``MockedSubprocess``).
"""
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
from harness.run.cell import CellJob, run_cell
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
        assert run_cell(_cell_job(cell, local))["status"] == "ok"
    return {"root": root, "suite": loaded, "local": local, "cells": {c.label: c for c in loaded.cells()}}


def _cell_job(cell, store: str) -> CellJob:
    return CellJob(key=cell.key, config=cell.config(), label=cell.label, suite={"name": "cl"},
                   store_root=os.path.abspath(store))


def _run_shards(cell, store: str, n: int, task=None) -> dict:
    for i in range(n):
        (task or ShardTask())(ShardJob(_cell_job(cell, store), i, n, save_every_s=0))
    return ResultStore(store).read(cell.key)


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
    first = ShardTask()(ShardJob(_cell_job(cell, store), 1, 3, save_every_s=0))
    assert first["status"] == "partial"
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
    ShardTask()(ShardJob(_cell_job(cell, store), 0, 2, save_every_s=0))
    capsys.readouterr()
    assert main(["report", "--results", store, "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["status"] == "partial: 1/2 shards" and row["top1"] is None


# --- resume -------------------------------------------------------------------------------------

def test_a_killed_shard_resumes_from_its_saved_batches(world, tmp_path, monkeypatch):
    import harness.cluster.worker as worker

    cell = world["cells"]["dense"]
    store = str(tmp_path / "store")
    job = ShardJob(_cell_job(cell, store), 0, 1, save_every_s=0)

    def killed(batch):  # the process dies (SIGKILL-like: not an Exception, nothing is recorded)
        if batch == 1:
            raise SystemExit(-9)

    monkeypatch.setattr(worker, "_test_pause", killed)
    with pytest.raises(SystemExit):
        ShardTask()(job)
    state = sh.load_state(sh.shard_dir(sh.cell_dir(store, cell.key), 0, 1))
    assert state["videos_done"] == 4 and not state["complete"]  # batches 0 and 1 were saved
    monkeypatch.setattr(worker, "_test_pause", lambda batch: None)
    assert ShardTask()(job)["status"] == "ok"
    runs = _assert_same_as_local(world, cell, store)["execution"]["shards"][0]["runs"]
    assert [(r["resumed_at"], r["predicted"]) for r in runs] == [(0, 4), (4, 6)]  # resumed, not restarted


def test_checkpoint_saves_buffered_batches_and_requeues_the_same_task(tmp_path):
    import submitit

    directory = tmp_path / "shard"
    state = sh.new_state(0, 1, 0, 4)
    state["runs"].append({"predicted": 0})
    task = ShardTask()
    task._writer = sh.PredictionWriter(directory, state, save_every_s=1e9)
    task._writer.add({"batch": 0, "videos": [], "paths": [], "labels": [], "failed": [
        {"index": 0, "path": "x.mp4", "error": "E"}], "num_crops": 1, "views_per_video": 1})
    assert not list(directory.glob(sh.CHUNK_GLOB))
    job = ShardJob(CellJob("k", {}, "l", {}, str(tmp_path)))
    delayed = task.checkpoint(job)
    assert isinstance(delayed, submitit.helpers.DelayedSubmission) and delayed.args == (job,)
    assert len(list(directory.glob(sh.CHUNK_GLOB))) == 1 and sh.load_state(directory)["videos_done"] == 1
    assert sh.saved_batches(directory) == {0: 1}
    import pickle

    assert pickle.loads(pickle.dumps(delayed.function))._writer is None  # never pickles half-run state


# --- failures -----------------------------------------------------------------------------------

def test_a_failing_task_is_recorded_then_raised_through_submitit(world, tmp_path, monkeypatch):
    import pdb

    import submitit

    monkeypatch.setattr(pdb, "post_mortem", lambda *a, **k: None)  # DebugExecutor's post-mortem
    cell = world["cells"]["dense"]
    store = str(tmp_path / "store")
    spec = _cell_job(cell, store)
    spec.config["backbone"]["checkpoint"] = str(tmp_path / "missing.pth")
    executor = submitit.DebugExecutor(folder=str(tmp_path / "logs"))
    job = executor.submit(ShardTask(), ShardJob(spec, 0, 2, save_every_s=0))
    with pytest.raises(ShardFailed, match="checkpoint not found"):
        job.result()
    record = ResultStore(store).read(cell.key)
    assert record["status"] == "failed" and record["error"]["shard"] == 0
    assert "checkpoint not found" in record["error"]["message"] and record["error"]["traceback"]
    failed = sh.read_json(sh.shard_dir(sh.cell_dir(store, cell.key), 0, 2) / sh.FAILED)
    assert failed["type"] == record["error"]["type"]


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
    """A submission of ``cell`` as job 12_*, its cell.json written, nothing run."""
    from harness.cluster.slurm_executor import _prepare_cell_dir
    from harness.cluster.worker import cell_info

    job = ShardJob(_cell_job(cell, store), 0, num_shards)
    _prepare_cell_dir(store, cell.key, cell_info(job), num_shards, force=False)
    folder = Path(store) / "slurm" / "sub1"
    tasks = [{"kind": "cell", "key": cell.key, "label": cell.label, "shard": i, "num_shards": num_shards,
              "job_id": f"12_{i}", "stdout": str(folder / f"12_{i}" / "o.out"),
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
    sub = submit_suite(world["suite"], profile=profile, store_root=store, num_shards=2, executor_factory=factory,
                       out=open(os.devnull, "w"))
    assert len(sub.tasks) == 4 and len(sub.jobs) == 4
    for job in sub.jobs:
        job.result()
    saved = json.loads((Path(sub.folder) / "submission.json").read_text())
    assert saved["snapshot"]["id"] == sub.snapshot["id"] and "jobs" not in saved
    for cell in world["cells"].values():
        record = _assert_same_as_local(world, cell, store)
        assert record["provenance"]["code_snapshot"] == sub.snapshot["id"]
        assert record["suite"]["name"] == "cl" and record["execution"]["submission"] == sub.id
    again = submit_suite(world["suite"], profile=profile, store_root=store, num_shards=2, executor_factory=factory,
                         out=open(os.devnull, "w"))
    assert again.tasks == [] and again.skipped == 2  # finished cells are not resubmitted


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
             "methods": [{"name": "dense"}, {"name": "tome", "r": 8, "finetune": "tome8"}],
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
    assert {c[1][0].cell.label for c in free.calls} == {"dense"}
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
