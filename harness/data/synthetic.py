"""Synthetic motion dataset written as real H.264 .mp4 files (numpy rendering, PyAV encoding).

Each clip shows one small object (disc, square or triangle; 3-6% of the frame at its base size) on a
smooth, low-contrast, static textured background, so most tokens are redundant and token reduction
has something to remove. The label is the object's motion (``CLASSES``). Four pairs are time
reversals of each other (right/left, up/down, cw/ccw, grow/shrink): a model must use frame order.
Shape, colour, texture, size, start position, speed, phase and pixel noise are drawn independently
of the class.

Determinism: clip ``i`` of split ``s`` is rendered from ``np.random.default_rng([seed, s, i, 1])``
and encoded by libx264 with fixed options and one thread, so regeneration with the same library
versions is byte-identical (``manifest.json`` records each file's sha256 and the library versions).
Labels are a seeded permutation of ``arange(n) % 12``: classes are balanced when ``n % 12 == 0``.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
import typing as tp
from pathlib import Path

import numpy as np

GENERATOR_VERSION = "synthetic_motion-v2"
CLASSES: tuple[str, ...] = (
    "move_right",
    "move_left",
    "move_up",
    "move_down",
    "circle_cw",
    "circle_ccw",
    "grow",
    "shrink",
    "blink",
    "bounce_horizontal",
    "bounce_vertical",
    "static",
)
SPLITS: tuple[str, ...] = ("train", "val")
FPS = 8
# libx264 settings are part of the data definition: changing them changes every file.
# mbtree=0: with macroblock-tree rate control, x264 (core 165, PyAV 18 wheel) produced different bytes
# for the same frames in about 1 clip in 20, even with threads=1 (not with asm=0, so likely an asm
# path reading uninitialised padding); without mbtree, 200+ repeated encodes were identical.
X264_OPTIONS = {"preset": "fast", "crf": "22", "threads": "1", "mbtree": "0"}

_SHAPES = ("disc", "square", "triangle")
_TEXTURES = ("flat", "stripes", "checker")


# ----------------------------------------------------------------------------- rendering


def _object_params(rng: np.random.Generator, size: int, bg_mean: np.ndarray) -> dict:
    """Class-independent appearance of the object."""
    shape = _SHAPES[rng.integers(len(_SHAPES))]
    area = rng.uniform(0.03, 0.06) * size * size
    if shape == "disc":
        inner = math.sqrt(area / math.pi)
        outer = inner
    elif shape == "square":
        inner = math.sqrt(area / 4.0)  # inradius a: area 4 a^2
        outer = inner * math.sqrt(2.0)
    else:
        inner = math.sqrt(area / (3.0 * math.sqrt(3.0)))  # equilateral, inradius a: area 3 sqrt(3) a^2
        outer = 2.0 * inner
    for _ in range(100):  # a colour that stands out from the background
        colour = rng.uniform(20, 235, size=3)
        if np.linalg.norm(colour - bg_mean) > 80:
            break
    return {
        "shape": shape,
        "inner": inner,
        "outer": outer,
        "rotation": rng.uniform(0, 2 * math.pi),
        "colour": colour.astype(np.float32),
        "texture": _TEXTURES[rng.integers(len(_TEXTURES))],
        "texture_period": rng.uniform(0.5, 1.0) * inner,
        "texture_contrast": rng.uniform(0.15, 0.35),
    }


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth low-contrast texture: a tinted grey plus three low-frequency plane waves, float32 [H,W,3]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = rng.uniform(70, 180) + rng.uniform(-12, 12, size=3)
    tex = np.zeros((size, size), np.float32)
    for _ in range(3):
        fx, fy = rng.uniform(-3, 3, size=2)
        tex += rng.uniform(2, 5) * np.sin(2 * np.pi * (fx * xx + fy * yy) + rng.uniform(0, 2 * np.pi))
    gain = rng.uniform(0.8, 1.2, size=3)
    return (base[None, None, :] + tex[:, :, None] * gain[None, None, :]).astype(np.float32)


def _tri(u: np.ndarray) -> np.ndarray:
    """Triangle wave in [-1, 1] with period 1 (constant speed, instantaneous turn: a bounce)."""
    return 4.0 * np.abs(u - np.floor(u + 0.5)) - 1.0


def _trajectory(label: int, rng: np.random.Generator, size: int, num_frames: int, outer: float) -> dict:
    """Per-frame centre x, y (pixels), linear scale and visibility for the class ``label``.

    Every class draws its speed / phase from class-independent ranges; positions keep the whole
    object (at its largest scale) inside the frame.
    """
    name = CLASSES[label]
    t = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
    scale = np.ones(num_frames)
    visible = np.ones(num_frames, dtype=bool)
    if name in ("grow", "shrink"):
        ratio = rng.uniform(1.6, 2.2)  # end / start linear size
        expo = (t - 0.5) if name == "grow" else (0.5 - t)
        scale = ratio**expo
    margin = outer * scale.max() + 1.0
    lo, hi = margin, size - margin

    def uniform_pos(extent: float = 0.0) -> float:
        return rng.uniform(lo + extent, max(hi - extent, lo + extent))

    cx, cy = np.full(num_frames, uniform_pos()), np.full(num_frames, uniform_pos())
    if name.startswith("move_"):
        dist = rng.uniform(0.4, 0.6) * size
        start = rng.uniform(lo, max(hi - dist, lo))
        forward = start + dist * t
        backward = start + dist * (1.0 - t)
        if name == "move_right":
            cx = forward
        elif name == "move_left":
            cx = backward
        elif name == "move_down":  # image rows grow downwards
            cy = forward
        else:
            cy = backward
    elif name.startswith("circle_"):
        radius = rng.uniform(0.18, 0.26) * size
        cx0, cy0 = uniform_pos(radius), uniform_pos(radius)
        turns = rng.uniform(0.5, 0.9)
        sign = 1.0 if name == "circle_cw" else -1.0  # +angle is clockwise on screen (y down)
        angle = rng.uniform(0, 2 * math.pi) + sign * 2 * math.pi * turns * t
        cx, cy = cx0 + radius * np.cos(angle), cy0 + radius * np.sin(angle)
    elif name.startswith("bounce_"):
        amp = rng.uniform(0.2, 0.3) * size
        centre = uniform_pos(amp)
        wave = centre + amp * _tri(rng.uniform(1.0, 2.0) * t + rng.uniform(0, 1))
        if name == "bounce_horizontal":
            cx = wave
        else:
            cy = wave
    elif name == "blink":
        period = int(rng.integers(4, 9))
        offset = int(rng.integers(period))
        visible = ((np.arange(num_frames) + offset) % period) < period // 2
    return {"cx": cx, "cy": cy, "scale": scale, "visible": visible}


def render_clip(label: int, rng: np.random.Generator, size: int = 64, num_frames: int = 16) -> np.ndarray:
    """Render one clip of class ``label``: uint8 ``[num_frames, size, size, 3]`` RGB."""
    bg = _background(rng, size)
    obj = _object_params(rng, size, bg.reshape(-1, 3).mean(0))
    traj = _trajectory(label, rng, size, num_frames, obj["outer"])
    noise_sigma = rng.uniform(0.0, 3.0)

    coords = np.arange(size, dtype=np.float32) + 0.5
    # object-frame coordinates [F, H, W], in units of the (scaled) size
    s = traj["scale"].astype(np.float32)[:, None, None]
    dx = (coords[None, None, :] - traj["cx"].astype(np.float32)[:, None, None]) / s
    dy = (coords[None, :, None] - traj["cy"].astype(np.float32)[:, None, None]) / s
    rot = obj["rotation"]
    u = dx * math.cos(rot) + dy * math.sin(rot)
    v = -dx * math.sin(rot) + dy * math.cos(rot)
    if obj["shape"] == "disc":
        sd = obj["inner"] - np.sqrt(u * u + v * v)
    else:
        sides = 4 if obj["shape"] == "square" else 3
        proj = [u * math.cos(2 * math.pi * k / sides) + v * math.sin(2 * math.pi * k / sides) for k in range(sides)]
        sd = obj["inner"] - np.maximum.reduce(proj)
    alpha = np.clip(sd * s + 0.5, 0.0, 1.0)  # sd*s: signed distance in pixels, 1-pixel soft edge
    alpha *= traj["visible"][:, None, None]

    period, contrast = obj["texture_period"], obj["texture_contrast"]
    if obj["texture"] == "stripes":
        shade = 1.0 + contrast * np.sign(np.sin(np.pi * u / period))
    elif obj["texture"] == "checker":
        shade = 1.0 + contrast * np.sign(np.sin(np.pi * u / period) * np.sin(np.pi * v / period))
    else:
        shade = np.ones_like(u)
    frames = shade[..., None] * obj["colour"]  # foreground, then blended in place: bg + alpha * (fg - bg)
    frames -= bg
    frames *= alpha[..., None]
    frames += bg
    frames += noise_sigma * rng.standard_normal((num_frames, size, size, 1), dtype=np.float32)
    frames += 0.5
    return np.clip(frames, 0, 255, out=frames).astype(np.uint8)


def clip_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator that renders clip ``index`` of ``split``."""
    return np.random.default_rng([seed, SPLITS.index(split), index, 1])


def split_labels(seed: int, split: str, n: int) -> np.ndarray:
    """Balanced labels for a split: a seeded permutation of ``arange(n) % len(CLASSES)``."""
    return np.random.default_rng([seed, SPLITS.index(split)]).permutation(np.arange(n) % len(CLASSES))


# ----------------------------------------------------------------------------- encoding


def encode_mp4(path: tp.Union[str, Path], frames: np.ndarray, fps: int = FPS) -> None:
    """Write uint8 RGB ``[T, H, W, 3]`` as H.264 (libx264, yuv420p, one thread, fixed options)."""
    import av

    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        stream.options = dict(X264_OPTIONS)
        for pts, frame in enumerate(frames):
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            video_frame.pts = pts
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


# ----------------------------------------------------------------------------- dataset on disk


def generation_params(*, num_train: int, num_val: int, seed: int, size: int, num_frames: int) -> dict:
    """Everything that determines the generated files (what ``manifest.json`` must match)."""
    return {
        "num_train": int(num_train),
        "num_val": int(num_val),
        "seed": int(seed),
        "size": int(size),
        "num_frames": int(num_frames),
        "fps": FPS,
        "classes": list(CLASSES),
        "x264_options": dict(X264_OPTIONS),
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_complete(root: tp.Union[str, Path], params: dict) -> bool:
    """True when ``root`` holds a manifest for ``params`` and every listed file with its size."""
    root = Path(root)
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("generator_version") != GENERATOR_VERSION or manifest.get("params") != params:
        return False
    try:
        return all((root / rel).stat().st_size == entry["bytes"] for rel, entry in manifest["files"].items())
    except (OSError, KeyError, TypeError):
        return False


def _write_dataset(out: Path, params: dict, progress: bool) -> dict:
    from tqdm import tqdm

    import av

    files: dict[str, dict] = {}
    started = time.perf_counter()
    total = params["num_train"] + params["num_val"]
    with tqdm(total=total, desc="synthetic_motion", unit="clip", disable=not progress) as bar:
        for split in SPLITS:
            n = params[f"num_{split}"]
            (out / "videos" / split).mkdir(parents=True, exist_ok=True)
            lines = []
            for i, label in enumerate(split_labels(params["seed"], split, n)):
                rel = f"videos/{split}/{i:05d}.mp4"
                frames = render_clip(int(label), clip_rng(params["seed"], split, i), params["size"], params["num_frames"])
                encode_mp4(out / rel, frames, params["fps"])
                lines.append(f"{rel} {int(label)}\n")
                bar.update(1)
            (out / f"{split}.txt").write_text("".join(lines))
    (out / "classes.txt").write_text("".join(c + "\n" for c in CLASSES))
    seconds = time.perf_counter() - started
    for path in sorted(out.rglob("*")):
        if path.is_file():
            files[path.relative_to(out).as_posix()] = {"sha256": _sha256(path), "bytes": path.stat().st_size}
    return {
        "generator_version": GENERATOR_VERSION,
        "params": params,
        "files": files,
        # informational: byte-identity holds only for the same library versions
        "libraries": {"av": av.__version__, "numpy": np.__version__},
        "generation_s": round(seconds, 3),
    }


@contextlib.contextmanager
def _lock(path: Path):
    from filelock import FileLock

    with FileLock(str(path)):
        yield


def generate(
    root: tp.Union[str, Path],
    *,
    num_train: int = 4000,
    num_val: int = 600,
    seed: int = 0,
    size: int = 64,
    num_frames: int = 16,
    progress: bool = True,
) -> Path:
    """Write the dataset under ``root`` (idempotent, safe to call from concurrent processes).

    Layout: ``videos/{train,val}/{idx:05d}.mp4``, ``train.txt`` and ``val.txt`` (mmaction2 lists,
    e.g. ``videos/val/00000.mp4 3``), ``classes.txt`` and ``manifest.json`` (generator version,
    parameters, sha256 and size of every file). Returns ``root`` at once when its manifest matches
    the parameters and the files are there; otherwise the data are written to a temporary sibling
    directory under a lock file and renamed into place, replacing an older generated ``root``.
    A non-empty ``root`` without a manifest is never touched (``FileExistsError``).
    """
    root = Path(root).absolute()
    params = generation_params(num_train=num_train, num_val=num_val, seed=seed, size=size, num_frames=num_frames)
    if is_complete(root, params):
        return root
    if min(num_train, num_val) < 0 or size < 16 or num_frames < 1:
        raise ValueError(f"invalid synthetic parameters: {params}")
    root.parent.mkdir(parents=True, exist_ok=True)
    with _lock(root.with_name(root.name + ".lock")):
        if is_complete(root, params):  # another process finished while we waited
            return root
        if root.exists() and any(root.iterdir()) and not (root / "manifest.json").exists():
            raise FileExistsError(f"{root} is not empty and has no manifest.json: refusing to overwrite it")
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
        try:
            manifest = _write_dataset(tmp, params, progress)
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
            if root.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
                os.replace(root, old / "data")
                os.replace(tmp, root)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return root
