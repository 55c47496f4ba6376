"""VideoMAE V2 distilled ViT-S/ViT-B on K400: presets, the K710 -> K400 head of the official files, suites.

The suites run on fixture data in the official K400 layout (``tests/real_layouts.py``) with narrow random
checkpoints in mmaction2's layout (``{'state_dict': backbone.*, cls_head.fc_cls.*}``, 400 classes) and in
the official VideoMAE V2 layout (``{'module': ...}`` with a 710-class head).
"""
import os
import re

import pytest
import torch
import yaml

import harness
from harness.cli import main
from harness.models.k710 import K710_TO_K400
from harness.models.presets import resolve_config
from harness.store import ResultStore
from harness.suite import validate_suite
from tests import real_layouts as rl
from tests.reference.videomae_official import to_mmaction2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NARROW = {"embed_dim": 32, "num_heads": 2}
SMALL = {**NARROW, "num_frames": 4, "img_size": 32}  # unit tests: 8 tokens
SUITES = {"k400_videomaev2_s": "VIDEOMAEV2_S_K400", "k400_videomaev2_b": "VIDEOMAEV2_B_K400"}
# the dense cost per view and STA's published fvcore counts (methods.md §4.4), same ViT as VideoMAE v1
PUBLISHED_GMACS = {"k400_videomaev2_s": {"dense": 56.95, "sta r=16": 49.15, "sta r=64": 28.80},
                   "k400_videomaev2_b": {"dense": 180.5, "sta r=16": 157.9, "sta r=64": 96.5}}


def suite_path(name):
    return os.path.join(ROOT, "suites", f"{name}.yaml")


def official_k710(path, backbone, seed=0, **dims):
    """Random weights in the official VideoMAE V2 distilled layout: ``{'module': ...}``, 710-way head."""
    torch.manual_seed(seed)
    state = harness.build_model(backbone, num_classes=710, **dims).state_dict()
    torch.save({"module": state}, path)
    return state


def mmaction2_k400(path, backbone, seed=0, **dims):
    torch.manual_seed(seed)
    model = harness.build_model(backbone, **dims)
    for p in model.parameters():  # non-zero biases, so a mis-mapped key shows in the logits
        torch.nn.init.normal_(p, std=0.02)
    torch.save({"state_dict": to_mmaction2(model.state_dict()), "meta": {}}, path)
    return model


def test_presets_are_the_videomae_v1_vit():
    for size, (dim, heads) in {"s": (384, 6), "b": (768, 12)}.items():
        cfg = resolve_config(f"videomaev2_vit_{size}16")
        assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.num_classes, cfg.num_frames, cfg.img_size,
                cfg.tubelet_size, cfg.norm_eps) == (dim, 12, heads, 400, 16, 224, 2, 1e-6)


def test_k710_map_is_400_distinct_rows():
    assert len(K710_TO_K400) == 400 and len(set(K710_TO_K400)) == 400
    assert all(0 <= i < 710 for i in K710_TO_K400)


def test_official_k710_head_keeps_the_k400_rows(tmp_path):
    state = official_k710(tmp_path / "vit_s_k710.pth", "videomaev2_vit_s16", **SMALL)
    model = harness.build_model("videomaev2_vit_s16", checkpoint=str(tmp_path / "vit_s_k710.pth"), **SMALL)
    assert model.checkpoint_layout == "videomae+k710_to_k400"
    rows = torch.tensor(K710_TO_K400)
    assert torch.equal(model.head.weight, state["head.weight"][rows])
    assert torch.equal(model.head.bias, state["head.bias"][rows])
    # a 710-way model on the same file gives the same scores for those classes
    full = harness.build_model("videomaev2_vit_s16", checkpoint=str(tmp_path / "vit_s_k710.pth"),
                               num_classes=710, **SMALL)
    torch.manual_seed(4)
    clip = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(clip), full(clip)[:, rows], atol=1e-6)


def test_mmaction2_port_loads(tmp_path):
    source = mmaction2_k400(tmp_path / "port.pth", "videomaev2_vit_b16", **SMALL)
    model = harness.build_model("videomaev2_vit_b16", checkpoint=str(tmp_path / "port.pth"), **SMALL)
    assert model.checkpoint_layout == "mmaction2"
    torch.manual_seed(5)
    clip = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(clip), source(clip))


@pytest.mark.parametrize("name", sorted(SUITES))
def test_validate_names_every_missing_variable(name, monkeypatch):
    variables = [SUITES[name], "K400_VIDEOS", "K400_VAL_LIST"]
    for var in variables:
        monkeypatch.delenv(var, raising=False)
    problems = [str(p) for p in validate_suite(suite_path(name))]
    for var in variables:
        assert any(f"environment variable {var!r} is not set" in p and "it must point to" in p
                   for p in problems), (var, problems)


@pytest.fixture(scope="module")
def k400(tmp_path_factory):
    return rl.write_k400(str(tmp_path_factory.mktemp("k400")))


@pytest.mark.parametrize("name", sorted(SUITES))
def test_dry_run_shows_the_published_gmacs_and_every_method(name, k400, tmp_path, monkeypatch, capsys):
    for var, value in k400.items():
        monkeypatch.setenv(var, value)
    size = name[-1]
    monkeypatch.setenv(SUITES[name], str(tmp_path / "ckpt.pth"))
    mmaction2_k400(tmp_path / "ckpt.pth", f"videomaev2_vit_{size}16", **SMALL)  # hashed, not loaded
    assert validate_suite(suite_path(name)) == []
    capsys.readouterr()
    # the costs at the real dims (a meta-device forward per cell; three cells keep it fast)
    only = ["--set", "methods=[{name: dense}, {name: sta, r: [16, 64]}]"]
    assert main(["run", suite_path(name), "--dry-run", "--results", str(tmp_path / "results"), *only]) == 0
    out = capsys.readouterr().out
    shown = {}
    for line in out.splitlines():
        for label in PUBLISHED_GMACS[name]:
            m = re.search(rf"\s{re.escape(label)}\s+([0-9.]+)\s", line)
            if m:
                shown[label] = float(m.group(1))
    assert shown == pytest.approx(PUBLISHED_GMACS[name], abs=0.05), out


@pytest.mark.parametrize("name", sorted(SUITES))
def test_suite_lists_every_method_that_reduces_the_videomae_checkpoint(name):
    problem = unlisted_methods(suite_path(name), compared_methods())
    assert problem is None, problem


def compared_methods() -> set:
    """What these suites compare: every registered method that reduces the VideoMAE checkpoint itself (not
    those that bring their own network or resample the input)."""
    import methods
    from harness.models.compatibility import families_supported

    return {m for m in methods.list_methods() if "videomae" in families_supported(methods.get_method(m))
            and methods.get_method(m).architecture is None}


def unlisted_methods(path: str, expected: set):
    """The problem naming the methods of ``expected`` the suite lists no entry for, and how to add one; or None."""
    with open(path, encoding="utf-8") as f:
        listed = {entry["name"] for entry in yaml.safe_load(f)["methods"]}
    missing = sorted(expected - listed)
    if not missing:
        return None
    return (f"{os.path.relpath(path, ROOT)} compares every method that runs on VideoMAE's checkpoint, but lists no "
            f"entry for {', '.join(missing)}: add one under `methods:` with settings at this backbone's scale "
            f"(1568 tokens, 12 blocks), e.g. `- {{name: {missing[0]}, r: [16, 32]}}` (a list is a sweep: one "
            "cell per value); docs/adding_a_method.md, section Suites")


def test_the_every_method_check_names_a_missing_method_and_how_to_add_it():
    problem = unlisted_methods(suite_path("k400_videomaev2_s"), compared_methods() | {"zz_new"})
    assert "lists no entry for zz_new: add one under `methods:`" in problem and "{name: zz_new" in problem


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # the debug executor runs cells in this process


@pytest.mark.parametrize("layout", ["mmaction2", "official_k710"])
def test_suite_runs_end_to_end_on_fixture_data(layout, k400, tmp_path, monkeypatch, capsys, restore_threads):
    for var, value in k400.items():
        monkeypatch.setenv(var, value)
    ckpt = str(tmp_path / "ckpt.pth")
    if layout == "mmaction2":
        mmaction2_k400(ckpt, "videomaev2_vit_b16", **NARROW)
    else:
        official_k710(ckpt, "videomaev2_vit_b16", **NARROW)
    monkeypatch.setenv("VIDEOMAEV2_B_K400", ckpt)
    sets = ["eval.num_workers=0", "eval.batch_size=2", "measure.throughput=false", "measure.flops=false",
            "measure.threads=1", "backbones.0.embed_dim=32", "backbones.0.num_heads=2",
            "datasets.0.num_clips=1", "datasets.0.num_crops=1", f"datasets.0.label_map={k400['K400_LABEL_MAP']}",
            "methods=[{name: dense}, {name: tome, r: 32}, {name: sttm}]"]
    args = [a for s in sets for a in ("--set", s)]
    results = str(tmp_path / "results")
    assert main(["run", suite_path("k400_videomaev2_b"), "--executor", "debug", "--results", results,
                 "--limit", "2", *args]) == 0
    records = ResultStore(results).records()
    assert len(records) == 3 and {r["status"] for r in records} == {"ok"}, [r.get("error") for r in records]
    want = "mmaction2" if layout == "mmaction2" else "videomae+k710_to_k400"
    assert {r["provenance"]["checkpoint_layout"] for r in records} == {want}
    assert {r["metrics"]["num_videos"] for r in records} == {1}  # the fixture's 2nd video is truncated
    capsys.readouterr()
