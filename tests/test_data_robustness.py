"""Real-world input: several containers and codecs, damaged copies, odd shapes and rates, bad annotations.

Every problem is counted and listed (in ``harness data check`` and in the record's coverage), never
crashes, never substitutes another video; everything decodable is evaluated on its own frames.
"""
import hashlib
import os

import numpy as np
import pytest
import torch
import yaml

from harness.cli import main
from harness.data.check import check_items
from harness.data.real import Kinetics400Dataset
from harness.data.video_dataset import VideoDataset, collate_views
from harness.store import ResultStore
from tests import real_layouts as rl

NUM_CLASSES = 5
# name -> (video id whose levels it carries, frames); written by the fixture, all decodable
GOOD = {
    "h264.mp4": dict(vid=0, n=24),
    "mpeg4.avi": dict(vid=1, n=24),
    "vp9.webm": dict(vid=2, n=24),
    "odd_97x61.webm": dict(vid=3, n=24, h=61, w=97),
    "odd_97x61.avi": dict(vid=4, n=24, h=61, w=97),
    "odd_97x61_yuv444.mp4": dict(vid=5, n=24, h=61, w=97, pix_fmt="yuv444p"),
    "short_5_frames.mp4": dict(vid=6, n=5),  # shorter than the clip span: loops, as mmaction2
    "vfr.mp4": dict(vid=7, n=24, vfr=True),
    "vfr.webm": dict(vid=8, n=24, vfr=True),
    "gray.mp4": dict(vid=9, n=24, gray=True),  # a one-channel (gray) H.264 stream
    "fps_7.avi": dict(vid=10, n=24, fps=7),
    "tall_60x160.mp4": dict(vid=11, n=24, h=160, w=60),
}
# name -> status that `data check` must give it
DAMAGED = {
    "truncated.mp4": "corrupt", "truncated.avi": "corrupt", "truncated.webm": "corrupt",
    "zero_length.mp4": "corrupt", "garbage.mp4": "corrupt", "header_garbage.avi": "corrupt",
    "no_streams.mp4": "corrupt", "audio_only.mp4": "corrupt", "audio_only.webm": "corrupt",
    "missing.mp4": "missing", "dangling_link.mp4": "missing", "a_directory.mp4": "unreadable",
}
PROTOCOL = dict(sampler="dense", clip_len=4, frame_interval=2, num_clips=2, num_crops=3, short_side=32,
                crop_size=32, mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0])


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    videos = root / "videos"
    for name, spec in GOOD.items():
        spec = dict(spec)
        frames = rl.frames_of(spec.pop("vid"), spec.pop("n"), spec.pop("h", 48), spec.pop("w", 64),
                              gray=spec.pop("gray", False))
        if frames.ndim == 3:
            spec["pix_fmt"] = "gray"
        rl.write_video(str(videos / name), frames, **spec)
    for ext in ("mp4", "avi", "webm"):
        good = {"mp4": "h264.mp4", "avi": "mpeg4.avi", "webm": "vp9.webm"}[ext]
        rl.truncated_copy(str(videos / good), str(videos / f"truncated.{ext}"), 0.6)
    (videos / "zero_length.mp4").write_bytes(b"")
    (videos / "garbage.mp4").write_bytes(np.random.default_rng(1).bytes(5000))
    rl.header_garbage_copy(str(videos / "mpeg4.avi"), str(videos / "header_garbage.avi"))
    rl.write_streamless_mp4(str(videos / "no_streams.mp4"))
    rl.write_audio_only(str(videos / "audio_only.mp4"))
    rl.write_audio_only(str(videos / "audio_only.webm"))
    os.symlink(str(videos / "gone.mp4"), str(videos / "dangling_link.mp4"))
    (videos / "a_directory.mp4").mkdir()
    # an annotation list in mmaction2 format, with a label out of range and a duplicated entry
    names = list(GOOD) + list(DAMAGED)
    lines = [f"{n} {i % NUM_CLASSES}" for i, n in enumerate(names)]
    lines.insert(3, f"h264.mp4 {NUM_CLASSES}")  # duplicate of line 1 (and its label is out of range)
    lines.insert(7, "mpeg4.avi 1")  # duplicate of line 2
    lines.append(f"never_written.webm {NUM_CLASSES + 3}")  # label out of range (and no file: not opened)
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    return root


def dataset(zoo, **kw):
    return Kinetics400Dataset(data_root=str(zoo / "videos"), ann_file=str(zoo / "list.txt"),
                              num_classes=NUM_CLASSES, **{**PROTOCOL, **kw})


def invalid_lines():
    return {3: "duplicate video 'h264.mp4' (first listed at", 7: "duplicate video 'mpeg4.avi' (first listed at",
            len(GOOD) + len(DAMAGED) + 2: f"label {NUM_CLASSES + 3} out of range for num_classes {NUM_CLASSES}"}


def fingerprint(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            data = open(p, "rb").read() if os.path.isfile(p) and not os.path.islink(p) else b""
            out[p] = (st.st_mode, st.st_size, st.st_mtime_ns, hashlib.sha256(data).hexdigest())
    return out


def test_items_flag_bad_entries_and_keep_the_rest(zoo):
    items = dataset(zoo).items()
    assert len(items) == len(GOOD) + len(DAMAGED) + 3
    flagged = {it.index: it.problem for it in items if it.problem}
    assert sorted(flagged) == sorted(invalid_lines())
    for index, text in invalid_lines().items():
        assert text in flagged[index], flagged[index]
    m = dataset(zoo).manifest()
    assert (m["num_videos"], m["invalid_entries"]) == (len(items), 3)


def test_data_check_lists_exactly_the_damaged_and_changes_nothing(zoo):
    before = fingerprint(zoo)
    result = check_items(dataset(zoo).items(), workers=2, progress=False)
    found = {os.path.basename(p["path"]): p["status"] for p in result["problems"] if p["status"] != "invalid"}
    assert found == DAMAGED, {k: v for k, v in found.items() if DAMAGED.get(k) != v}
    invalid = {p["index"] for p in result["problems"] if p["status"] == "invalid"}
    assert invalid == set(invalid_lines())
    assert (result["ok"], result["invalid"], result["missing"], result["unreadable"]) == (len(GOOD), 3, 2, 1)
    truncated = [p["error"] for p in result["problems"] if p["path"].endswith(("truncated.avi", "truncated.webm"))]
    assert all(e.startswith("truncated:") for e in truncated), truncated  # decodable up to the cut: found by size
    assert fingerprint(zoo) == before


def test_evaluation_decodes_each_good_video_from_its_own_frames(zoo):
    items = dataset(zoo).items()
    data = VideoDataset(items, dataset(zoo))
    loader = torch.utils.data.DataLoader(data, batch_size=5, collate_fn=collate_views)
    decoded, failed = {}, {}
    for batch in loader:
        for i, path, views in zip(batch["indices"].tolist(), batch["paths"],
                                   batch["views"] if batch["views"] is not None else []):
            decoded[i] = (os.path.basename(path), views)
        failed.update({f["index"]: (os.path.basename(f["path"]), f["error"]) for f in batch["failed"]})
    assert sorted(n for n, _ in decoded.values()) == sorted(GOOD)
    assert len(decoded) + len(failed) == len(items)  # every entry accounted for once
    for i, (name, views) in decoded.items():
        spec = GOOD[name]
        assert views.shape == (6, 3, 4, 32, 32)
        if spec.get("gray"):
            assert torch.equal(views[:, 0], views[:, 1]) and torch.equal(views[:, 1], views[:, 2])
            continue
        n = spec["n"]
        from harness.data.sampling import dense_test_indices

        want = torch.tensor([[rl.level(spec["vid"], f) for f in clip] for clip in dense_test_indices(n, 4, 2, 2)],
                            dtype=torch.float32)
        got = views.mean(dim=(1, 3, 4)).view(2, 3, 4)[:, 1] * 255  # centre crop of each clip
        assert torch.allclose(got, want, atol=4), (name, got, want)  # its own frames, never another video's
    errors = {name: err for name, err in failed.values()}
    for index, text in invalid_lines().items():
        assert failed[index][1].startswith("AnnotationError") and text in failed[index][1]
    assert set(errors) >= set(DAMAGED)
    assert errors["truncated.avi"].startswith("TruncatedVideoError: truncated:")
    assert errors["a_directory.mp4"].startswith("IsADirectoryError")
    assert errors["missing.mp4"].startswith("FileNotFoundError")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root reads files without read permission; unreadable paths are covered by a "
                           "directory and a dangling link instead")
def test_a_file_without_read_permission_is_unreadable(zoo, tmp_path):  # pragma: no cover - non-root only
    from harness.data.check import probe_video

    locked = tmp_path / "locked.mp4"
    locked.write_bytes((zoo / "videos" / "h264.mp4").read_bytes())
    locked.chmod(0)
    try:
        assert probe_video(str(locked))[0] == "unreadable"
        with pytest.raises(PermissionError):
            VideoDataset([], dataset(zoo)).load_views(str(locked))
    finally:
        locked.chmod(0o644)


def test_a_run_records_every_failure_in_the_coverage(zoo, tmp_path, capsys):
    import harness

    torch.manual_seed(0)
    dims = {"embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 16, "num_frames": 4, "img_size": 32,
            "num_classes": NUM_CLASSES}
    torch.save({"module": harness.build_model("video_vit", **dims).state_dict()}, tmp_path / "tiny.pth")
    suite = {"name": "robustness", "backbones": [{"name": "video_vit", "checkpoint": "tiny.pth", **dims}],
             "datasets": [{"name": "kinetics400", "data_root": str(zoo / "videos"), "ann_file": str(zoo / "list.txt"),
                           "num_classes": NUM_CLASSES, **PROTOCOL}],
             "methods": [{"name": "dense"}],
             "eval": {"batch_size": 4, "num_workers": 0},
             "measure": {"throughput": False, "flops": False}}
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    results = str(tmp_path / "results")
    assert main(["run", str(tmp_path / "suite.yaml"), "--executor", "debug", "--results", results]) == 0
    (record,) = ResultStore(results).records()
    assert record["status"] == "ok", record.get("error")
    cov = record["coverage"]
    listed = len(GOOD) + len(DAMAGED) + 3
    assert (cov["listed"], cov["decoded"], cov["failed"]) == (listed, len(GOOD), len(DAMAGED) + 3)
    failed = {(f["index"], os.path.basename(f["path"])) for f in cov["failed_videos"]}
    assert {n for _, n in failed} == set(DAMAGED) | {"h264.mp4", "mpeg4.avi", "never_written.webm"}
    assert {i for i, _ in failed} >= set(invalid_lines())
    assert record["metrics"]["num_videos"] == len(GOOD)
    samples = ResultStore(results).read_samples(record["key"])
    assert sorted(os.path.basename(s["path"]) for s in samples) == sorted(GOOD)  # each good video once
    assert record["provenance"]["dataset_manifest"]["invalid_entries"] == 3
    capsys.readouterr()


def test_cli_data_check_on_the_zoo(zoo, capsys):
    code = main(["data", "check", "kinetics400", "--set", f"data_root={zoo / 'videos'}",
                 "--set", f"ann_file={zoo / 'list.txt'}", "--set", f"num_classes={NUM_CLASSES}"])
    out = capsys.readouterr().out
    assert code == 1
    listed = len(GOOD) + len(DAMAGED) + 3
    assert (f"{listed} listed, {len(GOOD)} ok, 2 missing, 1 unreadable, 0 empty, {len(DAMAGED) - 3} corrupt, "
            f"3 invalid") in out
    for name in DAMAGED:
        assert name in out
