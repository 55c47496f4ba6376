"""Per-cell locks (issue 18 item 9): a cell held by another live run is skipped with its pid, and the
store is read again for it at the end. (The two-process test is in test_interrupt.py.)"""
import os

import yaml

from harness.cli import main
from harness.run.local import CellLocks
from harness.store import ResultStore
from harness.suite import load_suite
from conftest import FAST_MEASURE


def _suite(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({
        "name": "locks", "backbones": [{"name": "synthetic_vit_tiny"}],
        "datasets": [{"name": "synthetic_motion", "num_train": 0, "num_val": 2}],
        "methods": [{"name": "dense"}], "eval": {"batch_size": 2}, "measure": FAST_MEASURE}))
    return str(path)


def test_a_held_lock_is_refused_with_its_owner_and_freed_on_release(tmp_path):
    a, b = CellLocks(str(tmp_path)), CellLocks(str(tmp_path))
    assert a.acquire("k1") is None
    owner = b.acquire("k1")
    assert owner["pid"] == os.getpid() and owner["host"]
    assert b.acquire("k2") is None  # other keys are free
    a.release("k1")
    assert not os.path.exists(tmp_path / "locks" / "k1.owner")
    assert b.acquire("k1") is None
    b.release_all()
    assert a.acquire("k1") is None and a.acquire("k2") is None


def test_run_skips_a_cell_another_run_computes(tmp_path, capsys):
    path, results = _suite(tmp_path), str(tmp_path / "r")
    (cell,) = load_suite(path).cells()
    other = CellLocks(results)
    assert other.acquire(cell.key) is None  # "another run" holds the cell
    assert main(["run", path, "--executor", "debug", "--results", results]) == 0
    out = capsys.readouterr().out
    assert f"cell {cell.key[:12]} is being computed by another run (pid {os.getpid()}); skipped" in out
    assert "still being computed by the other run" in out
    assert ResultStore(results).records() == []
    other.release_all()
