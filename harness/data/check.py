"""``harness data check``: find missing, unreadable and corrupt videos of a dataset, changing nothing.

Each video is opened with decord and a few frames spread over its length are decoded (the first, the
last and some in between), in parallel worker processes. A video passes when every probe frame
decodes; otherwise it is reported with the error, classified as ``missing`` (no such file), ``empty``
(no frames) or ``corrupt`` (anything decord or the file system raised).
"""
from __future__ import annotations

import concurrent.futures as futures
import os
import typing as tp

from harness.data.annotations import VideoItem


def probe_video(path: str, frames: int = 3) -> tp.Tuple[str, str]:
    """``(status, detail)`` for one video: status is ok, missing, empty or corrupt."""
    if not os.path.isfile(path):
        return "missing", "no such file"
    try:
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


def check_items(items: tp.Sequence[VideoItem], *, frames: int = 3, workers: int = 2,
                progress: bool = True) -> dict:
    """Probe every item; returns counts and the list of problem videos (sorted by index)."""
    from tqdm import tqdm

    problems: tp.List[dict] = []
    with futures.ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        jobs = {pool.submit(probe_video, item.path, frames): item for item in items}
        bar = tqdm(futures.as_completed(jobs), total=len(jobs), desc="check videos", unit="video",
                   disable=not progress)
        for job in bar:
            item = jobs[job]
            status, detail = job.result()
            if status != "ok":
                problems.append({"index": item.index, "path": item.path, "label": item.label,
                                 "status": status, "error": detail})
    problems.sort(key=lambda p: p["index"])
    counts = {s: sum(p["status"] == s for p in problems) for s in ("missing", "empty", "corrupt")}
    return {"listed": len(items), "ok": len(items) - len(problems), **counts, "problems": problems}
