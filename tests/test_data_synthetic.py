"""Synthetic motion dataset: determinism, idempotence, balance and that the motions are what they say."""
import collections
import json
import subprocess
import sys
import time

import numpy as np
import pytest

from harness.data import dataset_registry
from harness.data.annotations import read_video_list
from harness.data.synthetic import CLASSES, _background, clip_rng, generate, render_clip
from harness.data.video_dataset import decode_frames

SMALL = dict(num_train=24, num_val=12, seed=0, progress=False)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("syn") / "ds", **SMALL)


def file_hashes(root):
    return {k: v["sha256"] for k, v in json.loads((root / "manifest.json").read_text())["files"].items()}


def test_layout_and_balance(small):
    assert (small / "classes.txt").read_text().split() == list(CLASSES)
    for split, n in (("train", 24), ("val", 12)):
        lines = (small / f"{split}.txt").read_text().splitlines()
        assert lines[0].startswith(f"videos/{split}/00000.mp4 ")
        items = read_video_list(str(small / f"{split}.txt"), str(small))
        assert len(items) == n
        assert set(collections.Counter(i.label for i in items).values()) == {n // 12}
    frames, _, _ = decode_frames(str(small / "videos/val/00000.mp4"))
    assert frames.shape == (16, 64, 64, 3)


def test_deterministic_and_seed_dependent(small, tmp_path):
    again = generate(tmp_path / "again", **SMALL)
    assert file_hashes(again) == file_hashes(small)
    other = generate(tmp_path / "other", **{**SMALL, "seed": 1})
    differ = [k for k, v in file_hashes(other).items() if k.endswith(".mp4") and v != file_hashes(small)[k]]
    assert len(differ) == 36


def test_idempotent_and_regenerates_on_new_params(small, tmp_path):
    mtime = (small / "manifest.json").stat().st_mtime_ns
    started = time.perf_counter()
    assert generate(small, **SMALL) == small
    assert time.perf_counter() - started < 0.5
    assert (small / "manifest.json").stat().st_mtime_ns == mtime
    root = generate(tmp_path / "grow", num_train=12, num_val=12, progress=False)
    generate(root, num_train=24, num_val=12, progress=False)  # different params: replaced in place
    assert len((root / "train.txt").read_text().splitlines()) == 24
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left behind
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        generate(tmp_path / "user", **SMALL)


def test_concurrent_generation(tmp_path):
    code = ("import sys; from harness.data.synthetic import generate; "
            "generate(sys.argv[1], num_train=12, num_val=0, progress=False)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "ds")]) for _ in range(2)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert len([k for k in manifest["files"] if k.endswith(".mp4")]) == 12


def object_track(frames, background):
    """Per-frame centroid (x, y) and area of the pixels that differ from the clean background."""
    mask = np.abs(frames.astype(np.float32) - background[None]).sum(-1) > 45
    ys, xs = np.mgrid[0 : frames.shape[1], 0 : frames.shape[2]]
    area = mask.sum((1, 2))
    cx = (mask * xs).sum((1, 2)) / np.maximum(area, 1)
    cy = (mask * ys).sum((1, 2)) / np.maximum(area, 1)
    return cx, cy, area


def clean_background(split, index, seed=0):
    # render_clip draws the background first from the clip's generator: replay that draw, noise-free
    return _background(clip_rng(seed, split, index), 64)


def test_decoded_move_right_moves_right(small):
    items = [i for i in read_video_list(str(small / "train.txt"), str(small)) if CLASSES[i.label] == "move_right"]
    assert items
    for item in items:
        frames, _, _ = decode_frames(item.path)
        cx, cy, area = object_track(frames, clean_background("train", item.index))
        assert area.min() > 50
        assert cx[-1] - cx[0] > 0.2 * 64 and np.corrcoef(np.arange(16), cx)[0, 1] > 0.95
        assert abs(cy[-1] - cy[0]) < 3


@pytest.mark.parametrize("seed", range(4))
def test_every_class_does_what_its_name_says(seed):
    t = np.arange(16)
    for label, name in enumerate(CLASSES):
        index = 1000 + label
        cx, cy, area = object_track(render_clip(label, clip_rng(seed, "train", index)),
                                    clean_background("train", index, seed))
        slope_x, slope_y = np.polyfit(t, cx, 1)[0], np.polyfit(t, cy, 1)[0]
        moving = {"x": np.ptp(cx) > 8, "y": np.ptp(cy) > 8}
        if name == "move_right":
            assert slope_x > 0.9 and not moving["y"]
        elif name == "move_left":
            assert slope_x < -0.9 and not moving["y"]
        elif name == "move_down":
            assert slope_y > 0.9 and not moving["x"]
        elif name == "move_up":
            assert slope_y < -0.9 and not moving["x"]
        elif name in ("circle_cw", "circle_ccw"):
            # z of the cross product of successive displacements: > 0 is clockwise on screen (y down)
            d = np.stack([np.diff(cx), np.diff(cy)], 1)
            turn = np.sum(d[:-1, 0] * d[1:, 1] - d[:-1, 1] * d[1:, 0])
            assert (turn > 0) == (name == "circle_cw") and moving["x"] and moving["y"], (name, turn)
        elif name == "grow":
            assert area[-1] > 1.4 * area[0] and np.all(np.diff(area) > -5)
        elif name == "shrink":
            assert area[0] > 1.4 * area[-1] and np.all(np.diff(area) < 5)
        elif name == "blink":
            assert (area < 5).any() and (area > 50).any()
        elif name in ("bounce_horizontal", "bounce_vertical"):
            axis = cx if name == "bounce_horizontal" else cy
            steps = np.sign(np.round(np.diff(axis), 1))
            assert moving["x" if name == "bounce_horizontal" else "y"]
            assert (steps > 0).any() and (steps < 0).any()  # it turns back
        elif name == "static":
            assert np.ptp(cx) < 1 and np.ptp(cy) < 1 and np.ptp(area) < 0.2 * area.max()
        if name != "blink":
            assert 0.02 * 64 * 64 < np.median(area) < 0.12 * 64 * 64, (name, area)


def test_registered_entry(small):
    cfg = dataset_registry.get("synthetic_motion")(root=str(small), num_train=24, num_val=12)
    assert cfg.check() == [] and cfg.num_classes == 12
    ds = cfg.build()
    assert len(ds) == 12
    sample = ds[0]
    assert sample["error"] is None and sample["views"].shape == (1, 3, 16, 64, 64)
    assert cfg.manifest()["num_videos"] == 12
    assert cfg.key_material()["generator_version"] == "synthetic_motion-v2"
    assert len(cfg.items("train")) == 24
