"""A decoder that never returns (decord#373) or crashes costs one video, never the run.

A fake backend (registered like decord) blocks forever on ``hang.mp4`` and segfaults on ``segv.mp4``;
evaluation (``harness.measure.accuracy.evaluate_model``), ``harness data check`` and fine-tuning data loading must each finish
with that video counted as ``timeout`` (``crash``) and every other video decoded. Each test is bounded
by an alarm, so a regression fails instead of hanging the suite.
"""
from __future__ import annotations

import ctypes
import os
import signal
import time

import numpy as np
import pytest

from harness.data.decode import register_decoder
from harness.data.watchdog import DecoderCrash, DecodeTimeout, DecodeWorker
from conftest import deadline

FRAMES, SIDE = 16, 64


def fake_decoder(path: str, index_fn):
    """Frames whose value encodes the label in the file name; hangs on hang.mp4, crashes on segv.mp4."""
    name = os.path.basename(path)
    if name.startswith("hang"):
        while True:  # a C-level hang would look the same from outside: no reply, ever
            time.sleep(3600)
    if name.startswith("segv"):
        ctypes.string_at(0)  # SIGSEGV in the decoder process
    wanted = np.arange(FRAMES) if index_fn is None else np.asarray(index_fn(FRAMES), dtype=np.int64)
    unique = np.unique(wanted)
    value = 20 * int(name.split("_")[1].split(".")[0])
    frames = np.full((len(unique), SIDE, SIDE, 3), value, dtype=np.uint8)
    return frames, unique, wanted


register_decoder("fake_test", fake_decoder)



@pytest.fixture
def videos(tmp_path):
    """An mmaction list of 4 good fake videos, one that hangs and one that crashes the decoder."""
    names = ["ok_0.mp4", "ok_1.mp4", "hang_2.mp4", "ok_2.mp4", "segv_3.mp4", "ok_3.mp4"]
    for name in names:
        (tmp_path / name).write_bytes(b"not really a video")
    ann = tmp_path / "list.txt"
    ann.write_text("".join(f"{n} {n.split('_')[1][0]}\n" for n in names))
    return tmp_path, ann


def dataset(root, ann, **over):
    from harness.data.datasets import VideoListDataset

    fields = dict(ann_file=str(ann), data_root=str(root), num_classes=12, clip_len=FRAMES, frame_interval=1,
                  short_side=SIDE, crop_size=SIDE, decoder="fake_test", decode_timeout_s=1.0)
    return VideoListDataset(**{**fields, **over})


def test_worker_times_out_crashes_and_recovers():
    worker = DecodeWorker()
    with deadline(20, "decoding (the watchdog did not fire)"):
        assert worker.call(divmod, 7, 2, timeout=5) == (3, 1)
        t0 = time.monotonic()
        with pytest.raises(DecodeTimeout, match="decode_timeout_s=0.5"):
            worker.call(fake_decoder, "hang_0.mp4", None, timeout=0.5)
        assert time.monotonic() - t0 < 3
        with pytest.raises(DecoderCrash, match="SIGSEGV"):
            worker.call(fake_decoder, "segv_0.mp4", None, timeout=5)
        with pytest.raises(ZeroDivisionError):  # an ordinary exception comes back as itself
            worker.call(divmod, 1, 0, timeout=5)
        frames, _, _ = worker.call(fake_decoder, "ok_3.mp4", None, timeout=5)  # a fresh worker after both
        assert frames.shape == (FRAMES, SIDE, SIDE, 3) and int(frames[0, 0, 0, 0]) == 60
    pid = worker._pid
    worker.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_evaluation_counts_the_hung_and_crashed_videos_and_finishes(videos, num_workers):
    import torch

    import harness
    from harness.measure.accuracy import evaluate_model

    root, ann = videos
    model = harness.build_model("synthetic_vit_tiny")
    with deadline(60, "decoding (the watchdog did not fire)"):
        result = evaluate_model(model, dataset(root, ann), device=torch.device("cpu"), batch_size=2,
                                num_workers=num_workers)
    cov = result["coverage"]
    assert (cov["listed"], cov["decoded"], cov["failed"]) == (6, 4, 2)
    reasons = {os.path.basename(f["path"]): f["reason"] for f in cov["failed_videos"]}
    assert reasons == {"hang_2.mp4": "timeout", "segv_3.mp4": "crash"}
    assert result["metrics"]["num_videos"] == 4


def test_data_check_reports_timeout_and_crash(videos, capsys):
    from harness.cli import main

    root, ann = videos
    with deadline(60, "decoding (the watchdog did not fire)"):
        code = main(["data", "check", "video_list", "--set", f"ann_file={ann}", "--set", f"data_root={root}",
                     "--set", "decoder=fake_test", "--set", "decode_timeout_s=1", "--set", "num_classes=12"])
    out = capsys.readouterr().out
    assert code == 1
    assert "6 listed, 4 ok" in out and "1 timeout, 1 crash" in out
    rows = {line.split()[2]: line.split()[1] for line in out.splitlines() if line.split()[:1][0:1] != []
            and line.split()[0].isdigit()}
    assert {os.path.basename(p): s for p, s in rows.items()} == {"hang_2.mp4": "timeout", "segv_3.mp4": "crash"}


def test_finetuning_skips_the_hung_video_and_records_it(videos, tmp_path):
    from harness.training import FineTuneConfig
    from harness.training.loop import finetune

    root, ann = videos
    data = {"name": "video_list", **{k: v for k, v in vars(dataset(root, ann)).items()}}
    cfg = FineTuneConfig(backbone={"name": "synthetic_vit_tiny"}, method={"name": "dense", "params": {}},
                         dataset=data, recipe={"epochs": 2, "batch_size": 2, "warmup_epochs": 0.0}, threads=1)
    import torch

    threads = torch.get_num_threads()
    try:
        with deadline(90, "decoding (the watchdog did not fire)"):
            meta = finetune(cfg, str(tmp_path / "ft"), progress=False)
    finally:
        torch.set_num_threads(threads)  # the goldens of later tests are bit-exact at the session's count
    failed = {os.path.basename(f["path"]): f["reason"] for f in meta["failed_videos"]}
    assert failed == {"hang_2.mp4": "timeout", "segv_3.mp4": "crash"}
    assert meta["steps"] >= 2  # both epochs trained on the decodable videos


def test_train_sampler_draws_the_same_indices_as_in_process(videos):
    """The sampler runs on a copy in the worker and again here: clips match an in-process decode."""
    import functools

    from harness.data.decode import decode_item, guarded_decode
    from harness.training.data import train_indices

    root, ann = videos
    item = dataset(root, ann).items()[0]
    ours, theirs = np.random.default_rng(5), np.random.default_rng(5)
    fn = functools.partial(train_indices, sampler="dense", clip_len=4, frame_interval=2, rng=ours)
    with deadline(20, "decoding (the watchdog did not fire)"):
        _, _, wanted = guarded_decode(item, fn, timeout_s=5, decoder="fake_test")
    _, _, expected = decode_item(item, lambda n: train_indices(n, "dense", 4, 2, theirs), decoder="fake_test")
    assert np.array_equal(wanted, expected)
    assert ours.integers(1 << 30) == theirs.integers(1 << 30)  # our RNG advanced as if decoded here


def test_video_listed_twice_is_flagged_and_counted_once(tmp_path, capsys):
    import torch

    import harness
    from harness.cli import main
    from harness.measure.accuracy import evaluate_model

    for name in ("ok_0.mp4", "ok_1.mp4"):
        (tmp_path / name).write_bytes(b"x")
    ann = tmp_path / "list.txt"
    ann.write_text("ok_0.mp4 0\nok_1.mp4 1\n./ok_0.mp4 0\n")
    with deadline(60, "decoding (the watchdog did not fire)"):
        result = evaluate_model(harness.build_model("synthetic_vit_tiny"), dataset(tmp_path, ann),
                                device=torch.device("cpu"), batch_size=2)
        code = main(["data", "check", "video_list", "--set", f"ann_file={ann}", "--set", f"data_root={tmp_path}",
                     "--set", "decoder=fake_test", "--set", "num_classes=12"])
    cov = result["coverage"]
    assert (cov["listed"], cov["decoded"], cov["failed"]) == (3, 2, 1)
    (dup,) = cov["failed_videos"]
    assert dup["index"] == 2 and dup["reason"] == "invalid" and "duplicate video" in dup["error"]
    out = capsys.readouterr().out
    assert code == 1 and "3 listed, 2 ok" in out and "1 invalid" in out and "first listed as entry 0" in out


def test_worker_leaves_sigterm_to_its_parent():
    """Slurm preempts by SIGTERM to every process of the job: a decoder dying first would turn the
    video it was decoding into a 'crash'; the worker ignores it and dies with its parent instead."""
    worker = DecodeWorker()
    with deadline(20, "decoding (the watchdog did not fire)"):
        assert worker.call(divmod, 9, 4, timeout=5) == (2, 1)
        os.kill(worker._pid, signal.SIGTERM)
        time.sleep(0.2)
        assert worker.call(divmod, 9, 4, timeout=5) == (2, 1)
    worker.close()
