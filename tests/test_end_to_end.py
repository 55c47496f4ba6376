"""A suite from YAML to leaderboard: run, records, skip on rerun, report, failures and coverage."""
import json
import os
import sys

import pytest
import torch
import yaml

import harness
from harness.cli import main
from harness.store import ResultStore
from conftest import FAST_MEASURE



@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    torch.manual_seed(0)
    model = harness.build_model("synthetic_vit_tiny")
    torch.save({"module": model.state_dict()}, root / "tiny.pth")
    return root


def write_suite(root, methods, dataset):
    suite = {"name": "e2e", "backbones": [{"name": "synthetic_vit_tiny", "checkpoint": "tiny.pth"}],
             "datasets": [yaml.safe_load(dataset)], "methods": yaml.safe_load(methods),
             "eval": {"batch_size": 4, "num_workers": 0}, "measure": FAST_MEASURE}
    text = yaml.safe_dump(suite)
    path = root / f"suite{abs(hash(text))}.yaml"
    path.write_text(text)
    return str(path)


SYNTH = "{name: synthetic_motion, root: data, num_train: 0, num_val: 12}"


def test_run_skip_and_report(workdir, capsys):
    suite = write_suite(workdir, "- name: dense\n- {name: tome, r: [8, 16]}", SYNTH)
    results = str(workdir / "results")
    assert main(["run", suite, "--executor", "debug", "--results", results]) == 0
    records = ResultStore(results).records()
    assert len(records) == 3 and {r["status"] for r in records} == {"ok"}
    by_label = {r["label"]: r for r in records}
    dense, tome16 = by_label["dense"]["metrics"], by_label["tome r=16"]["metrics"]
    assert dense["num_videos"] == 12 and 0 <= dense["top1"] <= 1
    assert dense["tokens_per_block"] == [128, 128, 128, 128]
    assert tome16["tokens_per_block"] == [128, 112, 96, 80]
    assert tome16["gmacs_per_view"] < dense["gmacs_per_view"]
    check = by_label["tome r=8"]["flops_check"]
    assert check["gmacs_counted"] == check["gmacs_analytic"] == by_label["tome r=8"]["metrics"]["gmacs_per_view"]
    assert dense["clips_per_s"] > 0 and len(dense["clips_per_s_repeats"]) == 2
    prov = by_label["dense"]["provenance"]
    assert prov["versions"]["torch"] and prov["torch_threads"] >= 1 and "git_commit" in prov
    assert prov["checkpoint_sha256"] and prov["dataset_manifest"]["num_videos"] == 12
    samples = ResultStore(results).read_samples(by_label["dense"]["key"])
    assert len(samples) == 12
    assert sum(int(s["correct_top1"]) for s in samples) / 12 == pytest.approx(dense["top1"])
    capsys.readouterr()

    assert main(["run", suite, "--executor", "debug", "--results", results]) == 0
    out = capsys.readouterr().out
    assert "3 already finished" in out and "other model/method/data code" not in out
    assert main(["report", "--results", results, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {row["method"] for row in rows} >= {"dense", "tome"}

    # a record computed by other code is kept, and said so instead of being passed off as current
    assert prov["numerics_code"]["paths"] == ["harness/build.py", "harness/data", "harness/measure",
                                              "harness/models"]
    assert "methods/tome" in by_label["tome r=8"]["provenance"]["numerics_code"]["paths"]
    store = ResultStore(results)
    record = store.read(by_label["tome r=8"]["key"])
    record["provenance"]["numerics_code"]["id"] = "0" * 16
    store.write(record)
    assert main(["run", suite, "--executor", "debug", "--results", results]) == 0
    out = capsys.readouterr().out
    assert "note: 1 finished cell(s) were computed by other model/method/data code" in out and "tome r=8" in out
    assert main(["run", suite, "--dry-run", "--results", results]) == 0
    assert "finished (skip; other code)" in capsys.readouterr().out
    assert main(["report", "--results", results]) == 0
    out = capsys.readouterr().out
    assert out.count("ok (other code)") == 1 and "(other code): computed by other" in out
    assert store.read(by_label["tome r=8"]["key"])["provenance"]["numerics_code"]["id"] == "0" * 16


def test_failed_cell_is_recorded_and_the_suite_goes_on(workdir, capsys):
    # the second checkpoint does not exist: that cell fails at run time, the suite still finishes
    suite = write_suite(workdir, "- name: dense", SYNTH)
    data = yaml.safe_load(open(suite))
    data["backbones"][0]["checkpoint"] = ["tiny.pth", "missing.pth"]
    open(suite, "w").write(yaml.safe_dump(data))
    results = str(workdir / "results_fail")
    assert main(["run", suite, "--executor", "debug", "--results", results]) == 1
    statuses = sorted(r["status"] for r in ResultStore(results).records())
    assert statuses == ["failed", "ok"]
    failed = [r for r in ResultStore(results).records() if r["status"] == "failed"][0]
    assert "checkpoint not found" in failed["error"]["message"]
    assert "failed" in capsys.readouterr().out.lower()


def test_validate_rejects_a_protocol_that_does_not_fit_the_backbone(workdir, capsys):
    suite = write_suite(workdir, "- name: dense\n- {name: tome, r: [4, 8]}",
                        "{name: synthetic_motion, root: data, num_train: 0, num_val: 12, clip_len: 8}")
    assert main(["validate", suite]) == 2
    err = capsys.readouterr().err
    assert err.count("dataset clip_len 8 != backbone num_frames 16") == 1


def test_corrupt_video_is_counted_not_replaced(workdir):
    from harness.data.datasets import SyntheticMotionDataset

    data = SyntheticMotionDataset(root=str(workdir / "data"), num_train=0, num_val=12)
    items = data.items()
    lines = [f"{it.path} {it.label}" for it in items[:5]]
    bad = workdir / "broken.mp4"
    bad.write_bytes(open(items[5].path, "rb").read()[:300])
    lines.insert(2, f"{bad} 3")
    lines.append(f"{workdir / 'missing.mp4'} 1")
    (workdir / "list.txt").write_text("\n".join(lines) + "\n")
    dataset = ("{name: video_list, ann_file: list.txt, num_classes: 12, frame_interval: 1, "
               "short_side: 64, crop_size: 64}")
    suite = write_suite(workdir, "- name: dense", dataset)
    results = str(workdir / "results_corrupt")
    assert main(["run", suite, "--executor", "debug", "--results", results]) == 0
    (record,) = ResultStore(results).records()
    cov = record["coverage"]
    assert (cov["listed"], cov["decoded"], cov["failed"]) == (7, 5, 2)
    assert {os.path.basename(f["path"]) for f in cov["failed_videos"]} == {"broken.mp4", "missing.mp4"}
    assert record["metrics"]["num_videos"] == 5


def test_local_executor_runs_cells_in_a_fresh_process(workdir, capsys):
    suite = write_suite(workdir, "- name: dense", SYNTH)
    results = str(workdir / "results_local")
    assert main(["run", suite, "--executor", "local", "--results", results, "--limit", "4"]) == 0
    (record,) = ResultStore(results).records()
    assert record["status"] == "ok" and record["metrics"]["num_videos"] == 4
    assert record["config"]["eval"]["limit"] == 4


def test_user_errors_print_one_message_and_exit_2(workdir, capsys):
    bad = workdir / "bad.yaml"
    bad.write_text("methods: [{name: tomee}]\n")
    assert main(["run", str(bad), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "Did you mean: 'tome'" in err and "Traceback" not in err


def test_ls_and_report_do_not_import_torch():
    import subprocess

    code = ("import sys; from harness.cli import main; main(['ls', 'methods']); main(['ls', 'backbones']); "
            "main(['ls', 'datasets']); main(['report', '--results', '/nonexistent']); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.dirname(__file__)))
    assert proc.returncode == 0, proc.stderr
    assert "tome" in proc.stdout and "videomae_vit_b16" in proc.stdout
