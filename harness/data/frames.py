"""Videos stored as folders of frame images (mmaction2 ``RawframeDataset`` / ``RawFrameDecode``).

A frame folder is decoded like a video file: the sampler picks 0-based frame indices from the
*listed* frame count, each distinct frame is read once, and every failure raises, so that the test
dataset reports the video as failed (a missing frame file, a truncated or corrupt JPEG, frames of
different sizes, an empty folder...), never filling in another frame or another video.

Decoding follows mmaction2 1.x ``RawFrameDecode``: file ``filename_tmpl.format(index + start_index)``
(``img_{:05d}.jpg``, ``start_index=1``: ``img_00001.jpg`` is frame 0), colour images in RGB order,
grayscale or palette images expanded to three channels (``mmcv.imfrombytes(channel_order='rgb')``
does the same with cv2). Pillow decodes the files; a truncated JPEG is an error here, while cv2
would return the decodable part with a warning.
"""
from __future__ import annotations

import os
import typing as tp

import numpy as np

from harness.data.annotations import FrameFolderItem


class CorruptFrameError(OSError):
    """A frame file exists but cannot be decoded."""


def read_frame(path: str) -> np.ndarray:
    """One frame file as uint8 ``[H, W, 3]`` RGB; raises on a missing, truncated or corrupt file."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()  # decodes now: a truncated file raises OSError here
        if image.mode != "RGB":
            image = image.convert("RGB")
        frame = np.asarray(image, dtype=np.uint8)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"frame {path} decodes to shape {frame.shape}, expected [H, W, 3]")
    return frame


def decode_frame_folder(
    item: FrameFolderItem, index_fn: tp.Optional[tp.Callable[[int], np.ndarray]] = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``decode_frames`` for a frame folder: ``(frames uint8 [U, H, W, 3], unique_inds, wanted)``.

    ``index_fn(num_frames)`` is called with the listed frame count (mmaction2 samples from
    ``total_frames`` of the list, it does not count the files).
    """
    if not os.path.isdir(item.path):
        if os.path.exists(item.path):
            raise NotADirectoryError(f"not a frame folder: {item.path}")
        raise FileNotFoundError(f"no such frame folder: {item.path}")
    num_frames = int(item.num_frames)
    if num_frames <= 0:
        raise ValueError(f"listed with {num_frames} frames: {item.path}")
    wanted = np.arange(num_frames) if index_fn is None else np.asarray(index_fn(num_frames), dtype=np.int64)
    unique_inds = np.unique(wanted)
    frames = []
    for i in unique_inds.tolist():
        path = item.frame_path(i)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"missing frame file {os.path.basename(path)} (frame {i} of the {num_frames} "
                                    f"listed) in {item.path}")
        try:
            frame = read_frame(path)
        except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError...: name the file
            raise CorruptFrameError(f"cannot decode {path}: {type(err).__name__}: {err}") from err
        if frames and frame.shape != frames[0].shape:
            raise ValueError(f"frame sizes differ in {item.path}: {os.path.basename(path)} is "
                             f"{frame.shape[1]}x{frame.shape[0]}, frame {unique_inds[0]} is "
                             f"{frames[0].shape[1]}x{frames[0].shape[0]}")
        frames.append(frame)
    return np.stack(frames), unique_inds, wanted


def frame_file_problem(path: str) -> tp.Optional[str]:
    """A cheap integrity check of one frame file without decoding its pixels: non-empty, JPEG start and
    end markers (a cut file has no end marker), an image header Pillow can read. None when it passes."""
    from PIL import Image

    size = os.path.getsize(path)
    if size == 0:
        return "empty file"
    if path.lower().endswith((".jpg", ".jpeg")):
        with open(path, "rb") as f:
            start = f.read(2)
            f.seek(max(size - 2, 0))
            end = f.read(2)
        if start != b"\xff\xd8":
            return "not a JPEG (no start marker)"
        if end != b"\xff\xd9":
            return "truncated JPEG (no end marker)"
    try:
        with Image.open(path) as image:
            return None if image.size[0] > 0 and image.size[1] > 0 else f"image size {image.size}"
    except Exception as err:  # noqa: BLE001 -- unreadable header
        return f"{type(err).__name__}: {err}"


def probe_frame_folder(item: FrameFolderItem, frames: int = 3) -> tuple[str, str]:
    """``(status, detail)`` as ``check.probe_video``. Every listed frame file must exist and pass
    ``frame_file_problem`` with the same image size as the others (headers only, no decoding), and
    ``frames`` of them spread over the listed count (first, last, some between) must decode."""
    from PIL import Image

    if not os.path.exists(item.path):
        return "missing", "no such frame folder"
    if not os.path.isdir(item.path):
        return "unreadable", "not a folder"
    n = int(item.num_frames)
    if n <= 0:
        return "empty", f"listed with {n} frames"
    try:
        present = set(os.listdir(item.path))
    except OSError as err:
        return "unreadable", f"{type(err).__name__}: {err.strerror or err}"
    if not present:
        return "empty", f"no frame files (listed with {n} frames)"
    absent = [i for i in range(n) if os.path.basename(item.frame_path(i)) not in present]
    if absent:
        shown = ", ".join(os.path.basename(item.frame_path(i)) for i in absent[:3])
        more = f" and {len(absent) - 3} more" if len(absent) > 3 else ""
        return "corrupt", f"{len(absent)} of {n} listed frame files missing: {shown}{more}"
    first_size = None
    for i in range(n):
        path = item.frame_path(i)
        try:
            problem = frame_file_problem(path)
            if problem is None:
                with Image.open(path) as image:
                    size = image.size
                first_size = first_size or size
                if size != first_size:
                    problem = f"frame size {size[0]}x{size[1]} differs from frame 0's {first_size[0]}x{first_size[1]}"
        except OSError as err:
            problem = f"{type(err).__name__}: {err.strerror or err}"
        if problem:
            return "corrupt", f"{os.path.basename(path)}: {problem}"
    wanted = sorted({round(i * (n - 1) / max(frames - 1, 1)) for i in range(frames)})
    try:
        decoded, _, _ = decode_frame_folder(item, lambda _: np.asarray(wanted))
    except Exception as err:  # noqa: BLE001 -- every failure is a finding
        text = str(err).splitlines()[0][:300] if str(err) else ""
        return "corrupt", f"{type(err).__name__}: {text}"
    return "ok", f"{n} frames listed, {decoded.shape[2]}x{decoded.shape[1]}"
