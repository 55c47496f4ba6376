"""Every shipped real suite on fixture data written in its official layout, end to end on CPU.

The fixtures are the real formats (K400 official CSV + mp4/H.264, SSv2 JSON + webm/VP9, UCF101 split
files + avi/MPEG-4, Mini-K AR-Net lists + JPEG frame folders) and the checkpoints the real files'
layouts (VideoMAE ``{'module': ...}``; HaltingVT's mmengine ``{'state_dict': backbone.model.*,
cls_head.*}``; the Mini-K dense ViT made by ``scripts/minik_vit_from_videomae.py``). To stay fast,
``run`` shrinks the backbones' width with ``--set`` (``embed_dim=32, num_heads=2``; depth, frames, 224
pixels and so every method's published token schedule are kept), evaluates 2 videos with one view
each, and skips throughput timing and the fvcore cross-check (``tests/test_reference_gmacs.py`` checks
the GMACs at the real dims).
"""
import importlib.util
import os

import pytest

from harness.cli import main
from harness.store import ResultStore
from harness.suite import load_suite, validate_suite
from tests import real_layouts as rl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NARROW = {"embed_dim": 32, "num_heads": 2}
FAST = ["--limit", "2", "--set", "eval.num_workers=0", "--set", "eval.batch_size=2",
        "--set", "measure.throughput=false", "--set", "measure.flops=false",
        "--set", "measure.threads=1",  # these tiny matmuls run twice as fast on one thread
        "--set", "backbones.0.embed_dim=32", "--set", "backbones.0.num_heads=2"]
ONE_VIEW = ["--set", "datasets.0.num_clips=1", "--set", "datasets.0.num_crops=1"]
SUITES = {  # suite -> (its variables, extra --set)
    "k400_vit_b": (["VIDEOMAE_B_K400", "K400_VIDEOS", "K400_VAL_LIST"], ONE_VIEW),
    "k400_vit_s": (["VIDEOMAE_S_K400", "K400_VIDEOS", "K400_VAL_LIST"], ONE_VIEW),
    "ssv2_vit_b": (["VIDEOMAE_B_SSV2", "SSV2_VIDEOS", "SSV2_VAL_JSON", "SSV2_LABELS_JSON"], ONE_VIEW),
    "ucf101_vit_b": (["VIDEOMAE_B_UCF101", "UCF101_ROOT", "UCF101_TESTLIST", "UCF101_CLASSIND"], ONE_VIEW),
    "minik_haltingvt": (["MINIK_FRAMES", "MINIK_VAL_LIST", "MINIK_TRAIN_LIST", "MINIK_VIT_S",
                         "HALTINGVT_G03_BETA5", "HALTINGVT_G03_BETA10", "HALTINGVT_G05_BETA20",
                         "HALTINGVT_G07_BETA20"],
                        ["--set", "finetunes.0.recipe={epochs: 1, batch_size: 2, warmup_epochs: 0}",
                         "--set", "finetunes.0.threads=2"]),
}
# Video Swin suites: several backbones and per-stage heads, so they are narrowed per backbone (width 16, one head
# a stage; depths, frames, 224 pixels and so every token schedule kept) and run with one view of 2 videos
SWIN_NARROW = {"embed_dim": 16, "heads": [1, 1, 1, 1]}
SWIN_SUITES = {  # suite -> (its variables, its backbones)
    "k400_videoswin": (["VIDEOSWIN_T_K400", "VIDEOSWIN_S_K400", "VIDEOSWIN_B_K400", "K400_VIDEOS", "K400_VAL_LIST"],
                       ["videoswin_t", "videoswin_s", "videoswin_b"]),
    "ssv2_videoswin_b": (["VIDEOSWIN_B_SSV2", "SSV2_VIDEOS", "SSV2_VAL_JSON", "SSV2_LABELS_JSON"], ["videoswin_b_ssv2"]),
}
HALTINGVT_CONFIGS = {"HALTINGVT_G03_BETA5": (0.3, 5), "HALTINGVT_G03_BETA10": (0.3, 10),
                     "HALTINGVT_G05_BETA20": (0.5, 20), "HALTINGVT_G07_BETA20": (0.7, 20)}


def suite_path(name):
    return os.path.join(ROOT, "suites", f"{name}.yaml")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Every variable of every real suite, pointing to fixture files in the official layouts."""
    root = tmp_path_factory.mktemp("real")
    out = {}
    out.update(rl.write_k400(str(root / "k400")))
    out.update(rl.write_ssv2(str(root / "ssv2")))
    out.update(rl.write_ucf101(str(root / "ucf101")))
    out.update(rl.write_minik(str(root / "minik")))
    ck = root / "checkpoints"
    ck.mkdir()
    out["VIDEOMAE_B_K400"] = rl.videomae_checkpoint(str(ck / "vit_b_k400.pth"), "videomae_vit_b16", 400, **NARROW)
    out["VIDEOMAE_S_K400"] = rl.videomae_checkpoint(str(ck / "vit_s_k400.pth"), "videomae_vit_s16", 400, seed=1,
                                                    **NARROW)
    out["VIDEOMAE_B_SSV2"] = rl.videomae_checkpoint(str(ck / "vit_b_ssv2.pth"), "videomae_vit_b16", 174, **NARROW)
    out["VIDEOMAE_B_UCF101"] = rl.videomae_checkpoint(str(ck / "vit_b_ucf.pth"), "videomae_vit_b16", 101, **NARROW)
    for i, (var, (rho, beta)) in enumerate(HALTINGVT_CONFIGS.items()):
        out[var] = rl.haltingvt_official_checkpoint(str(ck / f"{var.lower()}.pth"),
                                                    {"keep_rate": rho, "halt_center": beta}, seed=10 + i, **NARROW)
    swin = [("VIDEOSWIN_T_K400", "videoswin_t", "torchvision"), ("VIDEOSWIN_S_K400", "videoswin_s", "official"),
            ("VIDEOSWIN_B_K400", "videoswin_b", "mmaction2"), ("VIDEOSWIN_B_SSV2", "videoswin_b_ssv2", "official")]
    for i, (var, backbone, layout) in enumerate(swin):  # the three released layouts
        out[var] = rl.videoswin_checkpoint(str(ck / f"{var.lower()}.pth"), backbone, layout, seed=20 + i,
                                           **SWIN_NARROW)
    # the Mini-K dense ViT, made as the suite says: from the (fixture) VideoMAE ViT-S K400 checkpoint
    (root / "label_map_k400.txt").write_text("\n".join(rl.K400_NAMES) + "\n")
    script = load_script()
    out["MINIK_VIT_S"] = str(ck / "minik_vit_s.pth")
    assert script.main(["--videomae", out["VIDEOMAE_S_K400"], "--k400-labels", str(root / "label_map_k400.txt"),
                        "--minik-classes", str(root / "minik" / "minik_classInd.txt"), "--out", out["MINIK_VIT_S"],
                        "--dims", "embed_dim=32", "--dims", "num_heads=2"]) == 0
    return out


def load_script():
    spec = importlib.util.spec_from_file_location(
        "minik_vit_from_videomae", os.path.join(ROOT, "scripts", "minik_vit_from_videomae.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(SUITES) + sorted(SWIN_SUITES))
def test_validate_names_every_missing_variable_and_what_it_must_point_to(name, monkeypatch):
    variables, _ = SUITES.get(name) or SWIN_SUITES[name]
    for var in variables:
        monkeypatch.delenv(var, raising=False)
    problems = [str(p) for p in validate_suite(suite_path(name))]
    declared = load_declared_variables(name)
    for var in variables:
        mine = [p for p in problems if f"environment variable {var!r} is not set" in p]
        assert mine, (var, problems)
        assert all(f"it must point to {declared[var]}" in p for p in mine), mine


def load_declared_variables(name):
    import yaml

    with open(suite_path(name)) as f:
        return yaml.safe_load(f)["variables"]


@pytest.fixture
def restore_threads():
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # the debug executor runs cells in this process


@pytest.mark.parametrize("name", sorted(SUITES))
def test_suite_runs_end_to_end_on_fixture_data(name, env, monkeypatch, tmp_path, capsys, restore_threads):
    variables, extra = SUITES[name]
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert validate_suite(suite_path(name)) == []  # the real dims, with the fixture paths
    results = str(tmp_path / "results")
    args = FAST + extra
    if name.startswith("k400"):  # the fixture CSV names 3 of the 400 classes: the suite's commented label_map
        args = args + ["--set", f"datasets.0.label_map={env['K400_LABEL_MAP']}"]
    assert main(["run", suite_path(name), "--executor", "debug", "--results", results, *args]) == 0
    sets = [value for flag, value in zip(args, args[1:]) if flag == "--set"] + ["eval.limit=2"]
    suite = load_suite(suite_path(name), sets)
    records = {r["key"]: r for r in ResultStore(results).records()}
    cells = suite.cells()
    assert len(records) == len(cells) and {c.key for c in cells} == set(records)
    for cell in cells:
        record = records[cell.key]
        assert record["status"] == "ok", (cell.label, record.get("error"))
        cov = record["coverage"]
        assert cov["listed"] == 2 and cov["decoded"] + cov["failed"] == 2
        assert record["provenance"]["dataset_manifest"]["dataset"] == cell.dataset["name"]
        assert 0.0 <= record["metrics"]["top1"] <= 1.0
        if cell.method.name == "haltingvt":  # its own released weights, official layout
            var = next(v for v, (rho, beta) in HALTINGVT_CONFIGS.items()
                       if (rho, beta) == (cell.method.params["keep_rate"], cell.method.params["halt_center"]))
            assert cell.method.weights == env[var]
            assert record["provenance"]["checkpoint_layout"] == "haltingvt_official"
        elif not cell.method.finetune:
            assert record["provenance"]["checkpoint_layout"] == "videomae"
    if name.startswith("k400"):  # the fixture's second video is a truncated copy: listed, never replaced
        for record in records.values():
            (failed,) = record["coverage"]["failed_videos"]
            assert failed["path"].endswith("bbb-2_000000_000010.mp4") and "truncated" in failed["error"]
    else:
        assert all(r["coverage"]["failed"] == 0 for r in records.values())
    capsys.readouterr()


def test_data_check_of_a_suite_covers_the_finetune_training_set(tmp_path, monkeypatch, capsys):
    env = rl.write_minik(str(tmp_path / "minik"))
    os.remove(os.path.join(env["MINIK_FRAMES"], "images/train/yoga/vid003_000000_000010/img_00007.jpg"))
    for var in SUITES["minik_haltingvt"][0]:
        monkeypatch.setenv(var, env.get(var, str(tmp_path / "unused.pth")))
    assert main(["data", "check", suite_path("minik_haltingvt")]) == 1
    out = capsys.readouterr().out
    assert "mini_val_videofolder.txt): 3 listed, 3 ok" in out
    assert "mini_train_videofolder.txt): 2 listed, 1 ok, 0 missing, 0 unreadable, 0 empty, 1 corrupt" in out
    assert "1 of 40 listed frame files missing: img_00007.jpg" in out


@pytest.mark.parametrize("name", sorted(SWIN_SUITES))
def test_video_swin_suite_validates_on_fixture_paths(name, env, monkeypatch):
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert validate_suite(suite_path(name)) == []  # the real dims, with the fixture paths


# one suite end to end (6 cells; k400_videoswin's 21 cells at 32x224 take ~25 min on a loaded 2-core machine --
# run it with HARNESS_SLOW_SUITES=1; its three weight layouts are loaded by tests/test_video_swin.py)
E2E_SWIN = ["ssv2_videoswin_b"] + (["k400_videoswin"] if os.environ.get("HARNESS_SLOW_SUITES") else [])


@pytest.mark.parametrize("name", E2E_SWIN)
def test_video_swin_suite_runs_end_to_end_on_fixture_data(name, env, monkeypatch, tmp_path, capsys, restore_threads):
    """Run every cell (narrowed) on fixture videos: the weights load from the released layouts, STA runs at the
    paper's r1 at 32x224, and its record carries the per-stage token counts."""
    variables, backbones = SWIN_SUITES[name]
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    args = ["--limit", "2", "--set", "eval.num_workers=0", "--set", "measure.throughput=false",
            "--set", "measure.flops=false", "--set", "measure.threads=2"] + ONE_VIEW
    for i in range(len(backbones)):
        args += ["--set", f"backbones.{i}.embed_dim=16", "--set", f"backbones.{i}.heads=[1, 1, 1, 1]"]
    if name.startswith("k400"):
        args += ["--set", f"datasets.0.label_map={env['K400_LABEL_MAP']}"]
    results = str(tmp_path / "results")
    assert main(["run", suite_path(name), "--executor", "debug", "--results", results, *args]) == 0
    records = ResultStore(results).records()
    assert len(records) == len(load_suite(suite_path(name), [v for f, v in zip(args, args[1:]) if f == "--set"]
                                          + ["eval.limit=2"]).cells())
    layouts = {r["provenance"]["checkpoint_layout"] for r in records}
    assert {r["status"] for r in records} == {"ok"} and layouts <= {"torchvision", "official", "mmaction2"}
    for record in records:
        if record["label"].startswith("sta_swin"):
            stages = record["provenance"]["reducer"]["tokens_per_stage"]
            assert stages[0][0] == 16 * 56 * 56 and stages[0][1] < stages[0][0]
    capsys.readouterr()


SHIPPED = sorted(p for p in os.listdir(os.path.join(ROOT, "suites")) if p.endswith(".yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_suite_loads_with_its_variables_set(name, monkeypatch):
    """A shipped suite loads once its declared variables point somewhere (missing files are the cells'
    problem at run time): a rule added to the loader that a shipped suite breaks fails here, not on a GPU."""
    import yaml

    path = os.path.join(ROOT, "suites", name)
    with open(path) as f:
        declared = yaml.safe_load(f).get("variables") or {}
    for var in declared:
        monkeypatch.setenv(var, f"/nonexistent/{var.lower()}")
    assert load_suite(path).cells()
