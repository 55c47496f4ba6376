"""Test helpers: videos in several containers and codecs (PyAV), damaged copies, frame folders, and
small datasets + checkpoints in the real suites' official layouts.

Every good video encodes its identity in its pixels: frame ``f`` of video ``vid`` has grey level
``level(vid, f)``, so a test can tell which video (and which frames) a view came from.
"""
from __future__ import annotations

import fractions
import json
import os
import struct
import typing as tp

import numpy as np

CODECS = {".mp4": "libx264", ".avi": "mpeg4", ".webm": "libvpx-vp9", ".mkv": "mpeg4"}


def level(vid: int, f: int) -> int:
    """Grey level of frame ``f`` of video ``vid`` (distinct per video, rising with the frame)."""
    return 16 + (37 * vid + 3 * f) % 220


def frames_of(vid: int, num_frames: int, h: int = 48, w: int = 64, gray: bool = False) -> np.ndarray:
    """uint8 ``[T, H, W, 3]`` (``[T, H, W]`` if gray) with a flat grey level per frame."""
    out = np.stack([np.full((h, w), level(vid, f), np.uint8) for f in range(num_frames)])
    return out if gray else np.repeat(out[..., None], 3, axis=-1)


def write_video(path: str, frames: np.ndarray, *, fps: int = 25, codec: tp.Optional[str] = None,
                pix_fmt: str = "yuv420p", vfr: bool = False) -> str:
    """Encode ``frames`` with PyAV; codec from the extension (mp4 H.264, avi MPEG-4, webm VP9, mkv MPEG-4).

    ``frames[T, H, W]`` (2-D frames) are written as grayscale with ``pix_fmt='gray'``. ``vfr``: frame
    durations cycle through 10, 80 and 33 ms (variable frame rate).
    """
    import av

    codec = codec or CODECS[os.path.splitext(path)[1]]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    h, w = frames.shape[1:3]
    with av.open(path, "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        if codec == "libvpx-vp9":
            stream.options = {"deadline": "realtime", "cpu-used": "8"}
        if vfr:
            stream.codec_context.time_base = stream.time_base = fractions.Fraction(1, 1000)
        t = 0
        for i, frame in enumerate(frames):
            fmt = "gray" if frame.ndim == 2 else "rgb24"
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format=fmt)
            if vfr:
                vf.pts, vf.time_base = t, fractions.Fraction(1, 1000)
                t += (10, 80, 33)[i % 3]
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_audio_only(path: str) -> str:
    """A valid container holding one audio stream and no video (mp4: AAC, webm: Opus, avi: PCM)."""
    import av

    codec = {".mp4": "aac", ".webm": "libopus", ".avi": "pcm_s16le"}[os.path.splitext(path)[1]]
    fmt = "s16" if codec == "pcm_s16le" else "fltp"
    dtype = np.int16 if codec == "pcm_s16le" else np.float32
    with av.open(path, "w") as container:
        stream = container.add_stream(codec, rate=48000 if codec == "libopus" else 16000)
        stream.layout = "mono"
        for i in range(5):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 960), dtype), format=fmt, layout="mono")
            frame.sample_rate, frame.pts = stream.rate, i * 960
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_streamless_mp4(path: str) -> str:
    """A structurally valid MP4 (``ftyp`` + ``moov`` with only ``mvhd``) that holds no stream at all."""

    def box(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", 8 + len(payload)) + kind + payload

    mvhd = box(b"mvhd", bytes(4) + struct.pack(">IIII", 0, 0, 1000, 0) + struct.pack(">IH", 0x00010000, 0x0100)
               + bytes(10) + struct.pack(">9I", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)
               + bytes(24) + struct.pack(">I", 1))
    with open(path, "wb") as f:
        f.write(box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomiso2mp41") + box(b"moov", mvhd))
    return path


def truncated_copy(src: str, dst: str, fraction: float = 0.5) -> str:
    blob = open(src, "rb").read()
    open(dst, "wb").write(blob[: int(len(blob) * fraction)])
    return dst


def header_garbage_copy(src: str, dst: str, seed: int = 0) -> str:
    """Same size, the first 256 bytes (the container header) overwritten with random bytes."""
    blob = bytearray(open(src, "rb").read())
    blob[:256] = np.random.default_rng(seed).bytes(256)
    open(dst, "wb").write(bytes(blob))
    return dst


# ---- frame folders (mmaction2 rawframes) -----------------------------------------------------------

def write_frame_folder(folder: str, vid: int, num_frames: int, h: int = 48, w: int = 64,
                       tmpl: str = "img_{:05d}.jpg", start_index: int = 1, gray: bool = False) -> str:
    """JPEG frames ``tmpl.format(i + start_index)`` with grey level ``level(vid, i)`` (quality 95)."""
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    for i in range(num_frames):
        value = level(vid, i)
        image = Image.new("L" if gray else "RGB", (w, h), value if gray else (value, value, value))
        image.save(os.path.join(folder, tmpl.format(i + start_index)), quality=95)
    return folder


# ---- the real suites' layouts ------------------------------------------------------------------------

K400_NAMES = [f"k400 class {i:03d}" for i in range(400)]
MINIK_NAMES = [K400_NAMES[i] for i in range(0, 400, 2)]  # 200 of the 400, in K400 order
SSV2_TEMPLATES = ["Approaching [something] with your camera", "Pushing [something] from left to right",
                  "Spinning [something] that quickly stops spinning"]
UCF_CLASSES = ["ApplyEyeMakeup", "Basketball", "HandstandPushups"]


def write_k400(root: str, num_frames: int = 64) -> dict:
    """Official CSV (+ mmaction2 label map of 400 names) over a flat folder of mp4 (H.264) files.

    Video 1 is truncated (damaged copy); the CSV lists 4 videos."""
    rows = [("k400 class 007", "aaa_1", 5, 15), ("k400 class 001", "bbb-2", 0, 10),
            ("k400 class 399", "ccc_3", 120, 130), ("k400 class 007", "ddd_4", 1, 11)]
    lines = ["label,youtube_id,time_start,time_end,split"]
    for i, (name, yid, t0, t1) in enumerate(rows):
        path = os.path.join(root, "val", f"{yid}_{t0:06d}_{t1:06d}.mp4")
        write_video(path, frames_of(i, num_frames))
        lines.append(f"{name},{yid},{t0},{t1},val")
    truncated_copy(os.path.join(root, "val", "bbb-2_000000_000010.mp4"),
                   os.path.join(root, "val", "bbb-2_000000_000010.mp4"), 0.5)
    with open(os.path.join(root, "kinetics_400_val.csv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(root, "label_map_k400.txt"), "w") as f:
        f.write("\n".join(K400_NAMES) + "\n")
    return {"K400_VIDEOS": os.path.join(root, "val"), "K400_VAL_LIST": os.path.join(root, "kinetics_400_val.csv"),
            "K400_LABEL_MAP": os.path.join(root, "label_map_k400.txt")}


def write_ssv2(root: str, num_frames: int = 30) -> dict:
    """The official validation + labels JSON over ``{id}.webm`` (VP9) files (174-class label file)."""
    labels = {t.replace("[", "").replace("]", ""): str(i) for i, t in enumerate(SSV2_TEMPLATES)}
    labels.update({f"Doing something else {i}": str(i) for i in range(len(SSV2_TEMPLATES), 174)})
    val = []
    for i, (vid, template) in enumerate([("74225", SSV2_TEMPLATES[2]), ("116154", SSV2_TEMPLATES[1]),
                                         ("1", SSV2_TEMPLATES[0])]):
        write_video(os.path.join(root, "20bn-something-something-v2", f"{vid}.webm"), frames_of(i, num_frames))
        val.append({"id": vid, "label": template.replace("[something]", "a cup"), "template": template,
                    "placeholders": ["a cup"]})
    os.makedirs(os.path.join(root, "labels"), exist_ok=True)
    with open(os.path.join(root, "labels", "something-something-v2-validation.json"), "w") as f:
        json.dump(val, f, indent=4)
    with open(os.path.join(root, "labels", "something-something-v2-labels.json"), "w") as f:
        json.dump(labels, f, indent=4)
    return {"SSV2_VIDEOS": os.path.join(root, "20bn-something-something-v2"),
            "SSV2_VAL_JSON": os.path.join(root, "labels", "something-something-v2-validation.json"),
            "SSV2_LABELS_JSON": os.path.join(root, "labels", "something-something-v2-labels.json")}


def write_ucf101(root: str, num_frames: int = 64) -> dict:
    """The UCF-101 folder of avi (MPEG-4) files, ``testlist01.txt`` and ``classInd.txt``."""
    tests = ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", "Basketball/v_Basketball_g02_c03.avi",
             "HandstandPushups/v_HandStandPushups_g01_c01.avi"]
    for i, rel in enumerate(tests):
        write_video(os.path.join(root, "UCF-101", rel), frames_of(i, num_frames, h=60, w=80))
    split = os.path.join(root, "ucfTrainTestlist")
    os.makedirs(split, exist_ok=True)
    with open(os.path.join(split, "classInd.txt"), "w") as f:
        f.write("".join(f"{i + 1} {c}\r\n" for i, c in enumerate(UCF_CLASSES)))
    with open(os.path.join(split, "testlist01.txt"), "w") as f:
        f.write("".join(f"{rel}\r\n" for rel in tests))
    return {"UCF101_ROOT": os.path.join(root, "UCF-101"), "UCF101_TESTLIST": os.path.join(split, "testlist01.txt"),
            "UCF101_CLASSIND": os.path.join(split, "classInd.txt")}


def write_minik(root: str, num_frames: int = 40) -> dict:
    """AR-Net lists (folders with spaces) over raw-frame folders ``img_{:05d}.jpg`` from 1; val and train."""
    out = {"MINIK_FRAMES": os.path.join(root, "frames")}
    for split, vids in (("val", [(0, "air drumming", 0), (1, "yoga", 199), (2, "air drumming", 0)]),
                        ("train", [(3, "yoga", 199), (4, "air drumming", 0)])):
        lines = []
        for vid, cls, label in vids:
            rel = f"images/{split}/{cls}/vid{vid:03d}_000000_000010"
            write_frame_folder(os.path.join(root, "frames", rel), vid, num_frames)
            lines.append(f"{rel} {num_frames} {label}")
        path = os.path.join(root, f"mini_{split}_videofolder.txt")
        with open(path, "w") as f:
            f.write("\n".join(lines))  # AR-Net's files end without a newline
        out[f"MINIK_{split.upper()}_LIST"] = path
    with open(os.path.join(root, "minik_classInd.txt"), "w") as f:
        f.write("\n".join(MINIK_NAMES))
    return out


def videomae_checkpoint(path: str, backbone: str, num_classes: int, seed: int = 0, **dims: tp.Any) -> str:
    """Random weights in the official VideoMAE fine-tuned layout: ``{'module': state_dict}``."""
    import torch

    import harness

    torch.manual_seed(seed)
    model = harness.build_model(backbone, num_classes=num_classes, **dims)
    torch.save({"module": model.state_dict()}, path)
    return path


def haltingvt_official_checkpoint(path: str, params: dict, seed: int = 0, **dims: tp.Any) -> str:
    """Random weights in the official HaltingVT (mmengine) layout: ``{'state_dict': {backbone.model.*,
    cls_head.fc_cls.*, cls_head.fc_motion.*}}`` with the per-frame Conv2d patch weight."""
    import torch

    import harness

    torch.manual_seed(seed)
    model = harness.build_model("haltingvt_deit_s8", method="haltingvt", method_args=params, **dims)
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith("head."):
            key = "cls_head.fc_cls." + key[len("head."):]
        elif key.startswith("motion_head."):
            key = "cls_head.fc_motion." + key[len("motion_head."):]
        else:
            if key == "patch_embed.proj.weight":
                value = value.squeeze(2)
            key = "backbone.model." + key
        state[key] = value
    torch.save({"state_dict": state}, path)
    return path


def videoswin_checkpoint(path: str, backbone: str, layout: str, seed: int = 0, **dims: tp.Any) -> str:
    """Random Video Swin weights in a released layout: ``torchvision`` (``features.{2s}.{j}.*`` with ``mlp.0`` /
    ``mlp.3``, ``features.{2s+1}.*`` merging, the ``relative_position_index`` buffers), ``official``
    (``{'state_dict': backbone.layers.{s}.blocks.{j}.*, backbone.layers.{s}.downsample.*, backbone.norm.*,
    cls_head.fc_cls.*}``) or ``mmaction2`` (1.x: the final norm is ``backbone.norm3.*``)."""
    import torch

    import harness

    torch.manual_seed(seed)
    model = harness.build_model(backbone, **dims)
    state = dict(model.state_dict())
    for name, buf in model.named_buffers():
        if name.endswith("relative_position_index"):
            state[name] = buf
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if layout == "torchvision":
            if parts[0] == "stages":
                rest = ".".join(parts[4:]).replace("mlp.fc1.", "mlp.0.").replace("mlp.fc2.", "mlp.3.")
                key = f"features.{2 * int(parts[1])}.{parts[3]}.{rest}"
            elif parts[0] == "merges":
                key = f"features.{2 * int(parts[1]) + 1}.{'.'.join(parts[2:])}"
        else:
            if parts[0] == "stages":
                key = f"backbone.layers.{parts[1]}.blocks.{'.'.join(parts[3:])}"
            elif parts[0] == "merges":
                key = f"backbone.layers.{parts[1]}.downsample.{'.'.join(parts[2:])}"
            elif parts[0] == "head":
                key = "cls_head.fc_cls." + parts[1]
            elif parts[0] == "norm":
                key = ("backbone.norm3." if layout == "mmaction2" else "backbone.norm.") + parts[1]
            else:
                key = "backbone." + key
        out[key] = value
    torch.save(out if layout == "torchvision" else {"state_dict": out}, path)
    return path
