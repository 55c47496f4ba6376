"""Decoder backends: the same frame indices give the same frames with every available backend; an
over-declared frame count is a clear error; availability and identity are facts validation, records
and cell keys carry.

Fixtures are written here with PyAV: constant frame rate H.264 (MP4), MPEG-4 (AVI, MKV: no declared
frame count), a variable-frame-rate MP4, and an AVI whose headers declare 40 frames for 24 held.
"""
from __future__ import annotations

import importlib.metadata
import struct

import numpy as np
import pytest
import yaml

from harness.data import decode
from harness.data.decode import (decode_frames, decoder_available, decoder_identity, guarded_decode,
                                 register_decoder)
from harness.data.registry import VideoProtocol
from tests import real_layouts as rl

NUM_FRAMES = 24
CFR = ("h264.mp4", "mpeg4.avi", "mpeg4.mkv", "odd_width_97x48.avi")
ODD_HEIGHT = "odd_height_96x61.avi"  # 4:2:0 with an odd number of rows (MPEG-4 Part 2 allows it)
OTHERS = [name for name in decode.decoder_names() if name in ("pyav", "torchcodec")]


def textured(num_frames: int, h: int = 48, w: int = 64) -> np.ndarray:
    """Colour gradients that move with the frame: a chroma or frame-order mistake changes pixels."""
    y, x = np.mgrid[0:h, 0:w]
    frames = [np.stack([(4 * x + 9 * f) % 256, (5 * y + 3 * f) % 256, np.full_like(x, rl.level(0, f))], -1)
              for f in range(num_frames)]
    return np.stack(frames).astype(np.uint8)


def over_declared_avi(src: str, dst: str, declared: int) -> str:
    """A copy of an AVI whose main and stream headers declare ``declared`` frames."""
    data = bytearray(open(src, "rb").read())
    avih, strh = data.find(b"avih"), data.find(b"strh")
    data[avih + 24:avih + 28] = struct.pack("<I", declared)  # dwTotalFrames
    data[strh + 40:strh + 44] = struct.pack("<I", declared)  # dwLength of the video stream
    with open(dst, "wb") as f:
        f.write(data)
    return dst


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("decoders")
    for name in CFR + (ODD_HEIGHT,):
        w, h = map(int, name.split("_")[-1].split(".")[0].split("x")) if name.startswith("odd") else (64, 48)
        rl.write_video(str(root / name), textured(NUM_FRAMES, h, w))
    rl.write_video(str(root / "vfr.mp4"), textured(NUM_FRAMES), vfr=True)
    over_declared_avi(str(root / "mpeg4.avi"), str(root / "over_declared.avi"), 40)
    return root


def backend(name: str) -> str:
    ok, why = decoder_available(name)
    if not ok:
        pytest.skip(f"decoder {name!r} is unavailable here: {why}")
    return name


INDICES = {
    "sequential": lambda n: np.arange(n),
    "random": lambda n: np.random.default_rng(3).integers(0, n, 12),
    "repeated": lambda n: np.array([5, 5, 5, 0, 0, n - 1, n - 1]),
    "reversed": lambda n: np.arange(n)[::-1],
    "clips": lambda n: np.array([[0, 2, 4, 6], [7, 9, 11, 13], [16, 18, 20, 22]]),  # a views layout
}


@pytest.mark.parametrize("other", OTHERS)
@pytest.mark.parametrize("name", CFR)
def test_every_backend_decodes_the_same_frames(videos, name, other):
    other = backend(other)
    path = str(videos / name)
    for pattern, index_fn in INDICES.items():
        ref = decode_frames(path, index_fn, "decord")
        got = decode_frames(path, index_fn, other)
        assert np.array_equal(got[1], ref[1]) and np.array_equal(got[2], ref[2]), (pattern, "indices")
        assert got[0].dtype == np.uint8 and got[0].shape == ref[0].shape, (pattern, got[0].shape)
        assert np.array_equal(got[0], ref[0]), (pattern, np.abs(got[0].astype(int) - ref[0]).max())
    frames, unique, _ = decode_frames(path, None, other)  # all frames, each distinct (not frame 0 repeated)
    assert len(unique) == NUM_FRAMES and len({f.tobytes() for f in frames}) == NUM_FRAMES


@pytest.mark.parametrize("other", OTHERS)
def test_an_odd_frame_height_decodes_the_same_frames_in_slightly_other_colours(videos, other):
    """decord 0.6 (its own FFmpeg 4) and PyAV 18 (FFmpeg 8) convert 4:2:0 with an odd number of rows to RGB
    differently (even heights: identical); the frames are the same ones (docs/datasets.md, Decoders)."""
    other = backend(other)
    path = str(videos / ODD_HEIGHT)
    ref, got = decode_frames(path, None, "decord")[0].astype(int), decode_frames(path, None, other)[0].astype(int)
    assert got.shape == ref.shape == (NUM_FRAMES, 61, 96, 3)
    per_frame = np.abs(got - ref).mean(axis=(1, 2, 3))
    assert per_frame.max() < 4, per_frame
    nearest = np.abs(got[:, None] - ref[None]).mean(axis=(2, 3, 4)).argmin(axis=1)  # each frame is its own
    assert list(nearest) == list(range(NUM_FRAMES))


@pytest.mark.parametrize("other", OTHERS)
def test_variable_frame_rate_is_decoded_by_index_like_decord(videos, other):
    """Frame durations 10/80/33 ms: every backend numbers frames in presentation order, not by time."""
    other = backend(other)
    path = str(videos / "vfr.mp4")
    for index_fn in INDICES.values():
        ref, got = decode_frames(path, index_fn, "decord"), decode_frames(path, index_fn, other)
        assert np.array_equal(got[0], ref[0]) and np.array_equal(got[1], ref[1])


def test_pyav_refuses_a_container_that_declares_more_frames_than_it_holds(videos):
    path = str(videos / "over_declared.avi")
    with pytest.raises(ValueError, match=r"over_declared\.avi: the container declares 40 frames but holds only 24"):
        decode_frames(path, None, "pyav")
    frames, unique, _ = decode_frames(path, lambda n: np.array([0, 23]), "pyav")  # the frames it holds decode
    assert len(frames) == 2 and list(unique) == [0, 23]
    item = rl_item(path)
    with pytest.raises(ValueError, match="declares 40 frames but holds only 24"):  # the same through the watchdog
        guarded_decode(item, None, timeout_s=20, decoder="pyav")


def rl_item(path: str):
    from harness.data.annotations import VideoItem

    return VideoItem(index=0, path=path, label=0)


def test_a_dataset_with_decoder_pyav_gives_the_views_of_decord(videos):
    from harness.data.datasets import VideoListDataset

    (videos / "list.txt").write_text("".join(f"{n} {i}\n" for i, n in enumerate(CFR + ("vfr.mp4",))))
    protocol = dict(ann_file=str(videos / "list.txt"), data_root=str(videos), num_classes=8, sampler="dense",
                    clip_len=4, frame_interval=3, num_clips=2, num_crops=3, short_side=32, crop_size=32)
    ref = VideoListDataset(**protocol).build()
    got = VideoListDataset(**protocol, decoder=backend("pyav")).build()
    assert got.protocol.decoder == "pyav"
    for i in range(len(ref)):
        a, b = ref[i], got[i]
        assert a["error"] is None and b["error"] is None, (a["error"], b["error"])
        assert a["views"].shape == (6, 3, 4, 32, 32) and a["views"].equal(b["views"])


def test_data_check_with_pyav_reports_what_decord_reports(videos):
    from harness.data.check import check_items
    from harness.data.annotations import VideoItem

    items = [VideoItem(index=i, path=str(videos / n), label=0) for i, n in enumerate(CFR + ("vfr.mp4",))]
    items.append(VideoItem(index=len(items), path=str(videos / "gone.mp4"), label=0))
    for decoder in ("decord", "pyav"):
        result = check_items(items, decoder=decoder, progress=False)
        assert (result["ok"], result["missing"]) == (len(CFR) + 1, 1), (decoder, result["problems"])


# ----------------------------------------------------------------------------- availability, identity

def failing_backend(path, index_fn):
    raise AssertionError("never called: the backend is unavailable")


register_decoder("needs_cuda_test", failing_backend, module="harness_test_fake_cuda_decoder",
                 install="it needs a CUDA build of torch")


def test_an_unknown_decoder_is_a_problem_with_close_matches():
    problems = VideoProtocol(decoder="pyva").check()
    assert problems == [f"decoder must be one of {', '.join(decode.decoder_names())}, got 'pyva'; "
                        "did you mean 'pyav'?"]
    with pytest.raises(RuntimeError, match="unknown decoder 'nosuch'"):
        decode_frames(__file__, None, "nosuch")


def test_an_unavailable_decoder_is_a_problem_with_the_reason(tmp_path, monkeypatch):
    (tmp_path / "harness_test_fake_cuda_decoder.py").write_text(
        "raise OSError('libc10_cuda.so: cannot open shared object file: No such file or directory')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ok, why = decoder_available("needs_cuda_test")
    assert not ok and why == ("harness_test_fake_cuda_decoder cannot be imported: OSError: libc10_cuda.so: cannot "
                              "open shared object file: No such file or directory; it needs a CUDA build of torch")
    assert VideoProtocol(decoder="needs_cuda_test").check() == [f"decoder 'needs_cuda_test' is unavailable here: {why}"]
    with pytest.raises(RuntimeError, match="unavailable: harness_test_fake_cuda_decoder cannot be imported"):
        decode_frames(__file__, None, "needs_cuda_test")
    ok, why = decoder_available("torchcodec")
    if not ok:  # on a CPU-only torch: not installed, or its wheel fails to load CUDA libraries
        assert VideoProtocol(decoder="torchcodec").check() == [f"decoder 'torchcodec' is unavailable here: {why}"]
        assert "torchcodec" in why and "CUDA build of torch" in why and ".[torchcodec]" in why


def test_a_suite_reports_unknown_and_unavailable_decoders_on_the_field(tmp_path):
    from harness.suite import validate_suite

    suite = {"name": "d", "backbones": [{"name": "synthetic_vit_tiny"}],
             "datasets": [{"name": "synthetic_motion", "decoder": "decrod"},
                          {"name": "synthetic_motion", "decoder": "needs_cuda_test"}],
             "methods": [{"name": "dense"}]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(suite))
    problems = {p.field: p.message for p in validate_suite(tmp_path / "s.yaml")}
    assert "did you mean 'decord'?" in problems["datasets[0].decoder"]
    assert "'needs_cuda_test' is unavailable here" in problems["datasets[1].decoder"]


def test_identity_names_the_distribution_that_provides_the_module(monkeypatch):
    assert decoder_identity("decord") == f"decord {importlib.metadata.version('decord')}"
    assert decoder_identity("pyav") == f"pyav {importlib.metadata.version('av')}"
    assert decoder_identity("needs_cuda_test") == "needs_cuda_test (not installed)"
    real = importlib.metadata.packages_distributions()
    monkeypatch.setattr(importlib.metadata, "packages_distributions", lambda: {**real, "decord": ["decord2"]})
    monkeypatch.setattr(importlib.metadata, "version", lambda dist: {"decord2": "3.4.0"}[dist])
    decode.distributions_of.cache_clear()
    try:
        assert decoder_identity("decord") == "decord2 3.4.0"  # the fork installs the same module
    finally:
        decode.distributions_of.cache_clear()


def test_cell_keys_carry_the_decoder_identity_and_finetune_keys_do_not(tmp_path, monkeypatch):
    from harness.suite import load_suite
    from harness.training import FineTuneConfig

    suite = {"name": "d", "backbones": [{"name": "synthetic_vit_tiny"}],
             "datasets": [{"name": "synthetic_motion"}, {"name": "synthetic_motion", "decoder": "pyav"}],
             "methods": [{"name": "dense"}]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(suite))
    ft = FineTuneConfig(backbone={"name": "synthetic_vit_tiny"}, method={"name": "dense", "params": {}},
                        dataset={"name": "synthetic_motion", "split": "train", "decoder": "decord"})
    decord_cell, pyav_cell = load_suite(tmp_path / "s.yaml").cells()
    before = (decord_cell.key, pyav_cell.key, ft.key())
    assert decord_cell.key != pyav_cell.key
    monkeypatch.setattr(decode, "decoder_identity", lambda name: f"{name} 99.0")  # another decord build
    again = load_suite(tmp_path / "s.yaml").cells()
    assert again[0].key != before[0] and again[1].key != before[1]
    assert ft.key() == before[2]  # shipped fine-tunes stay found by their key


def test_records_name_the_decoder_and_pyav_gives_decords_results(tmp_path):
    """One cell per decoder on a few synthetic clips: same predictions, the identity in provenance."""
    import torch

    import harness
    from conftest import FAST_MEASURE
    from harness.cli import main
    from harness.store import ResultStore

    torch.manual_seed(0)
    torch.save({"module": harness.build_model("synthetic_vit_tiny").state_dict()}, tmp_path / "tiny.pth")
    data = {"name": "synthetic_motion", "root": "data", "num_train": 0, "num_val": 6}
    suite = {"name": "decoders", "backbones": [{"name": "synthetic_vit_tiny", "checkpoint": "tiny.pth"}],
             "datasets": [data, {**data, "decoder": backend("pyav")}], "methods": [{"name": "dense"}],
             "eval": {"batch_size": 3, "num_workers": 0},
             "measure": {**FAST_MEASURE, "flops": False, "memory": False, "throughput": False}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(suite))
    assert main(["run", str(tmp_path / "s.yaml"), "--executor", "debug", "--results", str(tmp_path / "r")]) == 0
    store = ResultStore(str(tmp_path / "r"))
    records = {r["config"]["dataset"]["decoder"]: r for r in store.records()}
    assert set(records) == {"decord", "pyav"} and len({r["key"] for r in records.values()}) == 2
    for name, record in records.items():
        assert record["status"] == "ok", record.get("error")
        assert record["provenance"]["decoder"] == decoder_identity(name)
    assert records["pyav"]["metrics"]["top1"] == records["decord"]["metrics"]["top1"]
    assert records["pyav"]["coverage"] == records["decord"]["coverage"]
    a, b = (store.read_samples(records[n]["key"]) for n in ("decord", "pyav"))
    assert a == b and len(a) == 6


def test_the_decord_fixture_itself_is_what_was_encoded(videos):
    """A guard on the comparison above: decord's frames are close to the encoded pixels, in order."""
    frames, _, _ = decode_frames(str(videos / "h264.mp4"), None, "decord")
    diff = np.abs(frames.astype(int) - textured(NUM_FRAMES).astype(int)).mean(axis=(1, 2, 3))
    assert diff.max() < 12, diff


@pytest.mark.gpu
def test_torchcodec_loads_and_decodes_decords_frames_on_a_cuda_torch(videos):
    """What ``scripts/gpu_check.sh`` checks on a GPU node: with a CUDA build of torch the torchcodec extra
    loads (not installed: skipped with the reason) and decodes the frames decord does."""
    import torch

    if torch.version.cuda is None:
        pytest.skip("a CPU build of torch: torchcodec's wheel cannot load (it needs libc10_cuda.so)")
    ok, why = decoder_available("torchcodec")
    if not ok and "is not installed" in why:
        pytest.skip(why)
    assert ok, why
    for name in CFR + ("vfr.mp4",):
        for pattern, index_fn in INDICES.items():
            ref, got = decode_frames(str(videos / name), index_fn, "decord"), decode_frames(str(videos / name), index_fn,
                                                                                             "torchcodec")
            assert all(np.array_equal(a, b) for a, b in zip(ref, got)), (name, pattern)


def test_pyav_decodes_the_narrow_videos_decord_0_6_refuses(tmp_path):
    """decord 0.6 fails on some narrow H.264 widths (48 px among them, docs/datasets.md); PyAV does not."""
    path = rl.write_video(str(tmp_path / "narrow_48.mp4"), rl.frames_of(2, 8, 64, 48))
    frames, _, _ = decode_frames(path, None, backend("pyav"))
    assert frames.shape == (8, 64, 48, 3)
    levels = frames.reshape(8, -1).mean(axis=1)
    assert np.allclose(levels, [rl.level(2, f) for f in range(8)], atol=3), levels


def test_validation_never_loads_a_decoder_in_this_process():
    # decord bundles its own FFmpeg/libvpx; loaded next to PyAV's, PyAV can no longer open VP9 ("ABI
    # version mismatch"): only the decode workers may import a decoder
    import subprocess
    import sys

    code = ("import sys; from harness.data.registry import VideoProtocol; "
            "assert VideoProtocol(decoder='decord').check() == []; "
            "assert VideoProtocol(decoder='pyav').check() == []; "
            "print(sorted(m for m in ('decord', 'av') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
