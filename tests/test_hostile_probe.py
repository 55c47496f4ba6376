"""The second hostile probe's families (issue 28): config.json numbers, shard indexes, stray files in the
store, hostile command lines. Each corpus file in ``tests/hostile/`` holds one input per line; the cases
run in a child process with a per-case alarm (``hostile/run_cases.py``), so a hang fails instead of stalling.

Contract: a bad input is refused with one line naming the file (and field), exit 2, no traceback, within
seconds; a stray file in the store costs one row, never the report.
"""
from __future__ import annotations

import json
import os

import pytest
from test_hostile_inputs import _lines, run_batch

BASE_CONFIG = {"model_type": "videomae", "architectures": ["VideoMAEForVideoClassification"], "hidden_size": 128,
               "num_hidden_layers": 4, "num_attention_heads": 2, "intermediate_size": 512, "image_size": 64,
               "patch_size": 16, "num_frames": 16, "tubelet_size": 2, "num_channels": 3, "num_labels": 12,
               "layer_norm_eps": 1e-12, "use_mean_pooling": True, "hidden_act": "gelu", "qkv_bias": True}
PRELOAD = ("torch", "methods", "harness.measure.accuracy", "harness.run.local", "harness.report")
SUITE = """backbones: [{{name: video_vit, checkpoint: {checkpoint}}}]
datasets: [{{name: synthetic_motion, split: val}}]
methods: [{{name: dense}}]
"""


def assert_refused(result: dict, what: str, *needles: str) -> None:
    text = result["out"] + result["err"]
    assert result["exc"] is None, f"{what}: escaped:\n{result['exc']}"
    assert "Traceback" not in text, f"{what}: traceback:\n{text}"
    assert result["rc"] == 2, f"{what}: exit code {result['rc']}, expected 2:\n{text}"
    assert any(all(n in line for n in needles) for line in result["err"].splitlines()), \
        f"{what}: no error line names {needles}:\n{result['err']}"
    assert result["secs"] < 15, f"{what}: took {result['secs']:.1f} s"


def _case_lines(name: str) -> list:
    return [tuple(part.strip() for part in line.split("|", 1)) for line in _lines(name)]


def test_corpus_counts():
    counts = {name: len(_lines(name)) for name in ("hf_config.txt", "hf_index.txt", "store_faults.txt", "cli.txt")}
    assert counts["hf_config.txt"] >= 30 and counts["hf_index.txt"] >= 10 and counts["store_faults.txt"] >= 15
    assert counts["cli.txt"] >= 20
    print("hostile probe corpus:", counts, "=", sum(counts.values()), "inputs")


def test_config_json_numbers_are_bounded(tmp_path):
    cases, meta = [], []
    for i, (key, fragment) in enumerate(_case_lines("hf_config.txt")):
        folder = tmp_path / f"hf_{i}"
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({**BASE_CONFIG, **json.loads(fragment)}))
        (folder / "model.safetensors").write_bytes(b"x")
        suite = tmp_path / f"suite_{i}.yaml"
        suite.write_text(SUITE.format(checkpoint=folder))
        for argv in (["validate", str(suite)], ["run", str(suite), "--dry-run", "--results", str(tmp_path / "r")]):
            cases.append({"argv": argv, "cwd": str(tmp_path)})
            meta.append((f"{argv[0]} {fragment}", f"hf_{i}", key))
    for result, (what, folder, key) in zip(run_batch(cases, timeout=300, preload=PRELOAD), meta):
        assert_refused(result, what, folder, key)


def test_the_valid_base_config_passes(tmp_path):
    from harness.suite import validate_suite

    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(BASE_CONFIG))
    (folder / "model.safetensors").write_bytes(b"x")
    (tmp_path / "s.yaml").write_text(SUITE.format(checkpoint=folder))
    assert validate_suite(str(tmp_path / "s.yaml")) == []


def test_shard_indexes_are_read_bounded_and_stay_in_the_folder(tmp_path):
    (tmp_path / "outside.safetensors").write_bytes(b"secret")
    cases, meta = [], []
    for i, (needle, weight_map) in enumerate(_case_lines("hf_index.txt")):
        folder = tmp_path / f"hf_{i}"
        (folder / "sub").mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps(BASE_CONFIG))
        os.mkfifo(folder / "fifo_shard")
        if weight_map == "DEEP":
            (folder / "model.safetensors.index.json").write_text('{"weight_map": ' + "[" * 5000 + "]" * 5000 + "}")
        elif weight_map != "NOWEIGHTS":
            (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": json.loads(weight_map)}))
        suite = tmp_path / f"suite_{i}.yaml"
        suite.write_text(SUITE.format(checkpoint=folder))
        for argv in (["validate", str(suite)], ["run", str(suite), "--dry-run", "--results", str(tmp_path / "r")]):
            cases.append({"argv": argv, "cwd": str(tmp_path)})
            meta.append((f"{argv[0]} {weight_map[:40]}", f"hf_{i}", needle))
    for result, (what, folder, needle) in zip(run_batch(cases, timeout=300, preload=PRELOAD), meta):
        assert_refused(result, what, folder, needle)
        assert "secret" not in result["out"] + result["err"]


def good_record(key: str, method: str = "dense", top1: float = 0.5, n: int = 2) -> dict:
    return {"schema": 1, "key": key, "status": "ok", "label": method,
            "config": {"backbone": {"name": "synthetic_vit_tiny"}, "dataset": {"name": "synthetic_motion"},
                       "method": {"name": method, "params": {}}, "eval": {}, "measure": {}},
            "metrics": {"top1": top1, "top5": 1.0, "num_videos": n, "views_per_video": 1, "gmacs_per_view": 1.0},
            "coverage": {"listed": n, "decoded": n}, "finished_at": "2026-01-01T00:00:00+00:00"}


def make_store(root, fault: str) -> None:
    """One good dense record and a ToMe record with samples, plus the ``fault``."""
    from harness.store import ResultStore

    store = ResultStore(root)
    rows = [{"index": i, "path": f"v{i}.mp4", "label": 1, "pred": 1 - i, "top5": "1 0", "correct_top1": 1 - i,
             "correct_top5": 1, "label_score": 0.5} for i in range(2)]
    for key, method in (("a" * 64, "dense"), ("b" * 64, "tome")):
        store.write_samples(key, rows)
        store.write({**good_record(key, method), "samples_file": store.samples_path(key).name})
    cells = store.cells_dir
    samples = store.samples_path("b" * 64)
    if fault == "fifo":
        os.mkfifo(cells / "fifo.json")
    elif fault == "zero_link":
        os.symlink("/dev/zero", cells / "zero.json")
    elif fault == "sparse_50g":
        with open(cells / "sparse.json", "wb") as f:
            f.truncate(50 << 30)
    elif fault == "deep_json":
        (cells / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    elif fault == "binary":
        (cells / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    elif fault == "torn":
        (cells / "torn.json").write_text('{"key": "torn", "status": ')
    elif fault == "list_root":
        (cells / "list.json").write_text("[1, 2]")
    elif fault == "escape_name":
        (cells / "\x1b]0;PWNED\x07\x1b[2J.json").write_text("{")
    elif fault == "dangling_link":
        os.symlink(str(root) + "/nowhere", cells / "dangling.json")
    elif fault == "directory":
        (cells / "dir.json").mkdir()
    elif fault == "nan_metrics":
        (cells / "nan.json").write_text('{"key": "nan", "status": "ok", "metrics": {"top1": NaN}}')
    elif fault == "samples_fifo":
        samples.unlink()
        os.mkfifo(samples)
    elif fault == "samples_missing_column":
        samples.write_text("index,path\n0,a\n1,b\n")
    elif fault == "samples_not_numbers":
        samples.write_text("index,label,pred,correct_top1\n0,1,x,1\n1,1,0,yes\n")
    elif fault == "samples_edited":  # one more correct than the record's top-1 says: a p-value would move
        samples.write_text("index,label,pred,correct_top1\n0,1,1,1\n1,1,1,1\n")
    elif fault == "samples_swapped":  # the same counts, other videos right: only the record's sha256 tells
        samples.write_text("index,path,label,pred,top5,correct_top1,correct_top5,label_score\n"
                           "0,v0.mp4,1,0,1 0,0,1,0.5\n1,v1.mp4,1,1,1 0,1,1,0.5\n")
    elif fault == "samples_zero_link":
        samples.unlink()
        os.symlink("/dev/zero", samples)
    else:
        raise AssertionError(f"unknown fault {fault}")


def test_a_stray_file_in_the_store_costs_one_row(tmp_path):
    faults = _lines("store_faults.txt")
    suite = tmp_path / "s.yaml"
    suite.write_text("backbones: [{name: synthetic_vit_tiny}]\ndatasets: [{name: synthetic_motion, split: val}]\n"
                     "methods: [{name: dense}]\n")
    cases, meta = [], []
    for fault in faults:
        root = tmp_path / fault
        make_store(root, fault)
        for argv in ([["report", "--results", str(root), "--format", f] for f in ("term", "csv", "md", "json", "html")]
                     + [["status", "--results", str(root)],
                        ["run", str(suite), "--dry-run", "--results", str(root)]]):
            if argv[0] == "report" and argv[-1] == "html":
                argv += ["--out", str(tmp_path / f"{fault}.html")]
            cases.append({"argv": argv, "cwd": str(tmp_path)})
            meta.append((fault, " ".join(argv[:1] + argv[-2:])))
    problems = []
    for result, (fault, what) in zip(run_batch(cases, timeout=400, preload=PRELOAD), meta):
        text = result["out"] + result["err"]
        if result["exc"] is not None or "Traceback" in text or result["rc"] != 0 or result["secs"] > 15:
            problems.append(f"{fault}: {what}: rc {result['rc']}, {result['secs']:.1f} s\n{result['exc'] or text[-800:]}")
            continue
        if "\x1b" in text or "\x07" in text:
            problems.append(f"{fault}: {what}: an escape sequence reached the terminal")
        if what.startswith("report") and "--format term" in " ".join(what.split()[:3]) and "dense" not in result["out"]:
            problems.append(f"{fault}: {what}: the good record is missing")
        if what.startswith("report") and fault.startswith("samples") and "samples" not in result["err"]:
            problems.append(f"{fault}: {what}: no warning names the samples file:\n{result['err']}")
        if what.startswith("report") and not fault.startswith("samples") and fault != "dangling_link" \
                and "--format term" in what and "invalid" not in result["out"]:
            problems.append(f"{fault}: {what}: no invalid row for the stray file:\n{result['out'][-600:]}")
    assert not problems, f"{len(problems)} of {len(cases)} store cases not handled cleanly:\n\n" + "\n\n".join(problems)


def test_hostile_command_lines_are_refused_before_the_work(tmp_path):
    (tmp_path / "ok.pth").write_bytes(b"weights")
    (tmp_path / "a_dir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    make_store(tmp_path / "store_ok", "torn")
    (tmp_path / "s.yaml").write_text("backbones: [{name: synthetic_vit_tiny}]\n"
                                     "datasets: [{name: synthetic_motion, split: val}]\nmethods: [{name: dense}]\n")
    cases, meta = [], []
    for needle, argv in _case_lines("cli.txt"):
        cases.append({"argv": argv.split(), "cwd": str(tmp_path)})
        meta.append((argv, needle))
    for result, (what, needle) in zip(run_batch(cases, timeout=300, preload=PRELOAD), meta):
        assert_refused(result, what, needle)
    assert (tmp_path / "ok.pth").read_bytes() == b"weights"  # train without --force never overwrote it


@pytest.mark.parametrize("value", ["nan", "inf", "-5", "0", "1e30"])
def test_non_finite_logits_never_make_an_ok_record(value):
    """The last line of defence: whatever the numbers, a batch with non-finite logits fails its cell."""
    import torch

    from harness.measure.accuracy import AccuracyAccumulator, PredictionError

    acc = AccuracyAccumulator("prob", 1)
    logits = torch.zeros(2, 1, 12)
    logits[1, 0, 3] = float(value)
    if torch.isfinite(logits).all():
        acc.add(indices=[0, 1], paths=["a", "b"], labels=[0, 1], failed=[], logits=logits)
        return
    with pytest.raises(PredictionError, match="not finite"):
        acc.add(indices=[0, 1], paths=["a", "b"], labels=[0, 1], failed=[], logits=logits)


def test_a_label_beyond_the_head_fails_the_cell_with_file_and_label():
    import torch

    from harness.measure.accuracy import AccuracyAccumulator, PredictionError

    acc = AccuracyAccumulator("prob", 1)
    with pytest.raises(PredictionError, match=r"b\.mp4: label 12 is outside the model's 12-class head"):
        acc.add(indices=[0, 1], paths=["a.mp4", "b.mp4"], labels=[0, 12], failed=[], logits=torch.zeros(2, 1, 12))


def test_worker_death_carries_its_last_error_line(tmp_path):
    from harness.files import last_error_line

    log = tmp_path / "log.err"
    log.write_text("loading\nTraceback (most recent call last):\n  File x\nIndexError: index 127 is out of bounds\n"
                   "cleaning up\n")
    assert last_error_line(str(log)) == "IndexError: index 127 is out of bounds"
    os.mkfifo(tmp_path / "fifo")
    assert last_error_line(str(tmp_path / "fifo")) == ""  # never blocks
    assert last_error_line("/dev/zero") == ""


def test_disk_full_is_one_line_and_says_how_to_resume(monkeypatch, capsys):
    import errno

    from harness import cli
    from harness.cli import validate

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "results/cells/x.json")

    monkeypatch.setattr(validate, "run", full)  # build_parser binds it when main builds the parser
    assert cli.main(["validate", "x.yaml"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "again to resume" in err[0]


def test_markdown_and_csv_neutralise_links_and_hidden_formulas():
    from harness.report.safe import csv_cell, markdown

    assert "](" not in markdown("[x](javascript:alert(1))").replace("\\]", "")
    assert not markdown("![i](http://e/x.png)").startswith("![")
    for text in ("\x08=cmd", "\x00=1+1", "\x1b[31m=HYPERLINK()", " =1"):
        assert csv_cell(text).startswith("'")



def test_an_image_renamed_mp4_is_no_video_for_pyav_either(tmp_path):
    """Coverage must not depend on the decoder: decord refuses a JPEG named .mp4, so PyAV does too."""
    np = pytest.importorskip("numpy")
    pytest.importorskip("av")
    from PIL import Image

    from harness.data.decode import pyav_frames

    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "still.jpg")
    os.rename(tmp_path / "still.jpg", tmp_path / "clip.mp4")
    with pytest.raises(ValueError, match="an image"):
        pyav_frames(str(tmp_path / "clip.mp4"))


def test_a_dead_local_worker_names_its_last_error_in_the_record(tmp_path):
    """``worker_died`` (local executor) and ``_write_lost_job`` carry the log's last error line."""
    import types

    from harness.run.guard import exit_path, worker_died

    log = tmp_path / "0_0_log.err"
    log.write_text("Traceback (most recent call last):\n  File \"x\", line 1\nIndexError: index 127 is out of "
                   "bounds for dimension 1 with size 12\n")
    job = types.SimpleNamespace(job_id="0", paths=types.SimpleNamespace(folder=tmp_path, stderr=log))
    with open(exit_path(str(tmp_path), "0"), "w") as f:
        json.dump({"returncode": 1, "pid": 4242, "why": None}, f)
    err = worker_died(job)
    assert "exited with code 1" in str(err) and "last error: IndexError: index 127" in str(err)


def test_a_byte_order_mark_does_not_hide_the_first_video(tmp_path):
    from harness.data.annotations import read_video_list

    (tmp_path / "list.txt").write_bytes("\ufeffa.mp4 0\nb.mp4 1\n".encode("utf-8"))
    assert [it.path for it in read_video_list(str(tmp_path / "list.txt"))] == ["a.mp4", "b.mp4"]


def test_labels_are_ascii_whole_numbers(tmp_path):
    from harness.data.annotations import read_video_list

    for label in ("\u0663", "1_1", "\uff11", "1.0"):
        (tmp_path / "list.txt").write_text(f"a.mp4 0\nb.mp4 {label}\n", encoding="utf-8")
        with pytest.raises(ValueError, match=r"list\.txt:2: label .* is not an integer"):
            read_video_list(str(tmp_path / "list.txt"))
