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
its chunks already hold. A task of a shared-decoding group predicts the same range for each of its
cells on one decoding pass (``predict_range`` with one model and one writer per cell), each cell
into its own folder above, so the layout, the resume (per cell: a batch is decoded while any cell
lacks it and forwarded only through those) and the merge do not depend on the grouping. ``merge_predictions`` reads every chunk of every shard, keeps one row per
(video, clip, crop) and one entry per batch (a batch saved twice, e.g. by a checkpoint racing a
regular save, counts once) and adds them to the same ``AccuracyAccumulator`` as a local evaluation.
"""
from __future__ import annotations

import json
import os
import math
import time
import typing as tp
from pathlib import Path
from harness.layout import Layout

CHUNK_GLOB = "chunk-*.npz"
STATE, FAILED, CELL, MEASURE = "state.json", "failed.json", "cell.json", "measure.json"


# --- layout -------------------------------------------------------------------------------------

def cell_dir(store_root: str, key: str) -> Path:
    """Where the shards of cell ``key`` keep their predictions."""
    return Layout(store_root).shards(key)


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
    from harness.files import MAX_RECORD_BYTES, read_json as bounded_json

    if not os.path.lexists(path):
        return None
    try:  # the bounded reader: a FIFO or /dev/zero in a shard folder is no state, and no hang
        return bounded_json(path, MAX_RECORD_BYTES, what="shard file")
    except ValueError:
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


def predict_range(models: tp.Mapping[str, tp.Any], dataset, items, *, start: int, end: int, batch_size: int,
                  num_workers: int, device, writers: tp.Mapping[str, PredictionWriter],
                  skip: tp.Optional[tp.Mapping[str, tp.Set[int]]] = None,
                  progress: tp.Callable[..., None] = lambda *a, **k: None,
                  after_batch: tp.Optional[tp.Callable[[int], None]] = None,
                  contexts: tp.Optional[tp.Mapping[str, tp.Any]] = None) -> tp.Dict[str, BaseException]:
    """Forward the batches of items ``[start, end)`` through each model (one per cell of a shared-decoding
    group), handing each cell's batches to its own writer; a batch is decoded once, when some cell has not
    saved it yet (``skip[name]``: batch numbers already saved), and forwarded through exactly the cells
    that have not. Returns ``{name: exception}`` for the models whose forward raised (the others go on).

    Batches are the unsharded run's (``items[g*batch_size:(g+1)*batch_size]`` clipped to the range),
    so each forward sees exactly the same clips.
    """
    import torch

    from harness.data.video_dataset import VideoDataset, collate_views
    from harness.measure.accuracy import forward_batches

    skip = skip or {}
    numbers = batch_numbers(start, end, batch_size)
    needs = {name: [g for g in numbers if g not in skip.get(name, ())] for name in models}
    todo = sorted({g for gs in needs.values() for g in gs})
    index_batches = [list(range(max(start, g * batch_size), min(end, (g + 1) * batch_size))) for g in todo]
    loader = torch.utils.data.DataLoader(VideoDataset(items, dataset), batch_sampler=index_batches,
                                         num_workers=num_workers, collate_fn=collate_views)
    total, done = end - start, end - start - sum(len(b) for b in index_batches)
    progress("evaluate", done, total, force=True)
    errors: tp.Dict[str, BaseException] = {}
    t_prev = time.perf_counter()
    wanted = lambda i: [name for name, gs in needs.items() if todo[i] in gs]  # noqa: E731
    try:
        for g, (meta, forwards) in zip(todo, forward_batches(models, loader, device, contexts, wanted)):
            now = time.perf_counter()
            wall_s, t_prev = now - t_prev, now
            for name, forward in forwards.items():
                if isinstance(forward, BaseException):
                    errors[name] = forward
                    continue
                writers[name].add(_saved_entry(g, dataset, {**meta, **forward}, wall_s))
            done += len(meta["indices"]) + len(meta["failed"])
            progress("evaluate", done, total)
            if after_batch is not None:
                after_batch(g)
    finally:
        for writer in writers.values():
            writer.flush()
    progress("evaluate", done, total, force=True)
    return errors


def _saved_entry(g: int, dataset, entry: dict, wall_s: float) -> dict:
    """What a chunk keeps of one forwarded batch: numbered, with its views' logits as float32 numpy."""
    entry = {"batch": g, "videos": entry.pop("indices"), "num_crops": dataset.num_crops,
             "views_per_video": dataset.views, **entry}
    if "logits" in entry:
        entry["logits"] = entry["logits"].float().cpu().numpy()
        entry["views"] = entry["logits"].shape[0] * entry["logits"].shape[1]
    entry["wall_s"] = wall_s
    return entry


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
    """Metrics, coverage and samples from deduplicated predictions, through the same
    ``AccuracyAccumulator`` as a local evaluation: each saved batch is added in batch order, so the
    result (and every per-video row) equals an unsharded evaluation's."""
    import numpy as np
    import torch

    from harness.measure.accuracy import AccuracyAccumulator

    batches = [predictions["batches"][n] for n in sorted(predictions["batches"])]
    if not batches:
        raise RuntimeError(f"no video of {num_items} could be decoded (no saved batch)")
    acc = AccuracyAccumulator(aggregation, batches[0]["views_per_video"])
    wall = 0.0
    for meta in batches:
        wall += meta.get("wall_s", 0.0)
        forward = {}
        if meta["videos"]:
            v, crops = meta["views_per_video"], meta["num_crops"]
            keys = [(video, i // crops, i % crops) for video in meta["videos"] for i in range(v)]
            missing = [k for k in keys if k not in predictions["views"]]
            if missing:
                raise RuntimeError(f"batch {meta['batch']}: {len(missing)} views have no saved prediction "
                                   f"(first: video {missing[0][0]}, clip {missing[0][1]}, crop {missing[0][2]})")
            logits = torch.from_numpy(np.stack([predictions["views"][k][0] for k in keys]))
            forward = {"logits": logits.view(len(meta["videos"]), v, -1), "realised_macs": meta["realised_macs"],
                       "sample_macs": [predictions["views"][k][1] for k in keys], "model_s": meta.get("model_s", 0.0)}
            acc.last_forward(meta["stats"], meta["macs_record"])
        acc.add(indices=meta["videos"], paths=meta["paths"], labels=meta["labels"], failed=meta["failed"],
                data_wait_s=meta.get("data_wait_s", 0.0), **forward)
    result = acc.result(listed=num_items, listed_in_annotation=listed_total, wall_s=wall)
    result["last_stats"] = acc.last_stats
    result["duplicates"] = predictions["duplicates"]
    return result
