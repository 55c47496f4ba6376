"""Decoding one video (torch-free), its backends, and the guarded call every caller goes through.

``decode_item(item, index_fn)`` decodes in-process; ``guarded_decode(item, index_fn, timeout_s=...,
decoder=...)`` does the same in a watchdog worker (``harness.data.watchdog``), so that evaluation,
fine-tuning and ``data check`` all count a decoder that hangs (``DecodeTimeout``, reason ``timeout``)
or crashes (``DecoderCrash``, reason ``crash``) as one failed video and carry on.

Backends (``decoder:`` of a dataset) are ``fn(path, index_fn) -> (frames, unique_inds, wanted)``
registered with ``register_decoder``: ``decord`` (the default; the PyPI ``decord`` or its fork
``decord2``), ``pyav`` and ``torchcodec`` (an optional extra that needs a CUDA build of torch).
All three number frames by index in presentation order. ``decoder_available`` says whether one can
run here and why not; ``decoder_identity`` names the distribution and version that decodes (records
keep it in their provenance and cell keys). A test registers a fake one (a decoder that never
returns) the same way.
"""
from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import threading
import typing as tp

import numpy as np

from harness.data.annotations import FrameFolderItem, VideoItem
from harness.data.containers import truncation
from harness.registry import Registry, unknown_name_message

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


def _wanted(path: str, num_frames: int, index_fn: IndexFn) -> tp.Tuple[np.ndarray, np.ndarray]:
    """``(wanted, unique_inds)`` for a video of ``num_frames``; raises for an index outside it."""
    if num_frames <= 0:
        raise ValueError(f"video has no frames: {path}")
    wanted = np.arange(num_frames) if index_fn is None else np.asarray(index_fn(num_frames), dtype=np.int64)
    unique_inds = np.unique(wanted)
    if unique_inds.size and (unique_inds[0] < 0 or unique_inds[-1] >= num_frames):
        raise IndexError(f"frame indices {unique_inds[0]}..{unique_inds[-1]} outside the {num_frames} frames "
                         f"of {path}")
    return wanted, unique_inds


def _fewer_frames(path: str, declared: int, held: int) -> ValueError:
    return ValueError(f"{path}: the container declares {declared} frames but holds only {held}")


def decord_frames(path: str, index_fn: IndexFn = None) -> Decoded:
    """The ``decord`` backend (the default; the PyPI ``decord`` or its fork ``decord2``): each distinct
    wanted frame decoded once, by index (``len(VideoReader)``: the container's declared frame count)."""
    import decord

    vr = decord.VideoReader(path, num_threads=1)
    wanted, unique_inds = _wanted(path, len(vr), index_fn)
    frames = vr.get_batch(unique_inds.tolist()).asnumpy()
    if frames.shape[0] != len(unique_inds):
        raise RuntimeError(f"decord returned {frames.shape[0]} frames for {len(unique_inds)} indices: {path}")
    return frames, unique_inds, wanted


def _open_av(path: str):
    import av

    container = av.open(path)
    if not container.streams.video:
        container.close()
        raise ValueError(f"no video stream: {path}")
    demuxer = container.format.name
    if demuxer.endswith("_pipe") or demuxer == "image2":  # a still image renamed .mp4 (decord refuses it too)
        container.close()
        raise ValueError(f"{path}: an image ({demuxer}), not a video")
    stream = container.streams.video[0]
    stream.codec_context.thread_type = "NONE"  # one thread: the same frames on every machine
    stream.codec_context.thread_count = 1
    return container, stream


_AV_LOCAL = threading.local()


def _thread_reformatter():
    """This thread's PyAV reformatter: it keeps its colour-conversion context from video to video (a
    new one per video costs more than decoding a 64x64 clip). Not inherited by a forked watchdog worker."""
    if getattr(_AV_LOCAL, "pid", None) != os.getpid():
        from av.video.reformatter import VideoReformatter

        _AV_LOCAL.reformatter, _AV_LOCAL.pid = VideoReformatter(), os.getpid()
    return _AV_LOCAL.reformatter


def pyav_frames(path: str, index_fn: IndexFn = None) -> Decoded:
    """The ``pyav`` backend: frames by index, as decord numbers them. The frame count is the stream's
    declared one (decord's), else counted by decoding; frames are decoded in order up to the last
    wanted one and only the wanted ones are converted to RGB, all on one thread (swscale's default
    thread pool would not survive the watchdog's fork). A container that declares more frames
    than it holds raises (decord may loop forever on one: dmlc/decord#373)."""
    reformatter = _thread_reformatter()
    container, stream = _open_av(path)
    try:
        declared = stream.frames
        if declared <= 0:  # MKV/WebM declare none
            declared = sum(1 for _ in container.decode(stream))
            container.close()
            container, stream = _open_av(path)
        wanted, unique_inds = _wanted(path, declared, index_fn)
        out: tp.List[np.ndarray] = []
        held = 0
        if unique_inds.size:
            for held, frame in enumerate(container.decode(stream), start=1):
                if held - 1 == unique_inds[len(out)]:
                    out.append(reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray())
                    if len(out) == len(unique_inds):
                        break
        size = (stream.height, stream.width)
    finally:
        container.close()
    if len(out) < len(unique_inds):
        raise _fewer_frames(path, declared, held)
    return (np.stack(out) if out else np.zeros((0, *size, 3), np.uint8)), unique_inds, wanted


def torchcodec_frames(path: str, index_fn: IndexFn = None) -> Decoded:
    """The ``torchcodec`` backend (exact seek mode: frames by index after a scan of the file). The
    frame count is the header's, as decord's, else the scanned one; asking for a frame past the
    scanned ones raises, as ``pyav`` does."""
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(path, seek_mode="exact", num_ffmpeg_threads=1, dimension_order="NHWC", device="cpu")
    meta = decoder.metadata
    held = int(meta.num_frames_from_content or 0)
    declared = int(meta.num_frames_from_header or 0) or held
    wanted, unique_inds = _wanted(path, declared, index_fn)
    if unique_inds.size and unique_inds[-1] >= held:
        raise _fewer_frames(path, declared, held)
    frames = decoder.get_frames_at(unique_inds.tolist()).data.numpy()
    return frames, unique_inds, wanted


_DECODERS: Registry = Registry("decoder")
_TORCHCODEC_INSTALL = ("it needs a CUDA build of torch (its wheel loads libc10_cuda.so): "
                       "pip install -e '.[torchcodec]' on a GPU node")


def register_decoder(name: str, fn: tp.Callable[[str, IndexFn], Decoded], *, module: tp.Optional[str] = None,
                     install: str = "") -> None:
    """Make ``decoder: <name>`` valid; ``fn`` must be a module-level function (it is pickled by name).

    ``module``: the Python module it imports (what makes it available, and whose distribution and
    version ``decoder_identity`` reports); ``install``: how to get it, for the unavailable message.
    """
    _DECODERS.add(name, fn, module=module, install=install)


register_decoder("decord", decord_frames, module="decord", install="pip install decord (or its fork decord2)")
register_decoder("pyav", pyav_frames, module="av", install="pip install av")
register_decoder("torchcodec", torchcodec_frames, module="torchcodec", install=_TORCHCODEC_INSTALL)


def decoder_names() -> tp.List[str]:
    return sorted(_DECODERS.names())


def decoder_backend(name: str) -> tp.Callable[[str, IndexFn], Decoded]:
    """The registered function of ``decoder: <name>`` (``UnknownNameError`` with close matches)."""
    return _DECODERS.get(name)


@functools.lru_cache(maxsize=None)
@functools.lru_cache(maxsize=None)
def _import_problem(module: str, in_process: bool) -> tp.Optional[str]:
    """Why ``module`` cannot be imported, or None. Outside the decode workers (``in_process`` False) the
    import is tried in a child process: decord bundles its own FFmpeg and libvpx, and once loaded next to
    PyAV's they clash (libvpx "ABI version mismatch": PyAV can then no longer open VP9), so a decoder is
    only ever loaded where it decodes."""
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed"
    if in_process:
        try:
            importlib.import_module(module)
        except Exception as err:  # noqa: BLE001 -- torchcodec on a CPU torch raises OSError/RuntimeError
            first = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
            return f"{module} cannot be imported: {type(err).__name__}: {first}"
        return None
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    try:
        proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True,
                              timeout=120, env=env)
    except subprocess.TimeoutExpired:
        return f"{module} cannot be imported: importing it took over 120 s"
    if proc.returncode == 0:
        return None
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    return f"{module} cannot be imported: {lines[-1][:300] if lines else f'exit status {proc.returncode}'}"


def decoder_available(name: str, in_process: bool = False) -> tp.Tuple[bool, str]:
    """``(True, "")`` when ``decoder: <name>`` can decode in this environment, else ``(False, why)``:
    unknown, not installed, or failing to import (the reason says how to install it). ``in_process``:
    import it here (decode workers only; elsewhere the import is tried in a child process)."""
    if name not in _DECODERS:
        return False, unknown_name_message("decoder", name, decoder_names())
    meta = _DECODERS.meta(name)
    problem = _import_problem(meta["module"], in_process) if meta.get("module") else None
    if problem is None:
        return True, ""
    return False, f"{problem}; {meta['install']}" if meta.get("install") else problem


@functools.lru_cache(maxsize=None)
def distributions_of(module: str) -> tp.Tuple[tp.Tuple[str, str], ...]:
    """``((distribution, version), ...)`` of the installed distributions that provide ``module``, from
    their metadata (nothing is imported). Cached: reading every distribution's metadata takes ~60 ms."""
    out = []
    for dist in sorted(set(importlib.metadata.packages_distributions().get(module, []))):
        try:
            out.append((dist, importlib.metadata.version(dist)))
        except importlib.metadata.PackageNotFoundError:
            out.append((dist, "?"))
    return tuple(out)


def decoder_identity(name: str) -> str:
    """Which code decodes for ``decoder: <name>``: the distribution that provides its module and its
    version: ``"decord 0.6.0"``, ``"decord2 3.4.0"`` (the fork installs the same ``decord`` module),
    ``"pyav 18.1.0"``, ``"torchcodec 0.7.0"``; the name alone for a backend without a module;
    ``"<name> (not installed)"``."""
    module = _DECODERS.meta(name).get("module") if name in _DECODERS else None
    if not module:
        return name
    dists = distributions_of(module)
    if not dists:
        return f"{name} (not installed)"
    # two distributions writing one module: both named
    return " + ".join(f"{name if dist == module else dist} {version}" for dist, version in dists)


def decoder_provenance(dataset: tp.Mapping[str, tp.Any]) -> dict:
    """``{"decoder": decoder_identity(...)}`` for a dataset config with a ``decoder``, else ``{}``."""
    return {"decoder": decoder_identity(dataset["decoder"])} if dataset.get("decoder") else {}


def decode_frames(path: str, index_fn: IndexFn = None, decoder: str = DEFAULT_DECODER) -> Decoded:
    """Decode the frames of one video, each distinct frame once.

    ``index_fn(num_frames)`` returns the wanted frame indices (any shape); default: all frames.
    Returns ``(frames, unique_inds, wanted)``: uint8 ``frames[U, H, W, 3]`` hold the sorted distinct
    indices ``unique_inds``; ``wanted`` is ``index_fn``'s array. Raises on a missing, unreadable,
    truncated (shorter than its header says), corrupt or empty video.
    """
    check_video_file(path)
    ok, why = decoder_available(decoder, in_process=True)
    if not ok:
        raise RuntimeError(f"decoder {decoder!r} is unavailable: {why}")
    return decoder_backend(decoder)(path, index_fn)


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


def spread_indices(num_frames: int, frames: int = 3) -> np.ndarray:
    """``frames`` indices spread over a video (the first, the last, some between): the probe frames."""
    return np.asarray(sorted({round(i * (num_frames - 1) / max(frames - 1, 1)) for i in range(frames)}))


_REFERENCE_WORKERS = threading.local()


def decoder_disagreement(path: str, decoder: str, *, frames: int = 3, tolerance: int = 1,
                         timeout_s: float = DEFAULT_DECODE_TIMEOUT_S) -> tp.Optional[str]:
    """One line when ``decoder`` returns other pixels than decord for the same probe frames (more than
    ``tolerance`` levels apart, a different frame count or size), else None; None too when ``decoder``
    is decord, decord cannot run here or cannot decode the file (nothing to compare with). The protocol goldens were decoded with decord
    (docs/reference.md), so another decoder is only as faithful as its agreement with it.

    Each decoder decodes in its own watchdog worker: loaded in one process, decord's bundled libraries
    can break PyAV's (see ``_import_problem``).
    """
    from harness.data.watchdog import DecodeWorker, run_with_deadline

    if decoder == DEFAULT_DECODER or not decoder_available(DEFAULT_DECODER)[0]:
        return None
    index_fn = functools.partial(spread_indices, frames=frames)
    mine, mine_inds, _ = run_with_deadline(decode_frames, path, index_fn, decoder, timeout=timeout_s)
    worker = getattr(_REFERENCE_WORKERS, "worker", None)
    if worker is None:
        worker = _REFERENCE_WORKERS.worker = DecodeWorker()
    try:
        ref, ref_inds, _ = worker.call(decode_frames, path, index_fn, DEFAULT_DECODER, timeout=timeout_s)
    except Exception:  # noqa: BLE001 -- decord failing (or hanging) on a file the chosen decoder reads
        return None
    if not np.array_equal(mine_inds, ref_inds):
        return f"{decoder} sees other frames than decord (probe frames {mine_inds.tolist()} vs {ref_inds.tolist()})"
    if mine.shape != ref.shape:
        return f"{decoder} decodes {mine.shape[2]}x{mine.shape[1]} frames, decord {ref.shape[2]}x{ref.shape[1]}"
    diff = np.abs(mine.astype(np.int16) - ref.astype(np.int16)).reshape(len(ref_inds), -1)
    worst = diff.max(axis=1)
    if worst.max() <= tolerance:
        return None
    k = int(worst.argmax())
    return (f"{decoder} returns other pixels than decord for frame {int(ref_inds[k])}: max |diff| {int(worst[k])} "
            f"levels, {float((diff[k] > tolerance).mean()):.2%} of values over {tolerance}")
