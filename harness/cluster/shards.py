"""Evaluate a cell in shards by video, save per-view predictions as it goes, merge them exactly.

A cell's videos (after ``eval.limit``) are cut into ``num_shards`` contiguous, non-overlapping ranges
on **batch boundaries** of the unsharded run (``shard_ranges``): every batch a shard forwards is a
batch the unsharded run forwards, so logits, per-batch token counts and the merged record are the
same as one unsharded evaluation. Nothing is padded, so no video is counted twice.

Layout under ``<results>/shards/<cell key>/``::

    cell.json                        the cell (config, label, suite) and how it was split (written at submit)
    measure.json                     throughput, FLOPs check, memory, runtime: measured once, by shard 0
    shard-000-of-004/state.json      range, videos done, complete flag, one entry per (re)start
    shard-000-of-004/chunk-*.npz     predictions saved since the previous chunk (atomic, append-only)
    shard-000-of-004/failed.json     the error of the shard's last run, when it raised or was killed

A chunk holds one row per (video, clip, crop) view: ``logits`` (float32, exactly the model's output)
and, for adaptive methods, that view's theoretical MACs; plus per-batch metadata (decoded videos,
failed videos, MACs executed, token counts of that forward). On restart a shard skips the batches
its chunks already hold. ``merge_predictions`` reads every chunk of every shard, keeps one row per
(video, clip, crop) and one entry per batch (a batch saved twice, e.g. by a checkpoint racing a
regular save, counts once) and computes the metrics as ``harness.evaluate.evaluate_model`` does.
"""
from __future__ import annotations

import json
import math
import time
import typing as tp
from pathlib import Path

CHUNK_GLOB = "chunk-*.npz"
STATE, FAILED, CELL, MEASURE = "state.json", "failed.json", "cell.json", "measure.json"


# --- layout -------------------------------------------------------------------------------------

def cell_dir(store_root: str, key: str) -> Path:
    """Where the shards of cell ``key`` keep their predictions."""
    return Path(store_root) / "shards" / key


def shard_dir(cell: tp.Union[str, Path], shard: int, num_shards: int) -> Path:
    return Path(cell) / f"shard-{shard:03d}-of-{num_shards:03d}"


def shard_ranges(num_items: int, num_shards: int, batch_size: int) -> tp.List[tp.Tuple[int, int]]:
    """``num_shards`` contiguous ``[start, end)`` item ranges that start on multiples of ``batch_size``.

    Batches are spread as evenly as possible; with more shards than batches the last shards are
    empty (``start == end``).

    >>> shard_ranges(10, 3, 2)
    [(0, 2), (2, 6), (6, 10)]
    """
    if num_shards < 1 or batch_size < 1:
        raise ValueError(f"num_shards and batch_size must be >= 1, got {num_shards} and {batch_size}")
    batches = math.ceil(num_items / batch_size)
    bounds = [min(num_items, (i * batches // num_shards) * batch_size) for i in range(num_shards + 1)]
    bounds[-1] = num_items
    return [(bounds[i], bounds[i + 1]) for i in range(num_shards)]


def write_json(path: tp.Union[str, Path], data: tp.Any) -> None:
    """Atomic JSON write (temp file in the same folder + ``os.replace``)."""
    from harness.store import atomic_write_bytes, dumps_record

    atomic_write_bytes(Path(path), (dumps_record(data) + "\n").encode())


def read_json(path: tp.Union[str, Path]) -> tp.Optional[tp.Any]:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


# --- shard state --------------------------------------------------------------------------------

def load_state(directory: Path) -> tp.Optional[dict]:
    return read_json(directory / STATE)


def new_state(shard: int, num_shards: int, start: int, end: int) -> dict:
    return {"shard": shard, "num_shards": num_shards, "range": [start, end], "videos": end - start,
            "videos_done": 0, "chunks": 0, "complete": False, "runs": []}


# --- saving -------------------------------------------------------------------------------------

class PredictionWriter:
    """Buffers finished batches and saves them as one chunk every ``save_every_s`` seconds (0: every batch).

    ``flush()`` is safe to call from a signal handler (submitit's checkpoint on preemption): batches are
    appended whole, a flush that interrupts another flush skips, and a batch saved twice is deduplicated
    by the merge.
    """

    def __init__(self, directory: Path, state: dict, save_every_s: float = 60.0):
        self.directory, self.state, self.save_every_s = directory, state, save_every_s
        self.pending: tp.List[dict] = []
        # never reuse a chunk's name: a run killed between writing a chunk and counting it left one
        self._next = 1 + max((int(p.stem.split("-")[1]) for p in directory.glob(CHUNK_GLOB)), default=-1)
        self._last_save = time.monotonic()
        self._saving = False

    def add(self, batch: dict) -> None:
        self.pending.append(batch)
        if time.monotonic() - self._last_save >= self.save_every_s:
            self.flush()

    def flush(self) -> None:
        if self._saving or not self.pending:
            return
        self._saving = True
        try:
            batches = list(self.pending)
            from harness.store import atomic_write_bytes

            atomic_write_bytes(self.directory / f"chunk-{self._next:06d}.npz", _encode_chunk(batches))
            self._next += 1
            del self.pending[:len(batches)]
            run = self.state["runs"][-1]
            done = sum(len(b["videos"]) + len(b["failed"]) for b in batches)
            run["predicted"] += done
            self.state["videos_done"] += done
            self.state["chunks"] += 1
            write_json(self.directory / STATE, self.state)
            self._last_save = time.monotonic()
        finally:
            self._saving = False


def _encode_chunk(batches: tp.Sequence[dict]) -> bytes:
    import io

    import numpy as np

    rows = {"video": [], "clip": [], "crop": [], "logits": [], "macs": []}
    meta = []
    for b in batches:
        logits, per_view = b.get("logits"), b.get("sample_macs")  # [n, V, K] float32; [n * V] or None
        if logits is not None:
            n, v, k = logits.shape
            crops = b["num_crops"]
            rows["video"].append(np.repeat(np.asarray(b["videos"], dtype=np.int64), v))
            rows["clip"].append(np.tile(np.arange(v, dtype=np.int32) // crops, n))
            rows["crop"].append(np.tile(np.arange(v, dtype=np.int32) % crops, n))
            rows["logits"].append(logits.reshape(n * v, k))
            rows["macs"].append(np.full(n * v, np.nan) if per_view is None else np.asarray(per_view, np.float64))
        meta.append({k: val for k, val in b.items() if k not in ("logits", "sample_macs")})
    arrays = {name: (np.concatenate(parts) if parts else np.zeros(0)) for name, parts in rows.items()}
    arrays["meta"] = np.array(json.dumps(meta))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


# --- predicting ---------------------------------------------------------------------------------

def batch_numbers(start: int, end: int, batch_size: int) -> tp.List[int]:
    """Global batch numbers (of the unsharded run) covering items ``[start, end)``."""
    return list(range(start // batch_size, math.ceil(end / batch_size))) if end > start else []


def saved_batches(directory: Path) -> tp.Dict[int, int]:
    """``{batch number: videos it holds (decoded + failed)}`` over ``directory``'s chunks."""
    return {b["batch"]: len(b["videos"]) + len(b["failed"]) for chunk in _read_chunks(directory)
            for b in chunk["meta"]}


def predict_range(model, dataset, items, *, start: int, end: int, batch_size: int, num_workers: int,
                  device, writer: PredictionWriter, skip: tp.Set[int] = frozenset(),
                  progress: tp.Callable[..., None] = lambda *a, **k: None,
                  after_batch: tp.Optional[tp.Callable[[int], None]] = None) -> int:
    """Forward the batches of items ``[start, end)`` not in ``skip``, handing each to ``writer``.

    Batches are the unsharded run's (``items[g*batch_size:(g+1)*batch_size]`` clipped to the range),
    so each forward sees exactly the same clips. Returns the number of batches forwarded.
    """
    import torch

    from harness.data.video_dataset import VideoDataset, collate_views
    from harness.measure.flops import model_macs
    from harness.runner import forward_stats

    todo = [g for g in batch_numbers(start, end, batch_size) if g not in skip]
    index_batches = [list(range(max(start, g * batch_size), min(end, (g + 1) * batch_size))) for g in todo]
    data = VideoDataset(items, dataset)
    loader = torch.utils.data.DataLoader(data, batch_sampler=index_batches, num_workers=num_workers,
                                         collate_fn=collate_views)
    total, done = end - start, end - start - sum(len(b) for b in index_batches)
    progress("evaluate", done, total, force=True)
    t_prev = time.perf_counter()
    with torch.inference_mode():
        for g, batch in zip(todo, loader):
            data_wait_s = time.perf_counter() - t_prev  # decode + transforms not hidden behind the model
            entry = {"batch": g, "data_wait_s": data_wait_s, "videos": batch["indices"].tolist(), "paths": list(batch["paths"]),
                     "labels": batch["labels"].tolist(), "failed": list(batch["failed"]),
                     "num_crops": dataset.num_crops, "views_per_video": dataset.views}
            views = batch["views"]
            if views is not None and len(views):
                b, v = views.shape[:2]
                t_model = time.perf_counter()
                logits = model(views.flatten(0, 1).to(device, non_blocking=True)).view(b, v, -1)
                entry["logits"] = logits.float().cpu().numpy()
                entry["sample_macs"] = model.sample_macs()
                entry["realised_macs"] = model.view_macs().total * b * v
                entry["views"] = b * v
                entry["stats"] = forward_stats(model)
                entry["macs_record"] = model_macs(model).as_record()
                entry["model_s"] = time.perf_counter() - t_model
            now = time.perf_counter()
            entry["wall_s"], t_prev = now - t_prev, now
            writer.add(entry)
            done += len(entry["videos"]) + len(entry["failed"])
            progress("evaluate", done, total)
            if after_batch is not None:
                after_batch(g)
    writer.flush()
    progress("evaluate", done, total, force=True)
    return len(todo)


# --- merging ------------------------------------------------------------------------------------

def _read_chunks(directory: Path) -> tp.Iterator[dict]:
    import numpy as np

    for path in sorted(Path(directory).glob(CHUNK_GLOB)):
        with np.load(path, allow_pickle=False) as z:
            yield {"path": str(path), "meta": json.loads(str(z["meta"])),
                   **{k: z[k] for k in ("video", "clip", "crop", "logits", "macs")}}


def load_predictions(directories: tp.Iterable[Path]) -> dict:
    """Every saved view and batch of the given shard folders, deduplicated.

    Returns ``{"views": {(video, clip, crop): (logits, macs)}, "batches": {number: meta},
    "failed": {index: {...}}, "duplicates": n}`` (``duplicates`` counts views seen more than once).
    """
    views: tp.Dict[tp.Tuple[int, int, int], tp.Tuple[tp.Any, float]] = {}
    batches: tp.Dict[int, dict] = {}
    failed: tp.Dict[int, dict] = {}
    duplicates = 0
    for directory in directories:
        for chunk in _read_chunks(directory):
            for video, clip, crop, logits, macs in zip(chunk["video"].tolist(), chunk["clip"].tolist(),
                                                       chunk["crop"].tolist(), chunk["logits"], chunk["macs"]):
                key = (video, clip, crop)
                if key in views:
                    duplicates += 1
                    continue
                views[key] = (logits, float(macs))
            for meta in chunk["meta"]:
                batches.setdefault(meta["batch"], meta)
                for f in meta["failed"]:
                    failed.setdefault(f["index"], f)
    return {"views": views, "batches": batches, "failed": failed, "duplicates": duplicates}


def merge_predictions(predictions: dict, *, aggregation: str, num_items: int, listed_total: int) -> dict:
    """Metrics, coverage, samples and last-forward stats from deduplicated predictions.

    Mirrors ``harness.evaluate.evaluate_model``: each batch's views are aggregated together, in batch
    order, so the result (and every per-video row) equals an unsharded evaluation's.
    """
    import numpy as np
    import torch

    from harness.evaluate import _sample_rows, aggregate_views, per_sample_summary, topk_correct

    top1 = top5 = decoded = 0
    realised_macs, views_run, adaptive = 0.0, 0, False
    samples: tp.List[dict] = []
    wall = model_s = wait_s = 0.0
    last = None
    for number in sorted(predictions["batches"]):
        meta = predictions["batches"][number]
        wall += meta.get("wall_s", 0.0)
        if not meta["videos"]:
            continue
        v, crops = meta["views_per_video"], meta["num_crops"]
        keys = [(video, i // crops, i % crops) for video in meta["videos"] for i in range(v)]
        missing = [k for k in keys if k not in predictions["views"]]
        if missing:
            raise RuntimeError(f"batch {number}: {len(missing)} views have no saved prediction "
                               f"(first: video {missing[0][0]}, clip {missing[0][1]}, crop {missing[0][2]})")
        b = len(meta["videos"])
        logits = torch.from_numpy(np.stack([predictions["views"][k][0] for k in keys])).view(b, v, -1)
        scores = aggregate_views(logits.float(), aggregation)
        labels = torch.tensor(meta["labels"], dtype=torch.long)
        hit1, hit5 = topk_correct(scores, labels, 1), topk_correct(scores, labels, 5)
        top1 += int(hit1.sum())
        top5 += int(hit5.sum())
        rows = _sample_rows({"indices": torch.tensor(meta["videos"]), "paths": meta["paths"]},
                            scores, labels, hit1, hit5)
        realised_macs += meta["realised_macs"]
        views_run += meta["views"]
        per_view = [predictions["views"][k][1] for k in keys]
        if not any(math.isnan(m) for m in per_view):
            adaptive = True
            per_video = torch.tensor(per_view, dtype=torch.float64).view(b, v).mean(dim=1)
            for row, macs in zip(rows, per_video.tolist()):
                row["gmacs_per_view"] = macs / 1e9
        samples.extend(rows)
        model_s += meta.get("model_s", 0.0)
        wait_s += meta.get("data_wait_s", 0.0)
        decoded += b
        last = meta
    failed = [predictions["failed"][i] for i in sorted(predictions["failed"])]
    if decoded == 0:
        raise RuntimeError(f"no video of {num_items} could be decoded (first error: "
                           f"{failed[0]['error'] if failed else 'none'})")
    done = decoded + len(failed)
    if done != num_items:
        raise RuntimeError(f"the shards hold predictions for {done} of {num_items} videos")
    metrics = {"top1": top1 / decoded, "top5": top5 / decoded, "num_videos": decoded,
               "views_per_video": last["views_per_video"], "eval_wall_s": wall, "eval_model_s": model_s,
               "eval_videos_per_s": decoded / wall if wall > 0 else None, "aggregation": aggregation,
               "eval_data_wait_s": wait_s, "data_videos_per_s": (decoded + len(failed)) / max(wait_s, 1e-9),
               "model_videos_per_s": decoded / max(model_s, 1e-9), "input_bound": wait_s > model_s,
               "gmacs_realised_per_view": realised_macs / views_run / 1e9}
    if adaptive:
        metrics["gmacs_theoretical"] = per_sample_summary([r["gmacs_per_view"] for r in samples])
    coverage = {"listed": num_items, "listed_in_annotation": listed_total, "decoded": decoded,
                "failed": len(failed), "failed_videos": failed}
    return {"metrics": metrics, "coverage": coverage, "samples": samples,
            "last_stats": last["stats"], "last_macs_record": last["macs_record"],
            "duplicates": predictions["duplicates"]}
