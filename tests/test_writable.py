"""A results directory that cannot be written is found before any compute, with one line naming it
(issue 18 item 7).

These tests run as root on the project's machines, and root writes through any mode bits, so a
``chmod a-w`` folder would not show the failure. They use what fails for root too (a results path
under a regular file, where ``mkdir`` fails) and, for the read-only case, a patched ``os.access`` /
``tempfile.mkstemp`` standing in for a read-only mount or a folder without write permission.
"""
from __future__ import annotations

import os
import tempfile

import pytest
import yaml

from harness.cli import main
from harness.run.local import NotWritable, check_writable
from conftest import FAST_MEASURE


@pytest.fixture
def suite(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({
        "name": "writable", "backbones": [{"name": "synthetic_vit_tiny"}],
        "datasets": [{"name": "synthetic_motion", "num_train": 0, "num_val": 4}],
        "methods": [{"name": "dense"}], "eval": {"batch_size": 2}, "measure": FAST_MEASURE}))
    return str(path)


def _one_line_error(capsys, folder: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert folder in err and "not writable" in err
    return err


@pytest.mark.parametrize("command", [["run"], ["run", "--executor", "debug"], ["finetune"], ["bench"]])
def test_results_under_a_regular_file_is_refused_up_front(tmp_path, suite, capsys, command):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    results = str(blocker / "results")
    argv = [command[0], suite, *command[1:], "--results", results]
    if command[0] == "bench":
        argv += ["--batch-sizes", "1", "--repeats", "1"]
    assert main(argv) == 2
    _one_line_error(capsys, results)


def test_read_only_cells_folder_is_refused_before_compute(tmp_path, suite, capsys, monkeypatch):
    results = tmp_path / "results"
    cells = os.path.join(str(results), "cells")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if os.fspath(p) == cells else real_access(p, mode))
    assert main(["run", suite, "--executor", "debug", "--results", str(results)]) == 2
    _one_line_error(capsys, cells)
    assert not (results / "cells").exists() or not any((results / "cells").iterdir())  # nothing computed


def test_a_failing_write_is_caught_even_when_access_says_yes(tmp_path, monkeypatch):
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kw):
        if dir is not None and dir.endswith("logs"):
            raise OSError(30, "Read-only file system")
        return real(*args, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    with pytest.raises(NotWritable, match=r"logs is not writable \(Read-only file system\)"):
        check_writable(str(tmp_path))
    check_writable(str(tmp_path), ("cells", "finetunes"))  # the others are fine
    assert sorted(os.listdir(tmp_path / "cells")) == []  # the probe file is removed


def test_html_report_without_out_goes_under_results(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "elsewhere"
    assert main(["report", "--results", str(results), "--format", "html"]) == 0
    assert (results / "report.html").is_file() and not (tmp_path / "results").exists()
    assert str(results / "report.html") in capsys.readouterr().err


def test_slurm_submission_checks_every_folder_it_writes_shards_and_code_too(tmp_path, suite, capsys, monkeypatch):
    """``run --executor slurm`` writes cells, logs, fine-tunes, shard folders, the code snapshot and the
    submission folder: a read-only one of any of them is refused before anything is submitted."""
    from harness.cluster import profiles
    from harness.layout import writes_for

    assert {"cells", "shards", "code", "slurm", "finetunes", "logs"} <= set(writes_for("run-slurm"))
    monkeypatch.setattr(profiles, "load_profile", lambda name: profiles.SlurmProfile(name="test"))
    monkeypatch.setattr(profiles, "check_on_cluster", lambda profile: None)
    real_access = os.access
    for sub in ("shards", "code"):
        results = tmp_path / f"results-{sub}"
        blocked = os.path.join(str(results), sub)
        monkeypatch.setattr(os, "access", lambda p, mode, blocked=blocked, **kw:
                            False if os.fspath(p) == blocked else real_access(p, mode))
        assert main(["run", suite, "--executor", "slurm", "--results", str(results)]) == 2
        _one_line_error(capsys, blocked)
        assert not (results / "slurm").exists() or not any((results / "slurm").iterdir())  # nothing submitted
