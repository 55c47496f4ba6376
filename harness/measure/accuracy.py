"""Accuracy of a model over a dataset's test views: decode each video once, aggregate its views.

``AccuracyAccumulator`` is the one place where per-batch predictions become a cell's metrics,
coverage and per-video rows: the local evaluation (``evaluate_model``) feeds it batch by batch as it
forwards, the Slurm shard merge (``harness.cluster.shards``) feeds it the saved batches in the same
order, so a sharded cell equals an unsharded one by construction.
"""
from __future__ import annotations

import contextlib
import math
import time
import typing as tp

import torch

Context = tp.Callable[[], tp.ContextManager]  # the regime every forward runs under (harness.measure.regime)


def aggregate_views(logits: torch.Tensor, how: str) -> torch.Tensor:
    """[B, V, K] per-view logits -> [B, K] video scores: ``prob`` = mean of softmax, ``score`` = mean of logits."""
    if how == "prob":
        return logits.softmax(dim=-1).mean(dim=1)
    if how == "score":
        return logits.mean(dim=1)
    raise ValueError(f"aggregation must be 'prob' or 'score', got {how!r}")


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    k = min(k, scores.shape[-1])
    return (scores.topk(k, dim=-1).indices == labels[:, None]).any(dim=-1)


def forward_stats(model) -> dict:
    """What the model's last forward did: token counts per block and the attention kernel per block."""
    stats = model.last_stats
    return {"tokens_in": list(stats.tokens_in), "tokens_mlp": list(stats.tokens_mlp),
            "tokens_out": stats.tokens_out, "attention_kernel": list(stats.attention_kernel)}


def per_sample_summary(values: tp.Sequence[float]) -> dict:
    """mean, std (population), p50, p95, min, max of per-video GMACs per view."""
    import numpy as np

    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std()), "p50": float(np.percentile(a, 50)),
            "p95": float(np.percentile(a, 95)), "min": float(a.min()), "max": float(a.max()),
            "count": int(a.size), "unit": "GMACs per view, from each video's active-token counts"}


class AccuracyAccumulator:
    """Per-batch predictions -> metrics, coverage and one row per video.

    Feed every batch in order with ``add`` (its failed videos too), then call ``result``. The cost
    fields come from the batches: GMACs per view executed, averaged over every forwarded view; the
    token counts and the per-part breakdown of the last forward (``last_forward``); per-video
    theoretical GMACs when the method is adaptive (``sample_macs`` given).
    """

    def __init__(self, aggregation: str, views_per_video: int):
        self.aggregation, self.views_per_video = aggregation, views_per_video
        self.top1 = self.top5 = self.decoded = self.views_run = 0
        self.realised_macs = 0.0  # MACs the forwards executed, summed over views
        self.model_s = self.data_wait_s = 0.0
        self.adaptive = False
        self.failed: tp.List[dict] = []
        self.samples: tp.List[dict] = []
        self.last_stats: tp.Optional[dict] = None
        self.last_macs_record: tp.Optional[dict] = None

    def add(self, *, indices: tp.Sequence[int], paths: tp.Sequence[str], labels: tp.Sequence[int],
            failed: tp.Sequence[dict], logits: tp.Optional[torch.Tensor] = None, realised_macs: float = 0.0,
            sample_macs: tp.Optional[tp.Sequence[float]] = None, model_s: float = 0.0,
            data_wait_s: float = 0.0) -> None:
        """One batch: ``logits`` [b, V, K] of its decoded videos (None when none decoded), the MACs its
        forward executed over all views, and (adaptive methods) each view's theoretical MACs."""
        self.failed.extend(failed)
        self.data_wait_s += data_wait_s
        if logits is None or not len(logits):
            return
        b, v = logits.shape[:2]
        _check_predictions(logits, list(labels), list(paths))
        scores = aggregate_views(logits.float(), self.aggregation)
        labels_t = torch.as_tensor(list(labels), dtype=torch.long, device=scores.device)
        hit1, hit5 = topk_correct(scores, labels_t, 1), topk_correct(scores, labels_t, 5)
        self.top1 += int(hit1.sum())
        self.top5 += int(hit5.sum())
        rows = _sample_rows(list(indices), list(paths), scores, labels_t, hit1, hit5)
        self.realised_macs += realised_macs
        self.views_run += b * v
        if sample_macs is not None and not any(math.isnan(m) for m in sample_macs):
            self.adaptive = True
            per_video = torch.tensor(list(sample_macs), dtype=torch.float64).view(b, v).mean(dim=1)
            for row, macs in zip(rows, per_video.tolist()):
                row["gmacs_per_view"] = macs / 1e9
        self.samples.extend(rows)
        self.model_s += model_s
        self.decoded += b

    def last_forward(self, stats: dict, macs_record: dict) -> None:
        """Token counts (``forward_stats``) and MACs breakdown (``MacsCount.as_record``) of the last forward."""
        self.last_stats, self.last_macs_record = stats, macs_record

    def result(self, *, listed: int, listed_in_annotation: int, wall_s: float) -> dict:
        """``{"metrics", "coverage", "samples"}``; raises when no video decoded or videos are unaccounted for."""
        if self.decoded == 0:
            first = self.failed[0]["error"] if self.failed else "none"
            raise RuntimeError(f"no video of {listed} could be decoded (first error: {first})")
        done = self.decoded + len(self.failed)
        if done != listed:
            raise RuntimeError(f"predictions cover {done} of {listed} videos")
        decoded, wait_s, model_s = self.decoded, self.data_wait_s, self.model_s
        metrics = {"top1": self.top1 / decoded, "top5": self.top5 / decoded, "num_videos": decoded,
                   "views_per_video": self.views_per_video, "eval_wall_s": wall_s, "eval_model_s": model_s,
                   "eval_videos_per_s": decoded / wall_s if wall_s > 0 else None, "aggregation": self.aggregation,
                   # input pipeline vs model: videos/s each side could sustain; input-bound when waiting
                   # for data took longer than the model (with workers, only the wait not overlapped)
                   "eval_data_wait_s": wait_s, "data_videos_per_s": done / max(wait_s, 1e-9),
                   "model_videos_per_s": decoded / max(model_s, 1e-9), "input_bound": wait_s > model_s}
        metrics.update(_cost_fields(self.last_macs_record, self.last_stats, self.realised_macs / self.views_run,
                                    self.views_per_video))
        if self.adaptive:
            metrics["gmacs_theoretical"] = per_sample_summary([r["gmacs_per_view"] for r in self.samples])
        coverage = {"listed": listed, "listed_in_annotation": listed_in_annotation, "decoded": decoded,
                    "failed": len(self.failed), "failed_videos": list(self.failed)}
        return {"metrics": metrics, "coverage": coverage, "samples": self.samples}


def _cost_fields(macs_record: tp.Optional[dict], stats: tp.Optional[dict], realised_macs_per_view: float,
                 views: int) -> dict:
    """GMACs per view = what the forwards executed, averaged over the evaluation (equal to the last
    forward's for static methods); breakdown and token counts of the last forward."""
    out = dict(macs_record or {})
    out["gmacs_per_view"] = realised_macs_per_view / 1e9
    out["gflops_per_view"] = 2 * out["gmacs_per_view"]
    out["gmacs_per_video"] = out["gmacs_per_view"] * views
    if stats is not None:
        out["tokens_per_block"] = list(stats["tokens_in"])
        out["tokens_per_mlp"] = list(stats["tokens_mlp"])
        out["tokens_out"] = stats["tokens_out"]
    return out


def decoded_batches(loader) -> tp.Iterator[tp.Tuple[dict, float]]:
    """``(batch, data_wait_s)`` for every batch of a ``collate_views`` loader: the wait is decode +
    transforms not hidden behind the model (measured from the end of the previous step)."""
    it = iter(loader)
    while True:
        t_wait = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            return
        yield batch, time.perf_counter() - t_wait


def batch_meta(batch: dict, data_wait_s: float) -> dict:
    """What an accumulator needs of a batch besides its forward."""
    return {"indices": batch["indices"].tolist(), "paths": list(batch["paths"]), "labels": batch["labels"].tolist(),
            "failed": list(batch["failed"]), "data_wait_s": data_wait_s}


def forward_views(model, views: torch.Tensor, device, context: Context = contextlib.nullcontext) -> dict:
    """One forward of a batch's views [b, V, 3, T, H, W] under ``context()`` (the regime: autocast, SDPA
    backend): ``logits`` [b, V, K], ``realised_macs`` (executed, all views), ``sample_macs`` (adaptive
    methods), ``stats``, ``macs_record`` and ``model_s``."""
    b, v = views.shape[:2]
    t_model = time.perf_counter()
    with torch.inference_mode(), context():
        logits = model(views.flatten(0, 1).to(device, non_blocking=True)).view(b, v, -1)
    macs = model.view_macs()
    out = {"logits": logits, "realised_macs": macs.total * b * v, "sample_macs": model.sample_macs(),
           "stats": forward_stats(model), "macs_record": macs.as_record()}
    out["model_s"] = time.perf_counter() - t_model
    return out


def forward_batches(models: tp.Mapping[str, tp.Any], loader, device,
                    contexts: tp.Optional[tp.Mapping[str, Context]] = None,
                    wanted: tp.Optional[tp.Callable[[int], tp.Iterable[str]]] = None
                    ) -> tp.Iterator[tp.Tuple[dict, tp.Dict[str, tp.Any]]]:
    """Decode each batch of a ``collate_views`` loader once and forward it through every model: yields
    ``(batch_meta, {name: forward_views output, or the exception that forward raised})`` per batch. A model
    whose forward raised is not forwarded again; ``wanted(i)`` (default: all) names the models batch ``i``
    goes through. The local evaluation and the Slurm shards both predict with it."""
    raised: tp.Set[str] = set()
    for i, (batch, wait_s) in enumerate(decoded_batches(loader)):
        meta, views = batch_meta(batch, wait_s), batch["views"]
        names = [n for n in (models if wanted is None else wanted(i)) if n not in raised]
        forwards: tp.Dict[str, tp.Any] = {}
        for name in names:
            try:
                forwards[name] = {} if views is None or not len(views) else forward_views(
                    models[name], views if len(names) == 1 else views.clone(),  # no forward sees another's input
                    device, (contexts or {}).get(name, contextlib.nullcontext))
            except Exception as err:  # noqa: BLE001 -- one model failing must not stop the others
                raised.add(name)
                forwards[name] = err
        yield meta, forwards


ACCUMULATED = ("indices", "paths", "labels", "failed", "logits", "realised_macs", "sample_macs", "model_s",
               "data_wait_s")


def _accumulate(acc: AccuracyAccumulator, entry: dict) -> None:
    acc.add(**{k: entry[k] for k in ACCUMULATED if k in entry})
    if "stats" in entry:
        acc.last_forward(entry["stats"], entry["macs_record"])


def evaluate_models(models: tp.Mapping[str, tp.Any], dataset, *, device: torch.device, batch_size: int,
                    num_workers: int = 0, limit: tp.Optional[int] = None,
                    progress: tp.Callable[..., None] = lambda *a, **k: None,
                    contexts: tp.Optional[tp.Mapping[str, Context]] = None) -> tp.Dict[str, tp.Any]:
    """Evaluate several models on one pass over ``dataset``: each batch is decoded once and forwarded
    through every model, each with its own accumulator, so each result equals evaluating that model
    alone. Returns ``{name: result dict}`` (see ``evaluate_model``), or ``{name: exception}`` for a model
    whose forward raised (the others go on)."""
    from harness.data.video_dataset import VideoDataset, collate_views

    items = dataset.items()
    listed_total = len(items)
    if limit is not None:
        items = items[:limit]
    loader = torch.utils.data.DataLoader(VideoDataset(items, dataset), batch_size=batch_size,
                                         num_workers=num_workers, collate_fn=collate_views, shuffle=False)
    accs = {name: AccuracyAccumulator(dataset.aggregation, dataset.views) for name in models}
    errors: tp.Dict[str, BaseException] = {}
    done = 0
    t0 = time.perf_counter()
    progress("evaluate", 0, len(items), force=True)
    for meta, forwards in forward_batches(models, loader, device, contexts):
        for name, forward in forwards.items():
            if isinstance(forward, BaseException):
                errors[name] = forward
            elif name not in errors:
                try:
                    _accumulate(accs[name], {**meta, **forward})
                except PredictionError as err:  # this model's record fails; the others go on
                    errors[name] = err
        done += len(meta["indices"]) + len(meta["failed"])
        progress("evaluate", done, len(items))
    progress("evaluate", done, len(items), force=True)
    wall = time.perf_counter() - t0
    out: tp.Dict[str, tp.Any] = dict(errors)
    for name, acc in accs.items():
        if name in errors:
            continue
        try:
            result = acc.result(listed=len(items), listed_in_annotation=listed_total, wall_s=wall)
        except Exception as err:  # noqa: BLE001 -- e.g. no video decoded
            out[name] = err
            continue
        result["manifest"] = dataset.manifest()
        result["last_stats"] = acc.last_stats
        out[name] = result
    return out


def evaluate_model(model, dataset, *, device: torch.device, batch_size: int, num_workers: int = 0,
                   limit: tp.Optional[int] = None,
                   progress: tp.Callable[..., None] = lambda *a, **k: None,
                   context: Context = contextlib.nullcontext) -> dict:
    """Top-1/top-5 and GMACs over the videos of ``dataset`` (a registered dataset config).

    A video that fails to decode is counted and listed in ``coverage``, never replaced; metrics are
    over the decoded videos. Returns ``{"metrics", "coverage", "samples", "manifest", "last_stats"}``.
    """
    result = evaluate_models({"model": model}, dataset, device=device, batch_size=batch_size,
                             num_workers=num_workers, limit=limit, progress=progress,
                             contexts={"model": context})["model"]
    if isinstance(result, BaseException):
        raise result
    return result


class PredictionError(ValueError):
    """The model's predictions cannot be scored: non-finite logits, or a label outside its head."""


def _check_predictions(logits: torch.Tensor, labels: tp.List[int], paths: tp.List[str]) -> None:
    """A cell is ``ok`` only over finite logits and labels its head has: anything else would be recorded as a
    silently wrong accuracy (every argmax of NaN is class 0, ...) or crash inside ``gather``."""
    classes = logits.shape[-1]
    bad = [(y, p) for y, p in zip(labels, paths) if not 0 <= y < classes]
    if bad:
        y, p = bad[0]
        raise PredictionError(f"{p}: label {y} is outside the model's {classes}-class head "
                              f"({len(bad)} of {len(labels)} videos in this batch); the dataset's "
                              "num_classes / annotation labels do not match the checkpoint")
    finite = torch.isfinite(logits.detach()).flatten(1).all(dim=1)
    if not bool(finite.all()):
        first = int((~finite).nonzero()[0])
        raise PredictionError(f"the model's logits are not finite (NaN or infinity) for {int((~finite).sum())} of "
                              f"{len(paths)} videos, first {paths[first]}: no accuracy is recorded from them "
                              "(check the backbone's numbers, e.g. norm_eps, and the checkpoint)")


def _sample_rows(indices, paths, scores, labels, hit1, hit5) -> tp.List[dict]:
    """One row per video: what the paired statistics of a report need."""
    top5 = scores.topk(min(5, scores.shape[-1]), dim=-1).indices.tolist()
    true_score = scores.gather(1, labels[:, None]).squeeze(1).tolist()
    return [{"index": int(i), "path": p, "label": int(y), "pred": t[0], "top5": " ".join(map(str, t)),
             "correct_top1": int(h1), "correct_top5": int(h5), "label_score": s}
            for i, p, y, t, h1, h5, s in zip(indices, paths, labels.tolist(), top5, hit1.tolist(),
                                             hit5.tolist(), true_score)]
