from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing as mp

import pytest

from harness.store import ResultStore

WRITERS = 8
RECORDS_PER_WRITER = 25


def key_of(*parts) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def record(key: str, **fields) -> dict:
    return {"schema": 1, "key": key, "status": "ok", "metrics": {"top1": 0.5}, **fields}


def write_many(root: str, writer: int, start, count: int) -> None:
    start.wait()
    store = ResultStore(root)
    for i in range(count):
        store.write(record(key_of(writer, i), writer=writer, index=i))


def write_same_key(root: str, writer: int, start, count: int) -> None:
    start.wait()
    store = ResultStore(root)
    payload = "x" * (2000 + 500 * writer)
    for i in range(count):
        store.write(record(key_of("shared"), writer=writer, index=i, payload=payload))


def run_writers(target, root, count: int) -> None:
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=target, args=(str(root), w, start, count)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * WRITERS


def test_write_read_roundtrip(tmp_path):
    store = ResultStore(tmp_path / "results")
    key = key_of("a")
    path = store.write(record(key, label="tome r=8"))
    assert path == store.path_for(key) == tmp_path / "results" / "cells" / f"{key}.json"
    assert store.read(key) == record(key, label="tome r=8")
    assert store.is_finished(key)
    assert store.read(key_of("missing")) is None
    assert not store.is_finished(key_of("missing"))


def test_written_json_is_sorted_and_indented(tmp_path):
    store = ResultStore(tmp_path)
    path = store.write({"key": "k1", "zeta": 1, "alpha": {"b": 2, "a": 1}})
    assert path.read_text() == json.dumps({"alpha": {"a": 1, "b": 2}, "key": "k1", "zeta": 1}, indent=2) + "\n"


def test_failed_record_is_not_finished(tmp_path):
    store = ResultStore(tmp_path)
    store.write(record("k1", status="failed", error={"type": "OOM", "message": "boom"}))
    assert store.read("k1")["status"] == "failed"
    assert not store.is_finished("k1")


def test_nan_and_inf_are_written_as_null(tmp_path):
    store = ResultStore(tmp_path)
    store.write({"key": "k1", "metrics": {"top1": math.nan, "clips_per_s": math.inf, "ok": 1.5},
                 "views": [1.0, -math.inf], "pair": (math.nan, 2)})
    text = store.path_for("k1").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert store.read("k1") == {"key": "k1", "metrics": {"top1": None, "clips_per_s": None, "ok": 1.5},
                                "views": [1.0, None], "pair": [None, 2]}


def test_numpy_scalars_are_written(tmp_path):
    np = pytest.importorskip("numpy")
    store = ResultStore(tmp_path)
    store.write({"key": "k1", "top1": np.float32(0.25), "n": np.int64(3), "bad": np.float32("nan")})
    assert store.read("k1") == {"key": "k1", "top1": 0.25, "n": 3, "bad": None}


def test_bad_keys_are_rejected(tmp_path):
    store = ResultStore(tmp_path)
    for key in ("", "../escape", "a/b", None):
        with pytest.raises(ValueError):
            store.path_for(key)
    with pytest.raises(ValueError, match="no 'key'"):
        store.write({"status": "ok"})


def test_unserializable_record_leaves_no_file(tmp_path):
    store = ResultStore(tmp_path)
    with pytest.raises(TypeError, match="JSON-serializable"):
        store.write({"key": "k1", "obj": object()})
    assert store.read("k1") is None
    assert not store.cells_dir.exists() or not any(store.cells_dir.iterdir())


def test_empty_store_lists_nothing(tmp_path):
    assert ResultStore(tmp_path / "nowhere").records() == []


def test_corrupt_files_are_one_invalid_row_each_and_temp_files_skipped(tmp_path, caplog):
    store = ResultStore(tmp_path)
    store.write(record("good"))
    store.path_for("torn").write_text('{"key": "torn", "status": ')
    store.path_for("list").write_text("[1, 2]")
    store.path_for("binary").write_bytes(b"\xff\xfe\x00garbage")
    (store.cells_dir / ".good.123.abc.tmp").write_text("{")
    with caplog.at_level(logging.WARNING, logger="harness.store"):
        records = store.records()
    assert [r["key"] for r in records] == ["binary", "good", "list", "torn"]
    assert [r["status"] for r in records] == ["invalid", "ok", "invalid", "invalid"]
    assert "not UTF-8" in records[0]["error"]["message"] and "not an object" in records[2]["error"]["message"]
    assert sum("torn.json" in m for m in caplog.messages) == 1
    assert store.read("torn") is None


def test_concurrent_writers_of_distinct_keys_lose_nothing(tmp_path):
    root = tmp_path / "results"
    run_writers(write_many, root, RECORDS_PER_WRITER)
    store = ResultStore(root)
    records = store.records()
    expected = {key_of(w, i) for w in range(WRITERS) for i in range(RECORDS_PER_WRITER)}
    assert len(records) == WRITERS * RECORDS_PER_WRITER
    assert {r["key"] for r in records} == expected
    for r in records:
        assert r["key"] == key_of(r["writer"], r["index"])
    assert list(store.cells_dir.glob(".*")) == []


def test_concurrent_writers_of_one_key_leave_a_complete_file(tmp_path):
    root = tmp_path / "results"
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=write_same_key, args=(str(root), w, start, 20)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    store = ResultStore(root)
    path = store.path_for(key_of("shared"))
    start.set()
    reads = 0
    while any(p.is_alive() for p in procs):
        if path.exists():
            text = path.read_text()
            parsed = json.loads(text)
            assert len(parsed["payload"]) == 2000 + 500 * parsed["writer"]
            reads += 1
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * WRITERS
    final = store.read(key_of("shared"))
    assert final is not None and final["index"] == 19
    assert [p.name for p in store.cells_dir.iterdir()] == [path.name]


def test_numerics_code_follows_the_method_its_imports_and_named_methods(tmp_path):
    import os
    import shutil

    from harness.provenance import NUMERICS_PATHS, numerics_code

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for rel in list(NUMERICS_PATHS) + ["methods/tome", "methods/sta", "methods/random_baselines"]:
        src, dst = os.path.join(repo, rel), tmp_path / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if os.path.isdir(src):
            shutil.copytree(src, dst)
        else:
            shutil.copy(src, dst)

    def ids():
        return {m: numerics_code(m, p, root=str(tmp_path))["id"]
                for m, p in [("dense", {}), ("tome", {"r": 8}), ("sta", {}), ("random_drop", {"match": "sta"})]}

    before = ids()
    assert numerics_code("random_drop", {"match": "sta"}, root=str(tmp_path))["paths"][-3:] == [
        "methods/random_baselines", "methods/sta", "methods/tome"]  # its import (ToMe's merge) and its match
    with open(tmp_path / "methods" / "sta" / "reducer.py", "a") as f:
        f.write("\n# changed\n")
    after = ids()
    assert after["sta"] != before["sta"] and after["random_drop"] != before["random_drop"]
    assert after["tome"] == before["tome"] and after["dense"] == before["dense"]
    with open(tmp_path / "harness" / "models" / "video_vit.py", "a") as f:
        f.write("\n# changed\n")
    assert all(v != after[k] for k, v in ids().items())  # shared model code: every method


@pytest.mark.parametrize("metrics", [None, "garbage", {}, {"top1": None}, {"top1": "0.5"}, {"top1": 1.5},
                                     {"top1": -0.1}, {"top1": True}, {"top1": 0.5, "top5": 0.4},
                                     {"top1": 0.5, "num_videos": 0}, {"top1": 0.5, "num_videos": 2.5}])
def test_ok_record_with_garbage_metrics_is_not_finished(tmp_path, metrics):
    """A damaged or hand-edited record is computed again rather than counted as done forever."""
    store = ResultStore(tmp_path)
    store.write(record("k1", metrics=metrics))
    assert store.read("k1")["status"] == "ok"
    assert not store.is_finished("k1")


def test_ok_record_whose_key_field_differs_from_its_file_is_not_finished(tmp_path):
    store = ResultStore(tmp_path)
    store.write(record("k1"))
    (tmp_path / "cells" / "k1.json").rename(tmp_path / "cells" / "k2.json")
    assert not store.is_finished("k2") and not store.is_finished("k1")
    store.write(record("k3", metrics={"top1": 0.25, "top5": 0.75, "num_videos": 4}))
    assert store.is_finished("k3")
