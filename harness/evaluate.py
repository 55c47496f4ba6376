"""Accuracy of a model over a dataset's test views: decode each video once, aggregate its views."""
from __future__ import annotations

import time
import typing as tp

import torch


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


def evaluate_model(model, dataset, *, device: torch.device, batch_size: int, num_workers: int = 0,
                   limit: tp.Optional[int] = None,
                   progress: tp.Callable[..., None] = lambda *a, **k: None) -> dict:
    """Top-1/top-5 over the videos of ``dataset`` (a registered dataset config).

    A video that fails to decode is counted and listed in ``coverage``, never replaced; metrics are
    over the decoded videos.
    """
    from harness.data.video_dataset import VideoDataset, collate_views

    items = dataset.items()
    listed_total = len(items)
    if limit is not None:
        items = items[:limit]
    data = VideoDataset(items, dataset)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, num_workers=num_workers,
                                         collate_fn=collate_views, shuffle=False)
    top1 = top5 = decoded = 0
    realised_macs = 0.0  # MACs the forwards executed, summed over views
    views_run = 0
    adaptive = False
    failed: tp.List[dict] = []
    samples: tp.List[dict] = []
    t0 = time.perf_counter()
    model_s = wait_s = 0.0
    progress("evaluate", 0, len(items), force=True)
    with torch.inference_mode():
        t_wait = time.perf_counter()
        for batch in loader:
            wait_s += time.perf_counter() - t_wait  # decode + transform not hidden behind the model
            failed.extend(batch["failed"])
            views = batch["views"]
            if views is not None and len(views):
                b, v = views.shape[:2]
                t_model = time.perf_counter()
                logits = model(views.flatten(0, 1).to(device, non_blocking=True)).view(b, v, -1)
                scores = aggregate_views(logits.float(), dataset.aggregation)
                labels = batch["labels"].to(device)
                hit1, hit5 = topk_correct(scores, labels, 1), topk_correct(scores, labels, 5)
                top1 += int(hit1.sum())
                top5 += int(hit5.sum())
                rows = _sample_rows(batch, scores, labels, hit1, hit5)
                realised_macs += model.view_macs().total * b * v
                views_run += b * v
                per_view = model.sample_macs()
                if per_view is not None:  # adaptive: each video's cost from its own token counts
                    adaptive = True
                    per_video = torch.tensor(per_view, dtype=torch.float64).view(b, v).mean(dim=1)
                    for row, macs in zip(rows, per_video.tolist()):
                        row["gmacs_per_view"] = macs / 1e9
                samples.extend(rows)
                model_s += time.perf_counter() - t_model
                decoded += b
            progress("evaluate", decoded + len(failed), len(items))
            t_wait = time.perf_counter()
    progress("evaluate", decoded + len(failed), len(items), force=True)
    if decoded == 0:
        raise RuntimeError(f"no video of {len(items)} could be decoded (first error: "
                           f"{failed[0]['error'] if failed else 'none'})")
    wall = time.perf_counter() - t0
    metrics = {"top1": top1 / decoded, "top5": top5 / decoded, "num_videos": decoded,
               "views_per_video": dataset.views, "eval_wall_s": wall, "eval_model_s": model_s,
               "eval_videos_per_s": decoded / wall, "aggregation": dataset.aggregation,
               # input pipeline vs model: videos/s each side could sustain; input-bound when waiting
               # for data took longer than the model (with workers, only the wait not overlapped)
               "eval_data_wait_s": wait_s, "data_videos_per_s": (decoded + len(failed)) / max(wait_s, 1e-9),
               "model_videos_per_s": decoded / max(model_s, 1e-9), "input_bound": wait_s > model_s,
               "gmacs_realised_per_view": realised_macs / views_run / 1e9}
    if adaptive:
        metrics["gmacs_theoretical"] = per_sample_summary([r["gmacs_per_view"] for r in samples])
    return {
        "metrics": metrics,
        "coverage": {"listed": len(items), "listed_in_annotation": listed_total, "decoded": decoded,
                     "failed": len(failed), "failed_videos": failed},
        "manifest": dataset.manifest(),
        "samples": samples,
    }


def per_sample_summary(values: tp.Sequence[float]) -> dict:
    """mean, std (population), p50, p95, min, max of per-video GMACs per view."""
    import numpy as np

    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std()), "p50": float(np.percentile(a, 50)),
            "p95": float(np.percentile(a, 95)), "min": float(a.min()), "max": float(a.max()),
            "count": int(a.size), "unit": "GMACs per view, from each video's active-token counts"}


def _sample_rows(batch, scores, labels, hit1, hit5) -> tp.List[dict]:
    """One row per video: what the paired statistics of a report need."""
    top5 = scores.topk(min(5, scores.shape[-1]), dim=-1).indices.tolist()
    true_score = scores.gather(1, labels[:, None]).squeeze(1).tolist()
    return [{"index": int(i), "path": p, "label": int(y), "pred": t[0], "top5": " ".join(map(str, t)),
             "correct_top1": int(h1), "correct_top5": int(h5), "label_score": s}
            for i, p, y, t, h1, h5, s in zip(batch["indices"].tolist(), batch["paths"], labels.tolist(),
                                             top5, hit1.tolist(), hit5.tolist(), true_score)]
