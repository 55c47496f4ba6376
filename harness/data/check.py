"""``harness data check``: find missing, unreadable and corrupt videos of a dataset, changing nothing.

Each video is opened with the dataset's decoder (decord by default; a frame folder: its frame files are read) and a few frames spread
over its length are decoded (the first, the last and some in between), in parallel worker
processes. A video passes when every probe frame decodes; otherwise it is reported with the error,
classified as ``missing`` (no such file or folder, a dangling link), ``unreadable`` (not a regular
file, no read permission), ``empty`` (no frames), ``corrupt`` (anything decord, the image decoder
or the file system raised) or ``invalid`` (the annotation entry itself is unusable: a label out of
range, a duplicate; the file is not opened), ``timeout`` (the probe took longer than the dataset's
``decode_timeout_s``: a decoder that hangs), ``crash`` (the decoder process died) or ``mismatch`` (a
decoder other than decord returns other pixels than decord for the same probe frames:
``harness.data.decode.decoder_disagreement``). Every probe runs
in a watchdog worker (``harness.data.watchdog``), one per checking thread, so neither stops the check.
"""
from __future__ import annotations

import concurrent.futures as futures
import os
import typing as tp

from harness.data.annotations import VideoItem
from harness.data.decode import DEFAULT_DECODE_TIMEOUT_S, DEFAULT_DECODER

STATUSES = ("missing", "unreadable", "empty", "corrupt", "invalid", "timeout", "crash", "mismatch")  # every status but "ok"


def probe_video(path: str, frames: int = 3, decoder: str = DEFAULT_DECODER) -> tp.Tuple[str, str]:
    """``(status, detail)`` for one video: status is ok, missing, unreadable, empty or corrupt."""
    if not os.path.lexists(path):
        return "missing", "no such file"
    if not os.path.exists(path):
        return "missing", f"dangling symbolic link to {os.readlink(path)}"
    if not os.path.isfile(path):
        return "unreadable", "not a regular file"
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        return "unreadable", f"{type(err).__name__}: {err.strerror or err}"
    try:
        from harness.data.containers import truncation

        cut = truncation(path)
        if cut:
            return "corrupt", cut
        if decoder != DEFAULT_DECODER:
            return _probe_with(decoder, path, frames)
        import decord

        reader = decord.VideoReader(path, num_threads=1)
        n = len(reader)
        if n <= 0:
            return "empty", "the video has no frames"
        wanted = sorted({round(i * (n - 1) / max(frames - 1, 1)) for i in range(frames)})
        batch = reader.get_batch(wanted).asnumpy()
        if batch.shape[0] != len(wanted):
            return "corrupt", f"decoded {batch.shape[0]} of {len(wanted)} probe frames"
        return "ok", f"{n} frames, {batch.shape[2]}x{batch.shape[1]}"
    except Exception as err:  # noqa: BLE001 -- every failure is a finding, none is fatal
        return "corrupt", f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"


def _probe_with(decoder: str, path: str, frames: int) -> tp.Tuple[str, str]:
    """``probe_video`` through a registered backend other than decord."""
    import numpy as np

    from harness.data.decode import decoder_backend

    seen = []

    def spread(n: int) -> np.ndarray:
        seen.append(n)
        return np.asarray(sorted({round(i * (n - 1) / max(frames - 1, 1)) for i in range(frames)}))

    decoded, _, wanted = decoder_backend(decoder)(path, spread)
    if decoded.shape[0] != len(wanted):
        return "corrupt", f"decoded {decoded.shape[0]} of {len(wanted)} probe frames"
    return "ok", f"{seen[0]} frames, {decoded.shape[2]}x{decoded.shape[1]}"


def probe_item(item: VideoItem, frames: int = 3, decoder: str = DEFAULT_DECODER) -> tp.Tuple[str, str]:
    """``probe_video`` for any item: video file, frame folder, or an entry with an annotation problem."""
    from harness.data.annotations import FrameFolderItem

    if getattr(item, "problem", None):
        return "invalid", str(item.problem)
    if isinstance(item, FrameFolderItem):
        from harness.data.frames import probe_frame_folder

        return probe_frame_folder(item, frames)
    return probe_video(item.path, frames, decoder)


def guarded_probe(item: VideoItem, frames: int = 3, decoder: str = DEFAULT_DECODER,
                  timeout_s: float = DEFAULT_DECODE_TIMEOUT_S) -> tp.Tuple[str, str]:
    """``probe_item`` in this thread's watchdog worker: ``timeout`` / ``crash`` instead of a hang."""
    from harness.data.annotations import FrameFolderItem
    from harness.data.watchdog import DecoderCrash, DecodeTimeout, run_with_deadline

    if getattr(item, "problem", None):
        return "invalid", str(item.problem)
    try:
        status, detail = run_with_deadline(probe_item, item, frames, decoder, timeout=timeout_s)
        if status == "ok" and decoder != DEFAULT_DECODER and not isinstance(item, FrameFolderItem):
            from harness.data.decode import decoder_disagreement

            why = decoder_disagreement(item.path, decoder, frames=frames, timeout_s=timeout_s)
            if why:
                return "mismatch", why
        return status, detail
    except (DecodeTimeout, DecoderCrash) as err:
        return err.reason, str(err)


def check_items(items: tp.Sequence[VideoItem], *, frames: int = 3, workers: int = 2, progress: bool = True,
                timeout_s: float = DEFAULT_DECODE_TIMEOUT_S, decoder: str = DEFAULT_DECODER) -> dict:
    """Probe every item (``workers`` at a time, each with a deadline of ``timeout_s``); returns counts
    and the list of problem videos (sorted by index)."""
    from tqdm import tqdm

    problems: tp.List[dict] = []
    with futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        jobs = {pool.submit(guarded_probe, item, frames, decoder, timeout_s): item for item in items}
        bar = tqdm(futures.as_completed(jobs), total=len(jobs), desc="check videos", unit="video",
                   disable=not progress)
        for job in bar:
            item = jobs[job]
            status, detail = job.result()
            if status != "ok":
                problems.append({"index": item.index, "path": item.path, "label": item.label,
                                 "status": status, "error": detail})
    problems.sort(key=lambda p: p["index"])
    counts = {s: sum(p["status"] == s for p in problems) for s in STATUSES}
    return {"listed": len(items), "ok": len(items) - len(problems), **counts, "problems": problems}
