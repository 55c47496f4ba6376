"""Decoding one video (torch-free), its backends, and the guarded call every caller goes through.

``decode_item(item, index_fn)`` decodes in-process; ``guarded_decode(item, index_fn, timeout_s=...,
decoder=...)`` does the same in a watchdog worker (``harness.data.watchdog``), so that evaluation,
fine-tuning and ``data check`` all count a decoder that hangs (``DecodeTimeout``, reason ``timeout``)
or crashes (``DecoderCrash``, reason ``crash``) as one failed video and carry on.

Backends (``decoder:`` of a dataset) are ``fn(path, index_fn) -> (frames, unique_inds, wanted)``
registered with ``register_decoder``; ``decord`` is the default. A test registers a fake one (a
decoder that never returns) the same way.
"""
from __future__ import annotations

import os
import typing as tp

import numpy as np

from harness.data.annotations import FrameFolderItem, VideoItem
from harness.data.containers import truncation

IndexFn = tp.Optional[tp.Callable[[int], np.ndarray]]
Decoded = tp.Tuple[np.ndarray, np.ndarray, np.ndarray]
DEFAULT_DECODER = "decord"
DEFAULT_DECODE_TIMEOUT_S = 60.0


class TruncatedVideoError(OSError):
    """The file is shorter than its container header declares (``harness.data.containers``)."""


class AnnotationError(ValueError):
    """A listed entry that cannot be evaluated (label out of range, duplicate...): ``VideoItem.problem``."""


def check_video_file(path: str) -> None:
    """Raise for a path no decoder should open: missing, not a regular file, unreadable, truncated."""
    if not os.path.isfile(path):
        if os.path.exists(path):
            raise IsADirectoryError(f"not a regular file: {path}")
        raise FileNotFoundError(f"no such video file: {path}")
    with open(path, "rb"):  # a PermissionError names the problem better than decord would
        pass
    cut = truncation(path)  # decord would decode a cut AVI/WebM up to the cut, silently
    if cut:
        raise TruncatedVideoError(f"{cut}: {path}")


def decord_frames(path: str, index_fn: IndexFn = None) -> Decoded:
    """The ``decord`` backend: each distinct wanted frame decoded once."""
    import decord

    vr = decord.VideoReader(path, num_threads=1)
    num_frames = len(vr)
    if num_frames <= 0:
        raise ValueError(f"video has no frames: {path}")
    wanted = np.arange(num_frames) if index_fn is None else np.asarray(index_fn(num_frames), dtype=np.int64)
    unique_inds = np.unique(wanted)
    frames = vr.get_batch(unique_inds.tolist()).asnumpy()
    if frames.shape[0] != len(unique_inds):
        raise RuntimeError(f"decord returned {frames.shape[0]} frames for {len(unique_inds)} indices: {path}")
    return frames, unique_inds, wanted


_DECODERS: tp.Dict[str, tp.Callable[[str, IndexFn], Decoded]] = {"decord": decord_frames}


def register_decoder(name: str, fn: tp.Callable[[str, IndexFn], Decoded]) -> None:
    """Make ``decoder: <name>`` valid; ``fn`` must be a module-level function (it is pickled by name)."""
    _DECODERS[name] = fn


def decoder_names() -> tp.List[str]:
    return sorted(_DECODERS)


def decode_frames(path: str, index_fn: IndexFn = None, decoder: str = DEFAULT_DECODER) -> Decoded:
    """Decode the frames of one video, each distinct frame once.

    ``index_fn(num_frames)`` returns the wanted frame indices (any shape); default: all frames.
    Returns ``(frames, unique_inds, wanted)``: uint8 ``frames[U, H, W, 3]`` hold the sorted distinct
    indices ``unique_inds``; ``wanted`` is ``index_fn``'s array. Raises on a missing, unreadable,
    truncated (shorter than its header says), corrupt or empty video.
    """
    check_video_file(path)
    try:
        backend = _DECODERS[decoder]
    except KeyError:
        raise ValueError(f"unknown decoder {decoder!r}; registered: {', '.join(decoder_names())}") from None
    return backend(path, index_fn)


def decode_item(item: VideoItem, index_fn: IndexFn = None, decoder: str = DEFAULT_DECODER) -> Decoded:
    """``decode_frames`` for any item: a video file or a frame folder (``FrameFolderItem``).

    Raises ``AnnotationError`` for an item whose annotation is unusable (``item.problem``), without
    touching its file.
    """
    if getattr(item, "problem", None):
        raise AnnotationError(item.problem)
    if isinstance(item, FrameFolderItem):
        from harness.data.frames import decode_frame_folder

        return decode_frame_folder(item, index_fn)
    return decode_frames(item.path, index_fn, decoder)


def _decode_recording(item: VideoItem, index_fn: IndexFn, decoder: str) -> tp.Tuple[Decoded, tp.List[int]]:
    """``decode_item`` plus the frame counts ``index_fn`` was called with (runs in the worker)."""
    calls: tp.List[int] = []

    def record(n: int) -> np.ndarray:
        calls.append(int(n))
        return index_fn(n) if index_fn is not None else np.arange(n)

    return decode_item(item, record, decoder), calls


def guarded_decode(item: VideoItem, index_fn: IndexFn = None, *, timeout_s: float = DEFAULT_DECODE_TIMEOUT_S,
                   decoder: str = DEFAULT_DECODER) -> Decoded:
    """``decode_item`` in this thread's watchdog worker: ``DecodeTimeout`` after ``timeout_s``.

    ``index_fn`` must pickle (``functools.partial`` of a module-level function). It runs on a copy in
    the worker and then once more here with the same frame count, so that a stateful one (a training
    sampler drawing from an RNG) advances here exactly as if it had run in-process; the two must
    agree (a check that the copy drew the same indices).
    """
    from harness.data.watchdog import run_with_deadline

    if getattr(item, "problem", None):  # nothing to decode
        raise AnnotationError(item.problem)
    (frames, unique_inds, wanted), calls = run_with_deadline(_decode_recording, item, index_fn, decoder,
                                                             timeout=timeout_s)
    if index_fn is not None:
        for n in calls:
            here = np.asarray(index_fn(n), dtype=np.int64)
        if calls and not np.array_equal(here, wanted):
            raise RuntimeError("the frame sampler drew different indices in the decode worker")
    return frames, unique_inds, wanted


def failure_reason(err: BaseException) -> str:
    """``timeout``, ``crash``, ``invalid`` (the annotation entry) or ``error`` (anything else)."""
    if isinstance(err, AnnotationError):
        return "invalid"
    return getattr(err, "reason", "error")
