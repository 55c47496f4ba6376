"""Decode the first N videos of a dataset with each decoder backend: are the frames identical, and how
long does one video take? Defaults: the quickstart's val set (synthetic_motion, generated on first use
as the quickstart does) and its test protocol's frame indices.

    python scripts/bench_decoders.py [--videos 200] [--decoders decord,pyav] [--all-frames]
    python scripts/bench_decoders.py --ann-file DIR/val_list.txt --data-root DIR/videos   # K400's 5x3 protocol

(``scripts/make_decode_fixture.py DIR`` writes K400-shaped videos and their list.)

In-process (no watchdog), one thread, the backends alternating per video (A B, B A, ...) so that both
see the same stretch of machine load; prints the load average before and after.
"""
from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    from harness.data.datasets import SyntheticMotionDataset
    from harness.data.decode import decode_frames, decoder_available, decoder_identity
    from harness.data.sampling import sample_test_indices

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--decoders", default="decord,pyav")
    parser.add_argument("--all-frames", action="store_true", help="decode every frame, not the protocol's")
    parser.add_argument("--ann-file", help="an mmaction list instead of the quickstart's val set (K400 protocol)")
    parser.add_argument("--data-root", default="", help="prefix of the listed paths")
    args = parser.parse_args()
    decoders = [d for d in args.decoders.split(",") if d]
    for name in decoders:
        ok, why = decoder_available(name)
        if not ok:
            parser.error(f"decoder {name!r} is unavailable: {why}")
    if args.ann_file:
        from harness.data.real import Kinetics400Dataset

        dataset = Kinetics400Dataset(ann_file=args.ann_file, data_root=args.data_root, num_classes=400)
    else:
        dataset = SyntheticMotionDataset(split="val")
    items = dataset.items()[:args.videos]
    index_fn = None if args.all_frames else functools.partial(
        sample_test_indices, sampler=dataset.sampler, clip_len=dataset.clip_len,
        frame_interval=dataset.frame_interval, num_clips=dataset.num_clips)
    for name in decoders:  # warm-up: imports, first open
        decode_frames(items[0].path, index_fn, name)
    times: dict = {name: [] for name in decoders}
    mismatched = []
    load_before = os.getloadavg()
    for i, item in enumerate(items):
        frames = {}
        for name in (decoders if i % 2 == 0 else decoders[::-1]):
            t0 = time.perf_counter()
            frames[name] = decode_frames(item.path, index_fn, name)
            times[name].append(time.perf_counter() - t0)
        ref = frames[decoders[0]]
        if not all(all(np.array_equal(a, b) for a, b in zip(ref, got)) for got in frames.values()):
            mismatched.append(item.path)
    load_after = os.getloadavg()
    print(f"{len(items)} videos of {args.ann_file or dataset.root or 'synthetic_motion (default root)'}, "
          f"{'all frames' if args.all_frames else 'the test protocol frames'}, {os.cpu_count()} CPUs")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)")
    for name in decoders:
        ms = [1e3 * t for t in times[name]]
        print(f"  {decoder_identity(name):>20}: median {statistics.median(ms):.2f} ms/video, "
              f"mean {statistics.mean(ms):.2f}, total {sum(ms) / 1e3:.2f} s")
    print(f"frames identical on {len(items) - len(mismatched)}/{len(items)} videos"
          + (f"; differ on: {', '.join(mismatched[:5])}" if mismatched else ""))


if __name__ == "__main__":
    main()
