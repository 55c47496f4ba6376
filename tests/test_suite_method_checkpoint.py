"""A method entry's own ``checkpoint:`` (released weights per setting, e.g. HaltingVT's per-config files)."""
import os

import yaml

from harness.suite import load_suite, validate_suite


def write(tmp_path, methods, **extra):
    suite = {"name": "ck", "backbones": [{"name": "synthetic_vit_tiny", "checkpoint": "dense.pth"}],
             "datasets": [{"name": "synthetic_motion"}], "methods": methods, **extra}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    (tmp_path / "dense.pth").write_bytes(b"weights")  # validate reports a missing file: keep the suite valid
    return path


def test_method_checkpoint_replaces_the_backbones_for_its_cells_only(tmp_path):
    (tmp_path / "dense.pth").write_bytes(b"a")
    (tmp_path / "b5.pth").write_bytes(b"b")
    path = write(tmp_path, [{"name": "dense"},
                            {"name": "haltingvt", "halt_center": 5, "mode": ["masked", "packed"],
                             "checkpoint": "b5.pth"}])
    assert validate_suite(path) == []
    cells = load_suite(path).cells()
    from harness.training import resolve_checkpoint

    assert [resolve_checkpoint(c.config(), "results") for c in cells] == [
        str(tmp_path / "dense.pth"), str(tmp_path / "b5.pth"), str(tmp_path / "b5.pth")]  # relative to the suite
    # the backbone keeps the suite's checkpoint, so a report shows these cells in the dense model's table
    assert {c.backbone["checkpoint"] for c in cells} == {str(tmp_path / "dense.pth")}
    assert [c.label for c in cells] == ["dense", "haltingvt halt_center=5 weights=b5.pth",
                                        "haltingvt halt_center=5 mode=packed weights=b5.pth"]
    assert "checkpoint" not in cells[1].method["params"]
    key = cells[1].key
    (tmp_path / "b5.pth").write_bytes(b"other weights")  # the file's content is part of the key
    from harness import files

    files._SHA_CACHE.clear()
    assert load_suite(path).cells()[1].key != key


def test_checkpoint_and_finetune_together_is_a_problem(tmp_path):
    path = write(tmp_path, [{"name": "haltingvt", "finetune": "ft", "checkpoint": "x.pth"}],
                 finetunes=[{"name": "ft", "method": {"name": "haltingvt"},
                             "dataset": {"name": "synthetic_motion", "split": "train"}}])
    text = "\n".join(map(str, validate_suite(path)))
    assert "methods[0].checkpoint" in text and "not both" in text


def test_unset_method_checkpoint_variable_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("SOME_HALTINGVT_FILE", raising=False)
    path = write(tmp_path, [{"name": "haltingvt", "checkpoint": "${SOME_HALTINGVT_FILE}"}],
                 variables={"SOME_HALTINGVT_FILE": "the released checkpoint"})
    (problem,) = validate_suite(path)
    assert problem.field == "methods[0].checkpoint"
    assert "'SOME_HALTINGVT_FILE' is not set" in problem.message and "the released checkpoint" in problem.message
    assert os.path.isfile(path)
