"""``CellSpec``: the keys and configs every shipped suite had before it owned them, its JSON and pickle
round trips, and the regime defaults stated once."""
import dataclasses
import json
import os
import pickle
import re

import pytest

from harness.suite import CellSpec, EvalConfig, MeasureConfig, MethodSpec, Regime, load_suite

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "tests", "reference", "cell_keys.json")  # tests/reference/make_cell_keys.py


@pytest.fixture
def shipped_suites(monkeypatch):
    """Every ``${VAR}`` of the shipped suites at a placeholder, the decoder's identity fixed (as the golden)."""
    import harness.data.decode as decode

    for name in os.listdir(os.path.join(ROOT, "suites")):
        with open(os.path.join(ROOT, "suites", name)) as f:
            for var in re.findall(r"\$\{([A-Z0-9_]+)\}", f.read()):
                monkeypatch.setenv(var, f"/nonexistent/{var}")
    monkeypatch.setattr(decode, "decoder_identity", lambda name: "decord 0.6.0" if name == "decord" else name)
    return sorted(n for n in os.listdir(os.path.join(ROOT, "suites")) if n.endswith(".yaml"))


def test_keys_labels_and_configs_equal_the_ones_computed_before_cellspec(shipped_suites):
    with open(GOLDEN) as f:
        golden = json.load(f)
    assert len(golden) >= 10 and sum(len(v) for v in golden.values()) >= 150
    for name, rows in golden.items():
        cells = load_suite(os.path.join(ROOT, "suites", name)).cells()
        got = [[c.key, c.label, json.loads(json.dumps(c.config(), default=str))] for c in cells]
        assert got == rows, name


def _legacy_key(spec: CellSpec) -> str:
    """The key as ``Cell.key`` computed it before ``CellSpec`` (a frozen copy of main at 11a2ad2)."""
    import hashlib

    from harness.data.decode import decoder_provenance
    from harness.data.registry import strip_unkeyed_fields
    from harness.models import hf

    defaults = (("eval", "precision", "fp32"), ("measure", "precision", None), ("measure", "compile", "off"),
                ("measure", "sdpa_backend", "auto"))
    config = spec.config()
    config["eval"].pop("num_workers", None)
    config["eval"].pop("share_decode", None)
    for part, field, default in defaults:
        if config[part].get(field, default) == default:
            config[part].pop(field, None)
    strip_unkeyed_fields(config["dataset"])
    method = spec.config()["method"]
    checkpoint = method.get("weights") or spec.backbone.get("checkpoint")
    obj = spec.dataset_object
    material = obj.key_material() if hasattr(obj, "key_material") else {}
    weights = hf.content_key(checkpoint) if checkpoint else None
    if spec.finetune:
        weights = "finetune:" + method["finetune"]["key"]
    payload = {"schema": 1, "config": config, "checkpoint": weights, "dataset": material,
               **decoder_provenance(spec.dataset)}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def test_every_loadable_shipped_suite_keys_its_cells_as_before(shipped_suites):
    """Also the suites the golden leaves out (they name files of this checkout): the same key rule."""
    checked = 0
    for name in shipped_suites:
        try:
            cells = load_suite(os.path.join(ROOT, "suites", name)).cells()
        except ValueError:
            continue  # needs data it cannot find: the golden test names the ones that load
        for cell in cells:
            assert cell.key == _legacy_key(cell), (name, cell.label)
            checked += 1
    assert checked >= 200


def _spec(**measure) -> CellSpec:
    return CellSpec({"name": "video_vit", "depth": 2, "embed_dim": 32, "num_heads": 2},
                    {"name": "synthetic_motion", "num_val": 8}, MethodSpec("tome", {"r": 4}),
                    EvalConfig(batch_size=2), MeasureConfig(**measure), label="tome r=4",
                    suite={"name": "s", "file": "/s.yaml", "version": 1})


def test_spec_round_trips_through_json_and_pickle_with_its_key():
    spec = _spec(compile="default")
    data = json.loads(json.dumps(spec.to_json()))
    back = CellSpec.from_json(data)
    assert back == spec and back.key == spec.key and back.config() == spec.config()
    assert back.label == "tome r=4" and back.suite == spec.suite and back.regime == spec.regime
    restored = pickle.loads(pickle.dumps(spec))
    assert restored == spec and restored.key == spec.key
    data["key"] = "x" * 64  # the carried key is the one used: a worker need not see the checkpoint
    assert CellSpec.from_json(data).key == "x" * 64


def test_the_key_ignores_what_cannot_change_results_and_follows_what_can():
    base = _spec()
    assert dataclasses.replace(base, eval=EvalConfig(batch_size=2, num_workers=7, share_decode=False)).key == base.key
    assert dataclasses.replace(base, label="other", suite={"name": "t"}).key == base.key
    assert dataclasses.replace(base, eval=EvalConfig(batch_size=3)).key != base.key
    assert _spec(sdpa_backend="math").key != base.key
    assert dataclasses.replace(base, method=MethodSpec("tome", {"r": 5})).key != base.key
    assert base.share_key == dataclasses.replace(base, method=MethodSpec("dense")).share_key
    assert base.share_key != dataclasses.replace(base, eval=EvalConfig(batch_size=3)).share_key


def test_regime_defaults_are_stated_once_and_disagreement_is_refused():
    assert (EvalConfig().precision, MeasureConfig().sdpa_backend, MeasureConfig().compile) == \
        (Regime().precision, Regime().sdpa_backend, Regime().compile)
    assert Regime.from_config({}) == Regime() and Regime.from_config({"eval": {"precision": None}}) == Regime()
    assert _spec(compile="default").regime == Regime("fp32", "auto", "default")
    with pytest.raises(ValueError, match="differs from eval.precision"):
        _ = _spec(precision="bf16").regime
