"""Interrupting `run` leaves no worker behind, a killed worker says how it died, and two runs of one suite
compute each cell once (issue 18 items 8, 9 and 11).

These start real `python -m harness run` processes with the local executor (a controller, the guard and
the worker each import what they need), so each takes several seconds rather than the usual < 5 s.
"""
from __future__ import annotations

import glob
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

import harness
from conftest import FAST_MEASURE, ROOT
from harness.cli import main
from harness.store import ResultStore

SAME_METRICS = ("top1", "top5", "num_videos", "views_per_video", "gmacs_per_view", "gmacs_per_video")


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    root = tmp_path_factory.mktemp("interrupt")
    torch.manual_seed(0)
    torch.save({"module": harness.build_model("synthetic_vit_tiny").state_dict()}, root / "tiny.pth")
    spec = {"name": "interrupt", "backbones": [{"name": "synthetic_vit_tiny", "checkpoint": "tiny.pth"}],
            "datasets": [{"name": "synthetic_motion", "root": "data", "num_train": 0, "num_val": 6}],
            "methods": [{"name": "dense"}, {"name": "tome", "r": 16}],
            "eval": {"batch_size": 3, "num_workers": 0},
            # throughput slow enough (a few seconds) to be killed mid-cell
            "measure": {**FAST_MEASURE, "flops": False, "memory": False, "repeats": 4, "min_timed_s": 0.3}}
    path = root / "suite.yaml"
    path.write_text(yaml.safe_dump(spec))
    return root, str(path)


def _start(root, suite_path: str, results: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "harness", "run", suite_path, "--results", results, *extra],
                            cwd=str(root), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _children() -> dict:
    out = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X"):
            out.setdefault(int(fields[1]), []).append(int(stat.split("/")[2]))
    return out


def _descendants(pid: int) -> list:
    tree, out, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _live(pids) -> list:
    alive = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                    alive.append(pid)
        except OSError:
            pass
    return alive


def _wait_for_worker(proc: subprocess.Popen, results: str, timeout: float = 90.0) -> list:
    """The run's descendants once its worker computes (progress file written), by pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        pids = _descendants(proc.pid)
        workers = [p for p in pids if "submitit.core._submit" in _cmdline(p) and "harness.run.guard" not in _cmdline(p)]
        if workers and glob.glob(os.path.join(results, "logs", "progress-*.json")):
            return pids
        time.sleep(0.05)
    raise AssertionError("no worker appeared")


def _gone_within(pids, seconds: float = 10.0) -> list:
    deadline = time.monotonic() + seconds
    while _live(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _live(pids)


@pytest.fixture(scope="module")
def reference(suite):
    root, path = suite
    results = str(root / "reference")
    assert main(["run", path, "--executor", "debug", "--results", results]) == 0
    store = ResultStore(results)
    return {r["key"]: (r, store.read_samples(r["key"])) for r in store.records()}


def _assert_same_as_reference(results: str, reference: dict) -> None:
    store = ResultStore(results)
    records = {r["key"]: r for r in store.records()}
    assert set(records) == set(reference)
    for key, (ref, samples) in reference.items():
        assert records[key]["status"] == "ok"
        for field in SAME_METRICS:
            assert records[key]["metrics"].get(field) == ref["metrics"].get(field), field
        assert store.read_samples(key) == samples


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_interrupted_run_leaves_no_worker_and_resumes(suite, reference, sig):
    root, path = suite
    results = str(root / f"results-{sig.name}")
    proc = _start(root, path, results)
    pids = _wait_for_worker(proc, results)
    assert len(pids) >= 3  # controller, guard, worker
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert not _gone_within(pids), [(p, _cmdline(p)) for p in _live(pids)]
    if sig == signal.SIGTERM:
        assert proc.returncode == 143
        assert "interrupted (SIGTERM): the running worker was stopped" in err
        assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert not ResultStore(results).records()  # the killed cell left no record; nothing finished later
    assert main(["run", path, "--results", results]) == 0
    _assert_same_as_reference(results, reference)


def test_killed_worker_names_what_happened(suite):
    root, path = suite
    results = str(root / "results-worker-killed")
    proc = _start(root, path, results)
    pids = _wait_for_worker(proc, results)
    worker = next(p for p in pids if "submitit.core._submit" in _cmdline(p) and "harness.run.guard" not in _cmdline(p))
    os.kill(worker, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    failed = [r for r in ResultStore(results).records() if r["status"] == "failed"]
    assert failed and failed[0]["error"]["type"] == "WorkerDied"
    assert re.search(rf"worker process {worker} died \(signal 9, SIGKILL\)", failed[0]["error"]["message"])
    assert "UncompletedJobError" not in out + err and "WorkerDied: worker process" in out


def test_two_runs_compute_each_cell_once(suite, reference):
    root, path = suite
    results = str(root / "results-twice")
    alone = ("--set", "eval.share_decode=false")  # a worker per cell: the two runs can interleave
    first, second = _start(root, path, results, *alone), _start(root, path, results, *alone)
    outs = [p.communicate(timeout=180) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outs
    text = "\n".join(out for out, _ in outs)
    for label in ("dense", "tome r=16"):
        assert len(re.findall(rf"^  {re.escape(label)}: ok$", text, re.M)) == 1, text  # computed by one run only
    assert ("is being computed by another run (pid" in text or "finished by another run meanwhile" in text
            or "2 already finished" in text), text  # the second run saw the first's cells, however late it came
    assert len(glob.glob(os.path.join(results, "logs", "*", "*_result.pkl"))) == 2  # one worker per cell, in all
    _assert_same_as_reference(results, reference)
