"""Suites that chain fine-tuning -> evaluation: the finetunes section, its checks and the run."""
import json
import os

import pytest
import yaml

from harness.cli import main
from harness.store import ResultStore
from harness.suite import load_suite, validate_suite
from conftest import FAST_MEASURE as FAST

CKPT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "checkpoints", "synthetic_vit_tiny.pth"))
TRAIN = {"name": "synthetic_motion", "root": "data", "num_train": 16, "num_val": 8, "split": "train"}
VAL = {**TRAIN, "split": "val"}
FAST_MEASURE = {**FAST, "flops": True}


def write(tmp_path, methods, finetunes, name="ft.yaml"):
    suite = {"name": "ft", "backbones": [{"name": "synthetic_vit_tiny", "checkpoint": CKPT}],
             "datasets": [VAL], "methods": methods, "finetunes": finetunes,
             "eval": {"batch_size": 4, "num_workers": 0}, "measure": FAST_MEASURE}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(suite))
    return str(path)


FT = {"name": "tome8", "method": {"name": "tome", "r": 8}, "dataset": TRAIN,
      "recipe": {"epochs": 1, "batch_size": 8, "lr": 1e-5}, "threads": 2}


def test_cells_name_their_finetune_and_key_follows_its_content(tmp_path):
    suite = load_suite(write(tmp_path, [{"name": "dense"}, {"name": "tome", "finetune": "tome8"}], [FT]))
    dense, tuned = suite.cells()
    assert dense.finetune is None and dense.method.finetune is None
    assert tuned.method.finetune["name"] == "tome8" and tuned.method.params["r"] == 8
    assert tuned.label == "tome r=8 ft=tome8"
    assert [f.key() for f in suite.finetunes()] == [tuned.method.finetune["key"]]
    other = load_suite(write(tmp_path, [{"name": "tome", "finetune": "tome8"}],
                             [{**FT, "recipe": {**FT["recipe"], "lr": 2e-5}}], "b.yaml")).cells()[0]
    assert other.key != tuned.key and other.method.finetune["key"] != tuned.method.finetune["key"]


@pytest.mark.parametrize("methods, finetunes, field, text", [
    ([{"name": "tome", "finetune": "tome9"}], [FT], "methods[0].finetune", "did you mean 'tome8'"),
    ([{"name": "sta", "finetune": "tome8"}], [FT], "methods[0].finetune", "trains method 'tome'"),
    ([{"name": "tome", "finetune": "tome8", "r": 4}], [FT], "methods[0].r", "differs from the fine-tuned value"),
    ([{"name": "dense"}], [{**FT, "recipe": {"learning_rate": 1}}], "finetunes[0].recipe.learning_rate",
     "unknown key"),
    ([{"name": "dense"}], [{**FT, "method": {"name": "tomme"}}], "finetunes[0].method.name", "Did you mean"),
    ([{"name": "dense"}], [{**FT, "epochs": 3}], "finetunes[0].epochs", "unknown key"),
])
def test_bad_finetunes_are_reported_with_their_field(tmp_path, methods, finetunes, field, text):
    problems = validate_suite(write(tmp_path, methods, finetunes))
    assert any(p.field == field and text in p.message for p in problems), problems


def test_run_trains_first_then_evaluates_the_finetuned_weights(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, [{"name": "tome", "r": 8}, {"name": "tome", "finetune": "tome8"}], [FT])
    results = str(tmp_path / "results")
    assert main(["finetune", path, "--dry-run", "--results", results]) == 0
    assert "0/1 epochs" in capsys.readouterr().out
    assert main(["run", path, "--executor", "debug", "--results", results]) == 0
    records = {r["label"]: r for r in ResultStore(results).records()}
    tuned, plain = records["tome r=8 ft=tome8"], records["tome r=8"]
    assert tuned["status"] == "ok" and tuned["finetune"]["epochs"] == 1 and tuned["finetune"]["train_wall_s"] > 0
    key = tuned["config"]["method"]["finetune"]["key"]
    model_path = os.path.join(results, "finetunes", key, "model.pth")
    assert os.path.isfile(model_path)
    assert tuned["provenance"]["checkpoint_sha256"] != plain["provenance"]["checkpoint_sha256"]
    meta = json.loads(open(os.path.join(results, "finetunes", key, "meta.json")).read())
    assert meta["config"]["backbone"]["checkpoint"] == CKPT
    assert main(["finetune", path, "--dry-run", "--results", results]) == 0
    assert "finished" in capsys.readouterr().out


def test_cell_fails_clearly_when_its_finetune_is_missing(tmp_path):
    from harness.run.cell import CellJob
    from harness.run.task import run_group

    cell = load_suite(write(tmp_path, [{"name": "tome", "finetune": "tome8"}], [FT])).cells()[0]
    record = run_group([CellJob(cell, str(tmp_path / "results"))])[0]
    assert record["status"] == "failed" and "has not finished" in record["error"]["message"]


def test_a_list_of_finetunes_is_a_sweep(tmp_path):
    other = {**FT, "name": "tome8_long", "recipe": {**FT["recipe"], "epochs": 2}}
    suite = load_suite(write(tmp_path, [{"name": "tome", "finetune": ["tome8", "tome8_long"]}], [FT, other]))
    cells = suite.cells()
    assert [c.method.finetune["name"] for c in cells] == ["tome8", "tome8_long"]
    assert len({c.key for c in cells}) == 2 and len(suite.finetunes()) == 2
