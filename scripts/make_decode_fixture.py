"""Write a decode-heavy fixture shaped like Kinetics-400 short-side-256 copies: N videos of ~10 s at
456x256, 30 fps, H.264 (PyAV), moving noise over a gradient (so the encoder cannot make decoding trivial),
plus an mmaction2 ``path label`` list. Used by ``suites/bench_shared_decode.yaml``.

    python scripts/make_decode_fixture.py OUT_DIR [--videos 24] [--seconds 10]
"""
from __future__ import annotations

import argparse
import os

import numpy as np


def write_video(path: str, seconds: float, seed: int, width: int = 456, height: int = 256, fps: int = 30) -> None:
    import av

    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, width, dtype=np.float32)[None, :, None] * np.ones((height, 1, 3), np.float32)
    with av.open(path, mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23"}
        blob = rng.integers(0, 255, (64, 64, 3)).astype(np.float32)
        for t in range(int(seconds * fps)):
            frame = base.copy()
            x = int((width - 64) * (0.5 + 0.5 * np.sin(t / 17 + seed)))
            y = int((height - 64) * (0.5 + 0.5 * np.cos(t / 23 + seed)))
            frame[y:y + 64, x:x + 64] = blob
            frame += rng.normal(0, 12, frame.shape).astype(np.float32)
            img = av.VideoFrame.from_ndarray(np.clip(frame, 0, 255).astype(np.uint8), format="rgb24")
            for packet in stream.encode(img):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    os.makedirs(os.path.join(args.out, "videos"), exist_ok=True)
    lines = []
    for i in range(args.videos):
        name = f"video_{i:03d}.mp4"
        path = os.path.join(args.out, "videos", name)
        if not os.path.exists(path):
            write_video(path, args.seconds, seed=i)
        lines.append(f"{name} {i % 4}")
    with open(os.path.join(args.out, "val_list.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.videos} videos and val_list.txt under {args.out}")


if __name__ == "__main__":
    main()
