"""The Mini-Kinetics adapter: AR-Net lists over raw-frame folders at HaltingVT's test protocol."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from harness.data import dataset_registry
from harness.data.check import check_items
from harness.data.minik import MiniKineticsDataset, read_rawframe_list
from harness.data.transforms import normalize
from harness.data.video_dataset import VideoDataset, collate_views
from tests import real_layouts as rl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mmaction2_test_frames(total_frames, clip_len=8, frame_interval=32, start_index=1):
    """mmaction2 1.0.0 ``SampleFrames(8, 32, 1, test_mode=True)`` + ``start_index``: the file numbers read
    (``mmaction/datasets/transforms/loading.py``, restated here independently of harness.data.sampling)."""
    ori_clip_len = (clip_len - 1) * frame_interval + 1
    max_offset = max(total_frames - ori_clip_len, 0)
    offset = max_offset // 2
    inds = (offset + np.arange(clip_len) * frame_interval) % total_frames
    return inds + start_index


def test_registered_with_haltingvt_protocol_defaults():
    assert "minik" in dataset_registry.names()
    d = MiniKineticsDataset(ann_file="a")
    assert (d.sampler, d.clip_len, d.frame_interval, d.num_clips, d.num_crops) == ("dense", 8, 32, 1, 1)
    assert (d.short_side, d.crop_size, d.mean, d.std, d.aggregation) == (256, 224, [0.5] * 3, [0.5] * 3, "prob")
    assert (d.filename_tmpl, d.start_index, d.resolve_num_classes(), d.views) == ("img_{:05d}.jpg", 1, 200, 1)
    assert d.check() == []
    assert MiniKineticsDataset(ann_file="a", filename_tmpl="img_{:05}.jpg").check() == []  # HaltingVT's spelling
    assert "filename_tmpl" in " ".join(MiniKineticsDataset(ann_file="a", filename_tmpl="img.jpg").check())
    assert "start_index" in " ".join(MiniKineticsDataset(ann_file="a", start_index=-1).check())
    code = "import sys, harness.data; assert 'torch' not in sys.modules and 'PIL' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_normalisation_is_haltingvt_127_5():
    """mean = std = 0.5 on [0, 1] pixels is the official mean = std = 127.5 on 0..255: inputs in [-1, 1]."""
    pixels = torch.arange(256, dtype=torch.uint8).view(1, 16, 16, 1).expand(1, 16, 16, 3).contiguous()
    ours = normalize(pixels, [0.5] * 3, [0.5] * 3)
    official = (pixels.permute(3, 0, 1, 2).double() - 127.5) / 127.5
    assert torch.allclose(ours.double(), official, atol=1e-6)
    assert ours.min() == -1 and ours.max() == 1


def test_list_spellings(tmp_path):
    arnet = tmp_path / "mini_val_videofolder.txt"
    arnet.write_text("images/val/air drumming/7LSJ2Ryv1a8_000000_000010 60 0\n"
                     "images/val/yoga/v_KW4TDvxIc_000223_000233 300 199")  # AR-Net: spaces, no final newline
    semi = tmp_path / "mini_val.txt"
    semi.write_text("images/val/air drumming/7LSJ2Ryv1a8_000000_000010;60;0\n"
                    "images/val/yoga/v_KW4TDvxIc_000223_000233;300;199\n")
    expected = [("images/val/air drumming/7LSJ2Ryv1a8_000000_000010", 0, 60),
                ("images/val/yoga/v_KW4TDvxIc_000223_000233", 199, 300)]
    for path in (arnet, semi):
        assert [(e.rel, e.label, e.num_frames) for e in read_rawframe_list(str(path))] == expected
    mm = tmp_path / "mm.txt"
    mm.write_text("abseiling/-3B32lodo2M_000059_000069\t300  3\n")
    assert [(e.rel, e.label, e.num_frames, e.line) for e in read_rawframe_list(str(mm))] == [
        ("abseiling/-3B32lodo2M_000059_000069", 3, 300, 1)]
    for line, problem in (("a/b 300 1 7", "more than one number after the folder"),  # mmaction2 multi-label
                          ("a/b 0 300 1", "more than one number after the folder"),  # with_offset
                          ("a/b 300", "expected 'frame_dir total_frames label'"),
                          ("a/b 300 x", "label 'x' is not an integer"),
                          ("a/b -4 1", "negative total_frames")):
        bad = tmp_path / "bad.txt"
        bad.write_text(f"ok/c 10 0\n{line}\n")
        with pytest.raises(ValueError, match=rf"bad.txt:2: .*{problem}"):
            read_rawframe_list(str(bad))


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Frame folders: 250 frames (> the 225-frame span), 100 (loops), and AR-Net-style names from 0."""
    root = tmp_path_factory.mktemp("minik")
    rl.write_frame_folder(str(root / "images/val/air drumming/long"), 0, 250, h=24, w=32)
    rl.write_frame_folder(str(root / "images/val/yoga/short"), 1, 100, h=24, w=32)
    rl.write_frame_folder(str(root / "images/val/yoga/arnet_names"), 2, 250, h=24, w=32,
                          tmpl="image_{:05d}.jpg", start_index=0)
    (root / "val.txt").write_text("images/val/air drumming/long 250 0\nimages/val/yoga/short 100 199\n")
    (root / "classes.txt").write_text("\n".join(["air drumming"] + rl.MINIK_NAMES[1:199] + ["yoga"]))
    return root


def clip_levels(views):
    """Mean [-1, 1] level of every frame of a [V, 3, T, S, S] view, back on 0..255."""
    return (views.mean(dim=(1, 3, 4)) + 1) * 127.5


@pytest.mark.parametrize("folder,total", [("images/val/air drumming/long", 250), ("images/val/yoga/short", 100)])
def test_frames_read_are_mmaction2_sampleframes_plus_start_index(frames, folder, total):
    vid = 0 if total == 250 else 1
    d = MiniKineticsDataset(data_root=str(frames), ann_file=str(frames / "val.txt"))
    item = next(it for it in d.items() if it.path.endswith(folder))
    assert item.num_frames == total and item.frame_path(0).endswith("img_00001.jpg")
    sample = VideoDataset([item], d)[0]
    assert sample["error"] is None and sample["views"].shape == (1, 3, 8, 224, 224)
    files = mmaction2_test_frames(total)  # 1-based file numbers
    assert files.tolist() == (([13 + 32 * k for k in range(8)]) if total == 250 else
                              [(32 * k) % 100 + 1 for k in range(8)])
    want = torch.tensor([rl.level(vid, f - 1) for f in files], dtype=torch.float32)  # file n = frame n - 1
    assert torch.allclose(clip_levels(sample["views"])[0], want, atol=2), (clip_levels(sample["views"]), want)


def test_other_frame_names(frames, tmp_path):
    ann = tmp_path / "arnet.txt"
    ann.write_text("images/val/yoga/arnet_names 250 199\n")
    d = MiniKineticsDataset(data_root=str(frames), ann_file=str(ann), filename_tmpl="image_{:05d}.jpg", start_index=0)
    views = VideoDataset(d.items(), d)[0]["views"]
    want = torch.tensor([rl.level(2, f) for f in mmaction2_test_frames(250, start_index=0)], dtype=torch.float32)
    assert torch.allclose(clip_levels(views)[0], want, atol=2)
    wrong = MiniKineticsDataset(data_root=str(frames), ann_file=str(ann))  # img_ names: none exist
    assert VideoDataset(wrong.items(), wrong)[0]["error"].startswith("FileNotFoundError: missing frame file img_")


def test_class_index_manifest_and_key(frames, tmp_path):
    d = MiniKineticsDataset(data_root=str(frames), ann_file=str(frames / "val.txt"),
                            class_index=str(frames / "classes.txt"))
    assert [it.problem for it in d.items()] == [None, None]
    bad = tmp_path / "val.txt"
    bad.write_text("images/val/air drumming/long 250 7\n")
    flagged = MiniKineticsDataset(data_root=str(frames), ann_file=str(bad), class_index=str(frames / "classes.txt"))
    (item,) = flagged.items()
    assert item.problem == f"{bad}:1: label 7 does not match class folder 'air drumming' (class 0 in {frames / 'classes.txt'})"
    (frames / "few.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match="names 2 classes, num_classes is 200"):
        MiniKineticsDataset(ann_file=str(bad), class_index=str(frames / "few.txt")).items()
    m = d.manifest()
    assert (m["dataset"], m["num_videos"], m["invalid_entries"], m["total_frames"]) == ("minik", 2, 0, 350)
    recount = tmp_path / "recount.txt"  # same videos and labels, frames extracted at another rate
    recount.write_text("images/val/air drumming/long 240 0\nimages/val/yoga/short 100 199\n")
    other = MiniKineticsDataset(data_root=str(frames), ann_file=str(recount))
    assert other.manifest()["sha256"] == m["sha256"] and other.manifest()["frames_sha256"] != m["frames_sha256"]
    assert other.key_material() != d.key_material()
    assert d.key_material()["filename_tmpl"] == "img_{:05d}.jpg"
    with pytest.raises(FileNotFoundError, match="minik: ann_file not found"):
        MiniKineticsDataset(ann_file=str(tmp_path / "nope.txt")).items()


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """Frame folders broken in every way a copy of a rawframe dataset gets broken."""
    root = tmp_path_factory.mktemp("minik_damaged")
    good = {}
    for vid, name in enumerate(["ok", "gray", "missing_unsampled_frame"]):
        rl.write_frame_folder(str(root / name), vid, 40, h=24, w=32, gray=name == "gray")
        good[name] = vid
    os.remove(root / "missing_unsampled_frame" / "img_00002.jpg")  # 8 x 32 over 40 frames reads 1, 9, 17, 25, 33
    for vid, name in enumerate(["missing_sampled_frame", "truncated_jpeg", "empty_jpeg", "not_a_jpeg", "sizes_differ",
                                "listed_longer"], start=10):
        rl.write_frame_folder(str(root / name), vid, 40, h=24, w=32)
    centre = mmaction2_test_frames(40)  # the files the test protocol reads
    os.remove(root / "missing_sampled_frame" / f"img_{centre[3]:05d}.jpg")
    jpeg = (root / "truncated_jpeg" / f"img_{centre[0]:05d}.jpg").read_bytes()
    (root / "truncated_jpeg" / f"img_{centre[0]:05d}.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "empty_jpeg" / f"img_{centre[-1]:05d}.jpg").write_bytes(b"")
    (root / "not_a_jpeg" / f"img_{centre[2]:05d}.jpg").write_bytes(np.random.default_rng(0).bytes(300))
    rl.write_frame_folder(str(root / "odd_size"), 20, 40, h=30, w=32)
    os.replace(root / "odd_size" / f"img_{centre[4]:05d}.jpg", root / "sizes_differ" / f"img_{centre[4]:05d}.jpg")
    (root / "empty_folder").mkdir()
    (root / "a_file").write_bytes(b"x")
    lines = [f"{n} 40 0" for n in good] + [f"{n} 40 0" for n in ["missing_sampled_frame", "truncated_jpeg",
                                                                   "empty_jpeg", "not_a_jpeg", "sizes_differ"]]
    lines += ["listed_longer 80 0", "no_such_folder 40 0", "empty_folder 40 0", "a_file 40 0", "zero_frames 0 0",
              "ok 40 250"]  # the last: duplicate + label out of range
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    return root


DAMAGED_STATUS = {"missing_unsampled_frame": "corrupt", "missing_sampled_frame": "corrupt",
                  "truncated_jpeg": "corrupt", "empty_jpeg": "corrupt", "not_a_jpeg": "corrupt",
                  "sizes_differ": "corrupt", "listed_longer": "corrupt", "no_such_folder": "missing",
                  "empty_folder": "empty", "a_file": "unreadable", "zero_frames": "missing"}


def test_damaged_frame_folders_are_listed_and_never_replaced(damaged):
    d = MiniKineticsDataset(data_root=str(damaged), ann_file=str(damaged / "list.txt"), short_side=32, crop_size=32)
    items = d.items()
    result = check_items(items, workers=2, progress=False)
    statuses = {os.path.basename(p["path"]): p["status"] for p in result["problems"]}
    expected = dict(DAMAGED_STATUS)
    expected["zero_frames"] = "missing"  # no folder either: missing wins
    assert {k: v for k, v in statuses.items() if k != "ok"} == expected
    assert [p["status"] for p in result["problems"] if os.path.basename(p["path"]) == "ok"] == ["invalid"]
    assert "1 of 40 listed frame files missing: img_00002.jpg" in next(
        p["error"] for p in result["problems"] if p["path"].endswith("missing_unsampled_frame"))

    loader = torch.utils.data.DataLoader(VideoDataset(items, d), batch_size=4, collate_fn=collate_views)
    decoded, failed = [], {}
    for batch in loader:
        decoded += [os.path.basename(p) for p in batch["paths"]]
        failed.update({os.path.basename(f["path"]) + ("#dup" if f["index"] == len(items) - 1 else ""): f["error"]
                       for f in batch["failed"]})
    # a frame the protocol never reads does not stop the evaluation (data check still lists it)
    assert sorted(decoded) == ["gray", "missing_unsampled_frame", "ok"]
    assert failed["missing_sampled_frame"].startswith("FileNotFoundError: missing frame file")
    assert failed["truncated_jpeg"].startswith("CorruptFrameError: cannot decode")
    assert failed["empty_jpeg"].startswith("CorruptFrameError") and failed["not_a_jpeg"].startswith("CorruptFrameError")
    assert failed["sizes_differ"].startswith("ValueError: frame sizes differ")
    assert failed["listed_longer"].startswith("FileNotFoundError: missing frame file")
    assert failed["no_such_folder"].startswith("FileNotFoundError: no such frame folder")
    assert failed["a_file"].startswith("NotADirectoryError")
    assert failed["zero_frames"].startswith("FileNotFoundError")
    assert failed["ok#dup"].startswith("AnnotationError") and "duplicate video 'ok'" in failed["ok#dup"]


def test_converted_videomae_model_is_exact():
    """scripts/minik_vit_from_videomae.py: new(x in [-1, 1], 8 frames) == old(ImageNet-normalised x with
    every frame twice)[Mini-K rows], so the dense Mini-K ViT is the public K400 model, untrained."""
    import harness

    spec = importlib.util.spec_from_file_location("conv", os.path.join(ROOT, "scripts", "minik_vit_from_videomae.py"))
    conv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conv)
    torch.manual_seed(0)
    dims = dict(embed_dim=32, depth=2, num_heads=2, img_size=32)
    old = harness.build_model("videomae_vit_s16", num_classes=400, **dims)
    for p in old.parameters():
        p.data.normal_(0, 0.2)
    new = harness.build_model("haltingvt_deit_s8", **dims)
    new.load_state_dict(conv.convert(old.state_dict(), rl.K400_NAMES, rl.MINIK_NAMES))
    x = torch.rand(2, 3, 8, 32, 32)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1, 1) for v in (conv.IMAGENET_MEAN, conv.IMAGENET_STD))
    rows = [rl.K400_NAMES.index(n) for n in rl.MINIK_NAMES]
    with torch.no_grad():
        want = old(((x - mean) / std).repeat_interleave(2, dim=2))[:, rows]
        got = new((x - 0.5) / 0.5)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    with pytest.raises(ValueError, match="not K400 classes"):
        conv.convert(old.state_dict(), rl.K400_NAMES, ["no such class"])
