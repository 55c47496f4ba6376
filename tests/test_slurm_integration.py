"""A real one-node Slurm cluster: a suite through ``--executor slurm`` equals a local run.

The fixture brings the cluster up with ``slurm/cluster.sh`` (installing Debian's packages when
missing) in a private folder and on private ports, and takes it down afterwards. The suite is three
cells sharing one test protocol, hence one shared-decoding group, split into 2 shards (an array of 2
tasks, each decoding its videos once for the three cells): ``dense``, ``tome r=8``, and ``haltingvt``
on a dense checkpoint, which fails at build time on purpose. Task 0 is preempted mid-run with
``scontrol requeue`` and must resume each cell from its saved predictions. The merged records must
equal a local (debug executor) run of the same suite, the failure must be a record with its log, and
``report`` must show the same leaderboard.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness.cli import main
from harness.store import ResultStore
from conftest import FAST_MEASURE

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parent.parent
CLUSTER = REPO / "slurm" / "cluster.sh"
PAUSE_S = 3.0  # per batch of array task 0 (its job's after_batch): time to preempt it mid-run
COMPARED = ("top1", "top5", "num_videos", "views_per_video", "gmacs_per_view", "gflops_per_view",
            "tokens_per_block", "tokens_per_mlp", "tokens_out", "gmacs_breakdown", "aggregation")
REPORT_COLUMNS = ("method", "settings", "top1", "top1_ci_low", "top5", "delta_top1", "p_vs_dense",
                  "agreement_vs_dense", "gmacs_per_view", "gmacs_ratio", "coverage_decoded", "status")


def _why_not() -> str:
    if sys.platform != "linux":
        return "the one-node cluster needs Linux"
    if os.geteuid() != 0:
        return "needs root: slurm/cluster.sh runs munge, MariaDB, slurmdbd, slurmctld and slurmd as root"
    if not shutil.which("slurmctld") and not shutil.which("apt-get"):
        return "Slurm is not installed and there is no apt-get to install Debian's packages"
    return ""


def _free_ports(n: int) -> int:
    """A base port with ``n`` consecutive free TCP ports (a developer's own cluster may hold the defaults)."""
    import random
    import socket

    for _ in range(200):
        base = random.randint(20000, 60000)
        try:
            for port in range(base, base + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free ports")


def _cannot_run(reason: str) -> None:
    """Skip, or fail where CI requires the test (``HARNESS_REQUIRE_SLURM=1``, set by .ci/run as root)."""
    if os.environ.get("HARNESS_REQUIRE_SLURM") == "1":
        pytest.fail(f"the Slurm integration test is required here but cannot run: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if os.environ.get("HARNESS_SKIP_SLURM"):
        pytest.skip("HARNESS_SKIP_SLURM is set")
    reason = _why_not()
    if reason:
        _cannot_run(reason)
    folder = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "HARNESS_SLURM_DIR": str(folder), "HARNESS_SLURM_PORT": str(_free_ports(3)),
           "HARNESS_SLURM_CLUSTER": "harnesstest"}
    t0 = time.monotonic()
    up = subprocess.run(["bash", str(CLUSTER), "up"], env=env, capture_output=True, text=True, timeout=900)
    if up.returncode != 0:
        subprocess.run(["bash", str(CLUSTER), "down"], env=env, capture_output=True, timeout=120)
        _cannot_run(f"cannot bring up the one-node cluster: {up.stderr.strip()[-600:]}")
    print(f"\ncluster up in {time.monotonic() - t0:.1f}s")
    try:
        yield {"dir": folder, "conf": str(folder / "etc" / "slurm.conf"), "env": env}
    finally:
        down = subprocess.run(["bash", str(CLUSTER), "down"], env=env, capture_output=True, text=True, timeout=120)
        assert down.returncode == 0, down.stderr
        for name in ("slurmd", "slurmctld", "slurmdbd", "mariadbd", "munged"):
            pid_file = folder / "run" / f"{name}.pid"
            assert not pid_file.exists(), f"{name} still has a pid file after down"


def _suite(root: Path) -> str:
    suite = {"name": "slurm-it",
             "backbones": [{"name": "synthetic_vit_tiny", "checkpoint": str(REPO / "checkpoints" / "synthetic_vit_tiny.pth")}],
             "datasets": [{"name": "synthetic_motion", "root": str(root / "data"), "num_train": 0, "num_val": 24}],
             "methods": [{"name": "dense"}, {"name": "tome", "r": 8}, {"name": "haltingvt"}],
             "eval": {"batch_size": 4, "num_workers": 0}, "measure": FAST_MEASURE}
    path = root / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return str(path)


def _profile(root: Path, conf: str) -> str:
    profile = {"description": "integration test", "partition": "debug", "cpus_per_task": 1, "mem_gb": 2,
               "timeout_min": 30, "array_parallelism": 8, "save_every_s": 0, "slurm_conf": conf}
    path = root / "it_profile.yaml"
    path.write_text(yaml.safe_dump(profile))
    return str(path)


def _pause_the_first_task(monkeypatch) -> None:
    """The first task submitted (array task 0: shard 0 of the group) pauses ``PAUSE_S`` after each saved
    batch, longer than the cluster's KillWait, so that `scontrol requeue` kills it mid-run; the other
    task runs at full speed. Injected into that task's job (``ShardJob.after_batch``, pickled with it)
    by wrapping the executor ``submit_suite`` makes."""
    import dataclasses

    from harness.cluster import slurm_executor

    real, done = slurm_executor.make_slurm_executor, []

    def pause(batch, seconds=PAUSE_S):  # a local function: cloudpickle sends it by value to the job
        import time
        time.sleep(seconds)

    def factory(*args):
        executor = real(*args)
        submit = executor.submit

        def submit_first_paused(fn, job):
            if not done:
                done.append(job.shard)
                job = dataclasses.replace(job, after_batch=pause)
            return submit(fn, job)

        executor.submit = submit_first_paused
        return executor

    monkeypatch.setattr(slurm_executor, "make_slurm_executor", factory)


def _preempt_mid_run(task: dict, key: str, results: str, env: dict, timeout_s: float = 120) -> int:
    """Wait until ``task`` has saved one batch of cell ``key``, then preempt it with ``scontrol requeue`` (Slurm kills
    the task, SIGTERM then SIGKILL, and queues it again). Returns the videos saved by then.

    (submitit's interrupt helper, ``scancel --signal``, cannot be used here: Slurm 22.05 answers
    "Job is in transitional state" for a running array task whose siblings are pending, and scancel
    then retries, sending the signal again.)"""
    state_file = Path(results) / "shards" / key / f"shard-{task['shard']:03d}-of-{task['num_shards']:03d}" / "state.json"
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            state = None
        if state and state["videos_done"] >= 4:
            assert not state["complete"], "the task finished before it could be preempted"
            subprocess.run(["scontrol", "requeue", task["job_id"]], env=env, check=True, timeout=30)
            return state["videos_done"]
        time.sleep(0.05)
    raise AssertionError(f"task {task['job_id']} saved nothing within {timeout_s}s")


def _sacct(job_ids, env) -> list:
    arrays = sorted({j.split("_")[0] for j in job_ids})
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-D", "-j", ",".join(arrays), "-o",
                          "JobID,State,Submit,Start,End,Elapsed"], capture_output=True, text=True, env=env, check=True)
    return [line.split("|") for line in out.stdout.splitlines() if line.strip()]


def _sacct_settled(job_ids, env, timeout_s: float = 60) -> list:
    """sacct once every task has ended: the store can say a cell is done (the last shard merged, a failure record
    written) a moment before the task exits and slurmdbd records its final state and end time."""
    deadline = time.monotonic() + timeout_s
    while True:
        acct = _sacct(job_ids, env)
        final = {row[0]: row for row in acct if row[1] != "REQUEUED"}
        settled = all(j in final and final[j][1] not in ("PENDING", "RUNNING", "REQUEUED", "COMPLETING")
                      and final[j][4] not in ("", "Unknown", "None") for j in job_ids)
        if settled or time.monotonic() > deadline:
            return acct
        time.sleep(1)


def test_suite_on_slurm_equals_local_run(cluster, tmp_path, monkeypatch, capsys):
    t_start = time.monotonic()
    suite = _suite(tmp_path)
    local, remote = str(tmp_path / "local"), str(tmp_path / "slurm")

    # reference: the same suite, locally in this process (also generates the dataset)
    assert main(["run", suite, "--executor", "debug", "--results", local]) == 1  # haltingvt fails
    t_local = time.monotonic() - t_start
    capsys.readouterr()

    monkeypatch.setenv("SLURM_CONF", cluster["conf"])
    _pause_the_first_task(monkeypatch)
    t0 = time.monotonic()
    assert main(["run", suite, "--executor", "slurm", "--profile", _profile(tmp_path, cluster["conf"]),
                 "--shards", "2", "--results", remote]) == 0
    submit_s = time.monotonic() - t0
    out = capsys.readouterr().out
    assert "submitted 2 task(s)" in out and "harness status" in out, out
    assert submit_s < 15, f"run --executor slurm must return at once, took {submit_s:.1f}s"

    (sub_file,) = (Path(remote) / "slurm").glob("*/submission.json")
    submission = json.loads(sub_file.read_text())
    tasks = submission["tasks"]
    assert len(tasks) == 2 and len(submission["arrays"]) == 1
    assert [t["labels"] for t in tasks] == [["dense", "tome r=8", "haltingvt"]] * 2  # one group
    dense0 = next(t for t in tasks if t["shard"] == 0)
    assert dense0["job_id"].endswith("_0"), "the first task submitted is array task 0"
    slurm_env = cluster["env"] | {"SLURM_CONF": cluster["conf"]}
    keys = dict(zip(dense0["labels"], dense0["keys"]))
    saved_before = _preempt_mid_run(dense0, keys["dense"], remote, slurm_env)

    code = main(["status", suite, "--results", remote, "--wait", "--poll", "1", "--timeout", "240"])
    status_out = capsys.readouterr().out
    assert code == 1, status_out  # the failing cell
    assert "failed: CheckpointError" in status_out and status_out.count(" ok ") >= 2, status_out

    records = {r["label"]: r for r in ResultStore(remote).records()}
    reference = {r["label"]: r for r in ResultStore(local).records()}
    assert {k: r["status"] for k, r in records.items()} == {"dense": "ok", "tome r=8": "ok", "haltingvt": "failed"}

    # merged shards == unsharded local run: metrics, per-video samples, coverage
    for label in ("dense", "tome r=8"):
        got, want = records[label], reference[label]
        assert got["key"] == want["key"]
        for metric in COMPARED:
            assert got["metrics"][metric] == want["metrics"][metric], (label, metric)
        assert got["coverage"] == want["coverage"]
        assert ResultStore(remote).read_samples(got["key"]) == ResultStore(local).read_samples(want["key"])
        assert got["execution"]["num_shards"] == 2 and got["execution"]["shared_decode"]["cells"] == 3
        prov = got["provenance"]
        assert prov["code_snapshot"] == submission["snapshot"]["id"]
        assert prov["code_path"] == str(Path(remote).resolve() / "code" / prov["code_snapshot"])
        assert prov["git_commit"] == submission["snapshot"]["git_commit"]
        assert prov["torch_threads"] == 1  # SLURM_CPUS_PER_TASK

    # the preempted task was requeued and resumed each cell from its saved predictions
    for label in ("dense", "tome r=8"):
        runs = records[label]["execution"]["shards"][0]["runs"]
        assert len(runs) == 2, (label, runs)
        assert runs[1]["restart_count"] >= 1 and runs[1]["resumed_at"] >= 4, (label, runs)
        assert runs[0]["predicted"] + runs[1]["predicted"] == 12 and runs[1]["predicted"] < 12, (label, runs)
    assert records["dense"]["execution"]["shards"][0]["runs"][1]["resumed_at"] >= saved_before
    acct = _sacct_settled([t["job_id"] for t in tasks], slurm_env)
    assert any(row[0] == dense0["job_id"] and row[1] == "REQUEUED" for row in acct), acct

    # the failure is a record with its error and log, and Slurm shows its group's tasks as failed (after
    # the other cells of the group finished)
    failed = records["haltingvt"]
    assert failed["error"]["type"] == "CheckpointError" and Path(failed["error"]["log"]).is_file()
    assert "not a trained HaltingVT" in Path(failed["error"]["log"]).read_text()
    final = {row[0]: row[1] for row in acct if row[1] != "REQUEUED"}
    assert {final.get(t["job_id"]) for t in tasks} == {"FAILED"}, acct

    # report: the same leaderboard as the local run
    assert main(["report", "--results", remote, "--format", "json"]) == 0
    remote_rows = json.loads(capsys.readouterr().out)
    assert main(["report", "--results", local, "--format", "json"]) == 0
    local_rows = json.loads(capsys.readouterr().out)
    pick = lambda rows: sorted((tuple(r.get(c) for c in REPORT_COLUMNS) for r in rows), key=str)  # noqa: E731
    assert pick(remote_rows) == pick(local_rows)

    _print_latency(acct, tasks, t_local, submit_s, time.monotonic() - t_start, remote)


def _print_latency(acct: list, tasks: list, t_local: float, submit_s: float, total_s: float,
                   results: str) -> None:
    """Per task: queue wait (submit -> start), start-up (start -> the shard's first line: python, imports,
    unpickling, building the model) and run time, from sacct and the shard state files."""
    import datetime as dt

    def ts(text):  # sacct prints local time without a zone; the shard files carry UTC with its offset
        t = dt.datetime.fromisoformat(text)
        return t.astimezone().replace(tzinfo=None) if t.tzinfo else t

    def known(text):  # slurmdbd may not have recorded a start or end yet ("Unknown"): a diagnostic, not a failure
        return text not in ("", "Unknown", "None")

    final = {row[0]: row for row in acct if row[1] != "REQUEUED"}
    waits, startups, runs = [], [], []
    for t in tasks:
        row = final.get(t["job_id"])
        if not row or not (known(row[2]) and known(row[3])):
            continue
        waits.append((ts(row[3]) - ts(row[2])).total_seconds())
        if known(row[4]):
            runs.append((ts(row[4]) - ts(row[3])).total_seconds())
        state_file = (Path(results) / "shards" / t["keys"][0] / f"shard-{t['shard']:03d}-of-{t['num_shards']:03d}"
                      / "state.json")
        if state_file.is_file():
            last = json.loads(state_file.read_text())["runs"][-1]
            startups.append((ts(last["started_at"]) - ts(row[3])).total_seconds())

    def span(values):
        values = sorted(values)
        return f"{values[0]:.0f}-{values[-1]:.0f}s (median {values[len(values) // 2]:.0f}s)" if values else "-"

    line = (f"slurm integration: local reference {t_local:.1f}s, submit {submit_s:.2f}s, whole test {total_s:.1f}s; "
            f"per task: queue wait {span(waits)} (2 tasks at a time on 2 cores), start-up {span(startups)}, "
            f"run {span(runs)} (task 0 pauses {PAUSE_S}s per batch)")
    with open(os.environ.get("HARNESS_SLURM_LATENCY_FILE", os.devnull), "a") as f:
        for sink in (sys.stdout, f):
            print("\n" + line, file=sink)


PAUSED_RUN = """
import dataclasses, signal, sys

# as at a terminal: a shell that started the tests in the background (CI, `cmd &`) leaves SIGINT ignored, and a
# child inherits that, so Ctrl-C would never reach it
signal.signal(signal.SIGINT, signal.default_int_handler)

from harness.cli import main
from harness.cluster import slurm_executor

real = slurm_executor.make_slurm_executor


def pause(batch):  # defined in __main__: cloudpickle sends it by value to the job
    import time
    time.sleep(3.0)


def factory(*args):
    executor = real(*args)
    submit = executor.submit
    executor.submit = lambda fn, job: submit(fn, dataclasses.replace(job, after_batch=pause))
    return executor


slurm_executor.make_slurm_executor = factory
sys.exit(main(sys.argv[1:]))
"""  # ``python -m harness`` whose tasks pause 3 s after each saved batch (as ``_pause_the_first_task``)


def test_run_wait_follows_to_the_end_and_status_cancel_cancels(cluster, tmp_path, monkeypatch, capsys):
    """``run --executor slurm --wait`` blocks until the cells have settled and exits like a local run. A second
    ``run --wait``, interrupted with SIGINT (Ctrl-C) mid-run, detaches and leaves its tasks running; cancelled
    with the ``status --cancel`` it printed, its cells become failed: CANCELLED and exactly its tasks are
    cancelled in Slurm."""
    suite = _suite(tmp_path)
    profile = _profile(tmp_path, cluster["conf"])
    monkeypatch.setenv("SLURM_CONF", cluster["conf"])
    slurm_env = cluster["env"] | {"SLURM_CONF": cluster["conf"]}
    waited = str(tmp_path / "waited")
    assert main(["run", suite, "--executor", "slurm", "--profile", profile, "--results", waited, "--wait"]) == 1
    out, err = capsys.readouterr()
    assert "waiting for the suite's cells" in err and "3 cells: 1 failed, 2 ok" in out, (out, err)
    assert "failed: CheckpointError" in out
    assert {r["label"]: r["status"] for r in ResultStore(waited).records()} == {
        "dense": "ok", "tome r=8": "ok", "haltingvt": "failed"}

    # Ctrl-C while `run --wait` watches: it detaches, the tasks keep running
    cancelled = str(tmp_path / "cancelled")
    with open(tmp_path / "run.out", "w") as out_file, open(tmp_path / "run.err", "w") as err_file:
        run = subprocess.Popen([sys.executable, "-c", PAUSED_RUN, "run", suite, "--executor", "slurm", "--profile",
                                profile, "--shards", "2", "--results", cancelled, "--wait"],
                               stdout=out_file, stderr=err_file, cwd=str(REPO))
    try:
        t0 = time.monotonic()
        while not list((Path(cancelled) / "shards").glob("*/shard-*/state.json")) or not any(
                json.loads(p.read_text()).get("videos_done", 0) >= 4
                for p in (Path(cancelled) / "shards").glob("*/shard-*/state.json")):
            assert run.poll() is None, (tmp_path / "run.err").read_text()
            assert time.monotonic() - t0 < 120, "no task saved a batch within 120 s"
            time.sleep(0.2)
        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=30) == 130
    finally:
        run.kill()
    err = (tmp_path / "run.err").read_text()
    (sub_file,) = (Path(cancelled) / "slurm").glob("*/submission.json")
    submission = json.loads(sub_file.read_text())
    ids = sorted(t["job_id"] for t in submission["tasks"])
    assert f"stopped waiting (Ctrl-C); the 2 task(s) of submission {submission['id']} keep running" in err, err
    assert f"--cancel --submission {submission['id']}" in err and "Traceback" not in err, err
    queue = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-j", ",".join(ids)], env=slurm_env,
                           capture_output=True, text=True).stdout.split()
    assert sorted(queue) == ids, queue  # still queued or running

    # `status --cancel --submission ID`, as printed: exactly its tasks are cancelled
    assert main(["status", "--results", cancelled, "--cancel", "--submission", submission["id"]]) == 0
    out = capsys.readouterr().out
    assert f"cancelled 2 queued or running task(s) of submission {submission['id']}" in out, out
    records = {r["label"]: r for r in ResultStore(cancelled).records()}
    assert {k: r["status"] for k, r in records.items()} == {"dense": "failed", "tome r=8": "failed", "haltingvt": "failed"}
    for label in ("dense", "tome r=8"):  # (haltingvt's build failure is recorded at the end of the task, if it gets there)
        assert records[label]["error"]["type"] == "CANCELLED", records[label]["error"]
        assert f"{label} " in out and "failed: CANCELLED" in out.split(f"\n{label} ")[1].splitlines()[0], out
    final = {row[0]: row[1] for row in _sacct_settled(ids, slurm_env) if row[1] != "REQUEUED"}
    assert {final[j].split()[0] for j in ids} == {"CANCELLED"}, final
    waited_ids = [t["job_id"] for t in json.loads(next((Path(waited) / "slurm").glob("*/submission.json"))
                                                  .read_text())["tasks"]]
    assert {row[1] for row in _sacct_settled(waited_ids, slurm_env)} == {"FAILED"}  # the first one's task: untouched
