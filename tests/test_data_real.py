"""kinetics400 / ssv2 / ucf101 adapters on tiny fixtures in the official layouts (offline, fast)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

import harness
from harness.cli import main
from harness.data import dataset_registry
from harness.data.real import Kinetics400Dataset, SSv2Dataset, UCF101Dataset
from harness.store import ResultStore
from harness.suite import validate_suite

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

K400_CSV = """label,youtube_id,time_start,time_end,split
zumba,zzA1,5,15,val
abseiling,-3B32lodo2M,59,69,val
"bending back",bb_01,0,10,val
abseiling,aa_02,120,130,val
"""
K400_NAMES = ["abseiling", "bending back", "zumba"]
K400_FILES = {"zzA1_000005_000015.mp4": 2, "-3B32lodo2M_000059_000069.mp4": 0,
              "bb_01_000000_000010.mp4": 1, "aa_02_000120_000130.mp4": 0}

SSV2_LABELS = {"Approaching something with your camera": "0", "Spinning something that quickly stops spinning": "1",
               "Pushing something from left to right": "2"}
SSV2_VAL = [
    {"id": "74225", "label": "spinning cube that quickly stops spinning",
     "template": "Spinning [something] that quickly stops spinning", "placeholders": ["cube"]},
    {"id": "116154", "label": "pushing pen from left to right",
     "template": "Pushing [something] from left to right", "placeholders": ["pen"]},
    {"id": "1", "label": "approaching a cup with your camera",
     "template": "Approaching [something] with your camera", "placeholders": ["a cup"]},
]

UCF_CLASSIND = "1 ApplyEyeMakeup\n2 Basketball\n3 HandstandPushups\n"
UCF_TEST = ("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\nBasketball/v_Basketball_g02_c03.avi\r\n"
            "HandstandPushups/v_HandStandPushups_g01_c01.avi\r\n")


def write_video(path, label, num_frames=12, size=64):
    from harness.data.synthetic import encode_mp4

    rng = np.random.default_rng(label)
    frames = np.stack([np.full((size, size, 3), 20 + 60 * label + 3 * f, np.uint8) for f in range(num_frames)])
    frames[:, : size // 4, : size // 4] = rng.integers(0, 255, 3, dtype=np.uint8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    encode_mp4(path, frames)


@pytest.fixture(scope="module")
def k400(tmp_path_factory):
    root = tmp_path_factory.mktemp("k400")
    for name, label in K400_FILES.items():
        write_video(str(root / "val" / name), label)
    (root / "kinetics_400_val.csv").write_text(K400_CSV)
    (root / "labels.txt").write_text("\n".join(K400_NAMES) + "\n")
    return root


def test_registered_and_torch_free_at_import():
    assert {"kinetics400", "ssv2", "ucf101"} <= set(dataset_registry.names())
    code = ("import sys, harness.data; import harness.data.real; "
            "assert 'torch' not in sys.modules and 'decord' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_protocol_defaults_are_videomae():
    k, s, u = Kinetics400Dataset(ann_file="a"), SSv2Dataset(ann_file="a"), UCF101Dataset(ann_file="a", class_index="c")
    assert (k.sampler, k.clip_len, k.frame_interval, k.num_clips, k.num_crops, k.views) == ("dense", 16, 4, 5, 3, 15)
    assert (s.sampler, s.clip_len, s.num_clips, s.num_crops, s.views) == ("uniform", 16, 2, 3, 6)
    assert (u.sampler, u.clip_len, u.frame_interval, u.views) == ("dense", 16, 4, 15)
    for d in (k, s, u):
        assert (d.short_side, d.crop_size, d.aggregation) == (224, 224, "prob")
        assert d.mean == [0.485, 0.456, 0.406] and d.check() == []
    assert (k.resolve_num_classes(), s.resolve_num_classes(), u.resolve_num_classes()) == (400, 174, 101)
    assert Kinetics400Dataset().check() == ["ann_file is required for dataset 'kinetics400'"]
    assert any("crop_size" in p for p in Kinetics400Dataset(ann_file="a", crop_size=256).check())
    assert any("class_index" in p for p in UCF101Dataset(ann_file="a").check())


def test_k400_official_csv_with_label_map(k400):
    d = Kinetics400Dataset(data_root=str(k400 / "val"), ann_file=str(k400 / "kinetics_400_val.csv"),
                           label_map=str(k400 / "labels.txt"))
    items = d.items()
    assert d.resolved_format() == "official_csv"
    assert [(os.path.basename(it.path), it.label) for it in items] == list(K400_FILES.items())
    assert all(os.path.isfile(it.path) for it in items) and [it.index for it in items] == [0, 1, 2, 3]
    # without label_map: sorted unique names, only when every class is present
    sorted_names = Kinetics400Dataset(data_root=str(k400 / "val"), ann_file=str(k400 / "kinetics_400_val.csv"),
                                      num_classes=3)
    assert [it.label for it in sorted_names.items()] == list(K400_FILES.values())
    with pytest.raises(ValueError, match="label_map"):
        Kinetics400Dataset(data_root=str(k400 / "val"), ann_file=str(k400 / "kinetics_400_val.csv")).items()


def test_k400_lists_and_manifest(k400, tmp_path):
    official = Kinetics400Dataset(data_root=str(k400 / "val"), ann_file=str(k400 / "kinetics_400_val.csv"),
                                  label_map=str(k400 / "labels.txt"))
    mm = tmp_path / "mm.txt"
    mm.write_text("".join(f"{n} {l}\n" for n, l in reversed(list(K400_FILES.items()))))
    csvlist = tmp_path / "val.csv"
    csvlist.write_text("".join(f"{n} {l}\n" for n, l in K400_FILES.items()))
    a = Kinetics400Dataset(data_root=str(k400 / "val"), ann_file=str(mm))
    b = Kinetics400Dataset(data_root=str(k400 / "val"), ann_file=str(csvlist), ann_format="videomae_csv")
    assert sorted((os.path.basename(i.path), i.label) for i in a.items()) == sorted(K400_FILES.items())
    m0, m1, m2 = official.manifest(), a.manifest(), b.manifest()
    assert m0["dataset"] == "kinetics400" and m0["num_videos"] == 4
    assert m0["sha256"] == m1["sha256"] == m2["sha256"]  # same (path, label) pairs, any order or format
    assert official.manifest() == m0  # stable
    assert official.key_material() != a.key_material()
    assert official.key_material() == Kinetics400Dataset(**{**official.__dict__}).key_material()
    mm.write_text(mm.read_text().replace(" 2\n", " 1\n"))
    assert a.manifest()["sha256"] != m1["sha256"]


def flagged(items):
    """{index: problem} of the entries that cannot be evaluated."""
    return {it.index: it.problem for it in items if it.problem}


@pytest.mark.parametrize("content,index,problem", [
    (K400_CSV + "zumba,zzA1,5,15,val\n", 4, r"kinetics_400_val.csv:6: duplicate video 'zzA1_000005_000015.mp4' "
                                            r"\(first listed at .*kinetics_400_val.csv:2\)"),
    (K400_CSV.replace("bending back", "bending forward"), 2,
     r"kinetics_400_val.csv:4: unknown class name 'bending forward'"),
])
def test_k400_official_csv_entries_that_cannot_be_evaluated_are_flagged(k400, tmp_path, content, index, problem):
    """Counted in the coverage (never evaluated, never twice), not an error that stops the cell."""
    import re

    ann = tmp_path / "kinetics_400_val.csv"
    ann.write_text(content)
    d = Kinetics400Dataset(data_root=str(k400 / "val"), ann_file=str(ann), label_map=str(k400 / "labels.txt"))
    bad = flagged(d.items())
    assert list(bad) == [index] and re.search(problem, bad[index]), bad
    assert d.manifest()["invalid_entries"] == 1 and d.manifest()["num_videos"] == len(d.items())


@pytest.mark.parametrize("content,problem", [
    (K400_CSV.replace("0,10,val", "0.5,10,val"), r"kinetics_400_val.csv:4: time_start '0.5'"),
    (K400_CSV.replace(",val\n", "\n", 1), r"kinetics_400_val.csv:2: expected 5 columns"),
])
def test_k400_official_csv_errors(k400, tmp_path, content, problem):
    ann = tmp_path / "kinetics_400_val.csv"
    ann.write_text(content)
    d = Kinetics400Dataset(data_root=str(k400 / "val"), ann_file=str(ann), label_map=str(k400 / "labels.txt"))
    with pytest.raises(ValueError, match=problem):
        d.items()


def test_k400_test_csv_without_labels_says_so(k400, tmp_path):
    ann = tmp_path / "test.csv"
    ann.write_text("youtube_id,time_start,time_end,split\n--33Lscn6sk,4,14,test\n")
    d = Kinetics400Dataset(data_root=str(k400 / "val"), ann_file=str(ann))
    with pytest.raises(ValueError, match=r"test.csv:1: an official Kinetics CSV without a 'label' column") as err:
        d.items()
    assert "fields" not in str(err.value) and "\n" not in str(err.value)


def test_k400_list_errors_and_missing_files(k400, tmp_path):
    ann = tmp_path / "list.txt"
    ann.write_text("a.mp4 1\n\nb.mp4 400\n")
    assert flagged(Kinetics400Dataset(ann_file=str(ann)).items()) == {
        1: f"{ann}:3: label 400 out of range for num_classes 400"}
    ann.write_text("a.mp4 1\n# comment\nb.mp4 2\na.mp4 3\n")
    assert flagged(Kinetics400Dataset(ann_file=str(ann)).items()) == {
        2: f"{ann}:4: duplicate video 'a.mp4' (first listed at {ann}:1)"}
    assert Kinetics400Dataset(ann_file=str(ann)).manifest()["invalid_entries"] == 1
    ann.write_text("a.mp4 1\nb.mp4 -2\n")
    with pytest.raises(ValueError, match=r"list.txt:2: negative label"):  # malformed: the file is wrong
        Kinetics400Dataset(ann_file=str(ann)).items()
    ann.write_text("a.mp4 1\n# comment\nb.mp4 2\na.mp4 3\n")
    with pytest.raises(FileNotFoundError, match=r"ann_file not found: .*nope.csv"):
        Kinetics400Dataset(ann_file=str(tmp_path / "nope.csv")).items()
    with pytest.raises(FileNotFoundError, match=r"data_root is not a directory: .*novids"):
        Kinetics400Dataset(ann_file=str(ann), data_root=str(tmp_path / "novids")).items()
    with pytest.raises(FileNotFoundError, match=r"label_map not found: .*nolabels.txt"):
        Kinetics400Dataset(ann_file=str(k400 / "kinetics_400_val.csv"), label_map=str(tmp_path / "nolabels.txt")).items()
    assert Kinetics400Dataset(ann_file=str(tmp_path / "nope.csv")).key_material()["ann_file_sha256"].startswith("missing:")


@pytest.fixture
def ssv2(tmp_path):
    # pretty-printed like the official file, so entries start on different lines
    (tmp_path / "something-something-v2-validation.json").write_text(json.dumps(SSV2_VAL, indent=4))
    (tmp_path / "something-something-v2-labels.json").write_text(json.dumps(SSV2_LABELS, indent=4))
    return tmp_path


def test_ssv2_official_json(ssv2):
    d = SSv2Dataset(data_root=str(ssv2 / "videos"), ann_file=str(ssv2 / "something-something-v2-validation.json"),
                    label_file=str(ssv2 / "something-something-v2-labels.json"))
    os.makedirs(ssv2 / "videos")
    assert d.resolved_format() == "official_json"
    assert [(os.path.relpath(it.path, ssv2 / "videos"), it.label) for it in d.items()] == [
        ("74225.webm", 1), ("116154.webm", 2), ("1.webm", 0)]
    mp4 = SSv2Dataset(data_root=str(ssv2 / "videos"), ann_file=d.ann_file, label_file=d.label_file, video_ext="mp4")
    assert mp4.items()[0].path.endswith("74225.mp4")
    m = d.manifest()
    assert m["dataset"] == "ssv2" and m["num_videos"] == 3 and d.manifest() == m
    assert mp4.manifest()["sha256"] != m["sha256"] and mp4.key_material() != d.key_material()
    lst = ssv2 / "val_list.txt"
    lst.write_text("1.webm 0\n74225.webm 1\n116154.webm 2\n")
    assert SSv2Dataset(ann_file=str(lst)).manifest()["sha256"] == m["sha256"]


def test_ssv2_errors(ssv2):
    ann, labels = ssv2 / "something-something-v2-validation.json", ssv2 / "something-something-v2-labels.json"
    bad = [dict(SSV2_VAL[0]), dict(SSV2_VAL[1], template="Twisting [something]")]
    ann.write_text(json.dumps(bad, indent=4))
    line = [n for n, t in enumerate(json.dumps(bad, indent=4).splitlines(), 1) if t == "    {"][1]  # 2nd entry
    assert line > 2
    bad = flagged(SSv2Dataset(ann_file=str(ann), label_file=str(labels)).items())
    assert list(bad) == [1] and bad[1].startswith(f"{ann}:{line}: unknown class 'Twisting something'")
    ann.write_text(json.dumps([SSV2_VAL[0], SSV2_VAL[1], SSV2_VAL[0]], indent=4))
    bad = flagged(SSv2Dataset(ann_file=str(ann), label_file=str(labels)).items())
    assert list(bad) == [2] and "duplicate video '74225.webm'" in bad[2]
    labels.write_text(json.dumps({**SSV2_LABELS, "Pushing something from left to right": "200"}))
    ann.write_text(json.dumps(SSV2_VAL))
    assert flagged(SSv2Dataset(ann_file=str(ann), label_file=str(labels)).items()) == {
        1: f"{ann}:1: label 200 out of range for num_classes 174"}
    with pytest.raises(FileNotFoundError, match=r"label_file is not set"):
        SSv2Dataset(ann_file=str(ann)).items()
    with pytest.raises(FileNotFoundError, match=r"label_file not found: .*missing.json"):
        SSv2Dataset(ann_file=str(ann), label_file=str(ssv2 / "missing.json")).items()


@pytest.fixture
def ucf(tmp_path):
    split = tmp_path / "ucfTrainTestlist"
    split.mkdir()
    (split / "classInd.txt").write_text(UCF_CLASSIND)
    (split / "testlist01.txt").write_text(UCF_TEST)
    (split / "trainlist01.txt").write_text("Basketball/v_Basketball_g08_c01.avi 2\nApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n")
    (tmp_path / "UCF-101").mkdir()
    return tmp_path


def test_ucf101_official_split(ucf):
    split = ucf / "ucfTrainTestlist"
    d = UCF101Dataset(data_root=str(ucf / "UCF-101"), ann_file=str(split / "testlist01.txt"),
                      class_index=str(split / "classInd.txt"))
    assert [(os.path.relpath(it.path, ucf / "UCF-101"), it.label) for it in d.items()] == [
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", 0), ("Basketball/v_Basketball_g02_c03.avi", 1),
        ("HandstandPushups/v_HandStandPushups_g01_c01.avi", 2)]
    train = UCF101Dataset(ann_file=str(split / "trainlist01.txt"), class_index=str(split / "classInd.txt"))
    assert [it.label for it in train.items()] == [1, 0]
    m = d.manifest()
    assert m["dataset"] == "ucf101" and m["num_videos"] == 3 and d.manifest() == m


def test_ucf101_errors(ucf):
    split = ucf / "ucfTrainTestlist"
    ci = str(split / "classInd.txt")
    bad_txt = split / "bad.txt"
    bad_txt.write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\nYoYo/v_YoYo_g01_c01.avi\n")
    bad = flagged(UCF101Dataset(ann_file=str(bad_txt), class_index=ci).items())
    assert list(bad) == [1] and bad[1].startswith(f"{bad_txt}:2: unknown class 'YoYo'")
    bad_txt.write_text(UCF_TEST + "Basketball/v_Basketball_g02_c03.avi\n")
    bad = flagged(UCF101Dataset(ann_file=str(bad_txt), class_index=ci).items())
    assert list(bad) == [3] and bad[3].startswith(f"{bad_txt}:4: duplicate video 'Basketball/v_Basketball_g02_c03.avi'")
    bad_txt.write_text("Basketball/v_Basketball_g08_c01.avi 3\n")
    bad = flagged(UCF101Dataset(ann_file=str(bad_txt), class_index=ci).items())
    assert bad == {0: f"{bad_txt}:1: label 3 (1-based) does not match folder 'Basketball' (class 2 in {ci})"}
    bad_txt.write_text("Basketball/v_Basketball_g08_c01.avi two\n")
    with pytest.raises(ValueError, match=r"bad.txt:1: label 'two' is not an integer"):
        UCF101Dataset(ann_file=str(bad_txt), class_index=ci).items()
    (split / "badInd.txt").write_text("1 ApplyEyeMakeup\n3 Basketball\n")
    with pytest.raises(ValueError, match=r"badInd.txt:2: expected class index 2"):
        UCF101Dataset(ann_file=str(split / "testlist01.txt"), class_index=str(split / "badInd.txt")).items()
    with pytest.raises(FileNotFoundError, match=r"class_index not found: .*nope.txt"):
        UCF101Dataset(ann_file=str(split / "testlist01.txt"), class_index=str(split / "nope.txt")).items()


def test_end_to_end_k400_official_csv(k400, tmp_path, capsys):
    torch.manual_seed(0)
    dims = {"embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 16, "num_frames": 4, "img_size": 32,
            "num_classes": 3}
    model = harness.build_model("video_vit", **dims)
    torch.save({"module": model.state_dict()}, tmp_path / "tiny.pth")
    suite = {"name": "k400_fixture",
             "backbones": [{"name": "video_vit", "checkpoint": "tiny.pth", **dims}],
             "datasets": [{"name": "kinetics400", "data_root": str(k400 / "val"),
                           "ann_file": str(k400 / "kinetics_400_val.csv"), "label_map": str(k400 / "labels.txt"),
                           "num_classes": 3, "short_side": 32, "crop_size": 32, "clip_len": 4,
                           "frame_interval": 1, "num_clips": 2}],
             "methods": [{"name": "dense"}],
             "eval": {"batch_size": 2, "num_workers": 0},
             "measure": {"batch_size": 2, "warmup_iters": 1, "warmup_s": 0.0, "timed_iters": 2,
                         "min_timed_s": 0.0, "repeats": 2}}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    results = str(tmp_path / "results")
    assert main(["run", str(path), "--executor", "debug", "--results", results]) == 0
    (record,) = ResultStore(results).records()
    assert record["status"] == "ok", record.get("error")
    assert record["metrics"]["num_videos"] == 4 and 0 <= record["metrics"]["top1"] <= 1
    assert record["coverage"]["decoded"] == 4 and record["coverage"]["failed"] == 0
    manifest = record["provenance"]["dataset_manifest"]
    expected = Kinetics400Dataset(data_root=str(k400 / "val"), ann_file=str(k400 / "kinetics_400_val.csv"),
                                  label_map=str(k400 / "labels.txt"), num_classes=3).manifest()
    assert manifest == expected and manifest["dataset"] == "kinetics400"
    samples = ResultStore(results).read_samples(record["key"])
    assert len(samples) == 4
    capsys.readouterr()


def test_k400_suite_needs_its_environment(k400, tmp_path, monkeypatch):
    suite = os.path.join(ROOT, "suites", "k400_vit_b.yaml")
    for var in ("VIDEOMAE_B_K400", "K400_VIDEOS", "K400_VAL_LIST"):
        monkeypatch.delenv(var, raising=False)
    text = "\n".join(str(p) for p in validate_suite(suite))
    assert "VIDEOMAE_B_K400" in text and "K400_VIDEOS" in text and "K400_VAL_LIST" in text
    (tmp_path / "ck.pth").write_bytes(b"")
    monkeypatch.setenv("VIDEOMAE_B_K400", str(tmp_path / "ck.pth"))
    monkeypatch.setenv("K400_VIDEOS", str(k400 / "val"))
    monkeypatch.setenv("K400_VAL_LIST", str(k400 / "kinetics_400_val.csv"))
    assert validate_suite(suite) == []


@pytest.mark.parametrize("name,env", [
    ("k400_vit_s", ["VIDEOMAE_S_K400", "K400_VIDEOS", "K400_VAL_LIST"]),
    ("ssv2_vit_b", ["VIDEOMAE_B_SSV2", "SSV2_VIDEOS", "SSV2_VAL_JSON", "SSV2_LABELS_JSON"]),
    ("ucf101_vit_b", ["VIDEOMAE_B_UCF101", "UCF101_ROOT", "UCF101_TESTLIST", "UCF101_CLASSIND"]),
])
def test_other_suites_validate(tmp_path, monkeypatch, name, env):
    suite = os.path.join(ROOT, "suites", f"{name}.yaml")
    for var in env:
        monkeypatch.delenv(var, raising=False)
    text = "\n".join(str(p) for p in validate_suite(suite))
    assert all(var in text for var in env)
    for var in env:
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    missing = validate_suite(suite)  # validate checks that every path exists
    assert {p.message.split(":")[0] for p in missing} <= {"checkpoint not found", "directory not found",
                                                          "ann file not found", "label file not found",
                                                          "class index not found", "label map not found"}
    assert len(missing) == len(env)
    for var in env:
        target = tmp_path / var.lower()
        target.mkdir() if var.endswith(("_VIDEOS", "_ROOT")) else target.write_bytes(b"")
    assert validate_suite(suite) == []
