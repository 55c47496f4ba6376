"""Decoding through VideoDataset, failure reporting, the uint8 clip cache and annotation readers."""
import logging

import numpy as np
import pytest
import torch

from harness.data import dataset_registry
from harness.data.annotations import detect_format, read_label_map, read_video_list
from harness.data.registry import VideoProtocol
from harness.data.sampling import dense_test_indices
from harness.data.synthetic import encode_mp4
from harness.data.video_dataset import VideoDataset, collate_views, load_clips_uint8

NUM_FRAMES = 20


def brightness(f):
    return 10 + 12 * f  # frame number encoded as grey level: 10 .. 238


def write_counter_video(path, num_frames=NUM_FRAMES, h=48, w=80):
    frames = np.stack([np.full((h, w, 3), brightness(f), np.uint8) for f in range(num_frames)])
    encode_mp4(path, frames)


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    write_counter_video(root / "a.mp4")
    write_counter_video(root / "b.mp4", h=96, w=64)  # portrait (decord 0.6 fails on width 48)
    good = (root / "a.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(good[: len(good) // 2])
    (root / "random.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    (root / "list.txt").write_text(
        "a.mp4 1\nmissing.mp4 2\nb.mp4 0\n\ntruncated.mp4 3\nrandom.mp4 4\n"
    )
    return root


PROTOCOL = VideoProtocol(sampler="dense", clip_len=4, frame_interval=2, num_clips=2, num_crops=3, short_side=32,
                         crop_size=32, mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0])


def test_views_hold_the_sampled_frames(video_dir):
    ds = VideoDataset(read_video_list(str(video_dir / "list.txt"), str(video_dir)), PROTOCOL)
    for i in (0, 2):
        sample = ds[i]
        assert sample["error"] is None and sample["index"] == i
        views = sample["views"]
        assert views.shape == (6, 3, 4, 32, 32) and views.dtype == torch.float32
        expected = dense_test_indices(NUM_FRAMES, 4, 2, 2)  # [[0,2,4,6],[13,15,17,19]]
        for v in range(6):
            levels = views[v].mean(dim=(0, 2, 3)) * 255
            want = torch.tensor([brightness(f) for f in expected[v // 3]], dtype=torch.float32)
            assert torch.allclose(levels, want, atol=3), (i, v, levels, want)


def test_failures_are_reported_not_replaced(video_dir, caplog):
    ds = VideoDataset(read_video_list(str(video_dir / "list.txt"), str(video_dir)), PROTOCOL)
    with caplog.at_level(logging.WARNING, logger="harness.data"):
        loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=collate_views)
        batches = list(loader)
    ok = torch.cat([b["indices"] for b in batches]).tolist()
    failed = [f for b in batches for f in b["failed"]]
    assert ok == [0, 2]
    assert torch.cat([b["labels"] for b in batches]).tolist() == [1, 0]
    assert [f["index"] for f in failed] == [1, 3, 4]
    assert failed[0]["error"].startswith("FileNotFoundError") and failed[0]["path"].endswith("missing.mp4")
    assert all(f["error"] for f in failed)
    assert len([r for r in caplog.records if r.name == "harness.data"]) == 3
    assert batches[0]["views"].shape == (2, 6, 3, 4, 32, 32)  # batch 0 = items 0..2, item 1 missing
    assert batches[1]["views"] is None and len(batches[1]["failed"]) == 2
    sample = ds[4]
    assert sample["views"] is None and sample["label"] == 4 and sample["path"].endswith("random.mp4")


def test_uniform_protocol_and_short_video(video_dir):
    p = VideoProtocol(sampler="uniform", clip_len=32, num_clips=2, num_crops=1, short_side=48, crop_size=48,
                      mean=[0, 0, 0], std=[1, 1, 1])
    views = VideoDataset(read_video_list(str(video_dir / "list.txt"), str(video_dir))[:1], p)[0]["views"]
    assert views.shape == (2, 3, 32, 48, 48)  # 32 frames from a 20-frame video: repeated


def test_load_clips_uint8(video_dir):
    items = read_video_list(str(video_dir / "list.txt"), str(video_dir))
    clips, labels = load_clips_uint8([items[0], items[2]], clip_len=6, size=32, progress=False)
    assert clips.shape == (2, 6, 32, 32, 3) and clips.dtype == torch.uint8
    assert labels.tolist() == [1, 0]
    levels = clips.float().mean(dim=(2, 3, 4))
    assert torch.allclose(levels, torch.tensor([[float(brightness(f)) for f in range(6)]] * 2), atol=3)
    with pytest.raises(RuntimeError, match="missing.mp4"):
        load_clips_uint8(items[:2], clip_len=6, size=32, progress=False)


def test_annotation_formats(tmp_path):
    (tmp_path / "mm.txt").write_text("# comment\nx/a.mp4\t3\n\nx/b.mp4   0\n")
    (tmp_path / "csv.csv").write_text("x/a.mp4,3\nx/b.mp4,0\n")
    (tmp_path / "vmae.csv").write_text("x/a.mp4 3\nx/b.mp4 0\n")
    assert detect_format(str(tmp_path / "csv.csv")) == "videomae_csv"
    assert detect_format(str(tmp_path / "mm.txt")) == "mmaction"
    for name in ("mm.txt", "csv.csv", "vmae.csv"):
        items = read_video_list(str(tmp_path / name), "/data")
        assert [(i.path, i.label, i.index) for i in items] == [("/data/x/a.mp4", 3, 0), ("/data/x/b.mp4", 0, 1)]
    assert len(read_video_list(str(tmp_path / "vmae.csv"), fmt="videomae_csv")) == 2


@pytest.mark.parametrize("content, problem", [("a.mp4 1\nb.mp4 1\nc.mp4\n", "expected 'path label'"),
                                              ("a.mp4 1\nb.mp4 1\nc.mp4 x\n", "not an integer"),
                                              ("a.mp4 1\nb.mp4 1\nc.mp4 -1\n", "negative"),
                                              ("a.mp4 1\nb.mp4 1\nc.mp4 7 9\n", "3 fields")])
def test_bad_annotation_line_names_file_and_line(tmp_path, content, problem):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match=problem) as info:
        read_video_list(str(path))
    assert f"{path}:3:" in str(info.value)


def test_label_map(tmp_path):
    (tmp_path / "classes.txt").write_text("walk\nrun\njump\n\n")
    assert read_label_map(str(tmp_path / "classes.txt")) == ["walk", "run", "jump"]
    (tmp_path / "dup.txt").write_text("walk\nrun\nwalk\n")
    with pytest.raises(ValueError, match=r"dup.txt:3: duplicate"):
        read_label_map(str(tmp_path / "dup.txt"))
    (tmp_path / "list.txt").write_text("a.mp4 3\n")
    with pytest.raises(ValueError, match=r"list.txt:1: label 3 >= num_classes 3"):
        read_video_list(str(tmp_path / "list.txt"), num_classes=3)


def test_video_list_dataset_entry(video_dir, tmp_path):
    cls = dataset_registry.get("video_list")
    ann = tmp_path / "ok.txt"
    ann.write_text("a.mp4 1\nb.mp4 4\n")
    cfg = cls(ann_file=str(ann), data_root=str(video_dir), num_clips=2, num_crops=3, clip_len=4, frame_interval=2,
              short_side=32, crop_size=32)
    assert cfg.check() == [] and cfg.views == 6
    assert cfg.resolve_num_classes() == 5
    ds = cfg.build()
    assert len(ds) == 2 and ds[1]["views"].shape == (6, 3, 4, 32, 32)
    manifest = cfg.manifest()
    assert manifest["num_videos"] == 2 and len(manifest["sha256"]) == 64
    key = cfg.key_material()
    assert key["ann_lines"] == 2
    ann.write_text("b.mp4 4\na.mp4 1\n")  # same pairs, other order: same manifest hash, new key
    assert cfg.manifest()["sha256"] == manifest["sha256"] and cfg.key_material() != key
    assert "ann_file is required" in " ".join(cls().check())
    with pytest.raises(FileNotFoundError, match="data_root"):
        cls(ann_file=str(ann), data_root=str(tmp_path / "nope")).build()
