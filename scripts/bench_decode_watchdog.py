"""Overhead of the decode watchdog (harness/data/watchdog.py) on the quickstart's clips.

    PYTHONPATH=. python scripts/bench_decode_watchdog.py [--videos 300] [--repeats 3]

Decodes the first N synthetic_motion val clips (64x64, 16 frames; generated on first use) three ways,
alternating, one thread: ``decode_item`` in-process (no deadline), ``guarded_decode`` (the same in the
watchdog worker) and ``VideoDataset[i]`` (guarded decode + resize + views, what evaluation runs).
"""
import argparse
import functools
import time

import torch

from harness.data import decode
from harness.data.datasets import SyntheticMotionDataset
from harness.data.sampling import sample_test_indices
from harness.data.video_dataset import VideoDataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ds = SyntheticMotionDataset(split="val")
    items = ds.items()[: args.videos]
    data = VideoDataset(items, ds)
    index_fn = functools.partial(sample_test_indices, sampler=ds.sampler, clip_len=ds.clip_len,
                                 frame_interval=ds.frame_interval, num_clips=ds.num_clips)
    n = len(items)
    for _ in range(args.repeats):
        t = time.perf_counter()
        for it in items:
            decode.decode_item(it, index_fn)
        plain = time.perf_counter() - t
        t = time.perf_counter()
        for it in items:
            decode.guarded_decode(it, index_fn, timeout_s=60)
        guarded = time.perf_counter() - t
        t = time.perf_counter()
        for i in range(n):
            data[i]
        full = time.perf_counter() - t
        print(f"{n} videos: decode in-process {plain * 1e3 / n:.2f} ms/video, in the watchdog "
              f"{guarded * 1e3 / n:.2f} ms/video (+{(guarded - plain) * 1e3 / n:.2f} ms); "
              f"VideoDataset[i] {full * 1e3 / n:.2f} ms/video")


if __name__ == "__main__":
    main()
