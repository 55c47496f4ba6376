"""Accuracy-cost scatter plots of one leaderboard group (PNG + SVG).

matplotlib/seaborn are imported inside the functions, so importing this module stays cheap and torch-free.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness.report.pareto import baseline_frontier, frontier
from harness.report.safe import mpl

MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "*", "p"]
AXES = {  # x column -> (axis label, file suffix, higher_is_better)
    "gmacs_per_view": ("GMACs per view (1 MAC = 1 multiply-add)", "gmacs", False),
    "clips_per_s": ("throughput (clips/s, batch {batch})", "throughput", True),
}


def plot_group(group: dict, df: pd.DataFrame, out_dir: str | Path, stem: str) -> list[Path]:
    """Write ``<stem>_gmacs.{png,svg}`` and ``<stem>_throughput.{png,svg}`` under ``out_dir``.

    Top-1 (%) against GMACs/view and against clips/s: Wilson 95% error bars, one colour + marker per
    method, each method's settings joined in cost order, the Pareto frontier dashed, dense highlighted.
    An axis with no usable point is skipped. Returns the written paths.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import seaborn as sns

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ok = df[(df["status"] == "ok") & df["top1"].notna()]
    methods = list(dict.fromkeys(ok["method"]))
    palette = dict(zip(methods, sns.color_palette("tab10", max(len(methods), 1))))
    markers = {m: MARKERS[i % len(MARKERS)] for i, m in enumerate(methods)}
    batch = ", ".join(str(int(b)) for b in sorted(set(df["throughput_batch_size"].dropna()))) or "?"
    written: list[Path] = []
    for x, (label, suffix, higher) in AXES.items():
        data = ok[ok[x].notna()]
        if data.empty:
            continue
        with sns.axes_style("whitegrid"):
            fig, ax = plt.subplots(figsize=(7.5, 4.8))
        try:
            _draw(ax, data, x, higher, palette, markers)
            ax.set_xlabel(label.format(batch=batch))
            ax.set_ylabel("top-1 accuracy (%)")
            ax.set_title(mpl(group.get("title", "")), fontsize=10)
            ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8, frameon=False)
            for ext in ("png", "svg"):
                path = out / f"{stem}_{suffix}.{ext}"
                fig.savefig(path, dpi=150, bbox_inches="tight")
                written.append(path)
        finally:
            plt.close(fig)
    return written


def _draw(ax, data: pd.DataFrame, x: str, higher: bool, palette: dict, markers: dict) -> None:
    pct = 100 * data["top1"].to_numpy(dtype=float)
    low = 100 * data["top1_ci_low"].to_numpy(dtype=float)
    high = 100 * data["top1_ci_high"].to_numpy(dtype=float)
    yerr = np.vstack([np.where(np.isnan(low), 0, pct - low), np.where(np.isnan(high), 0, high - pct)])
    xs = data[x].to_numpy(dtype=float)
    dense = (data["method"] == "dense").to_numpy()
    for method in palette:
        sel = (data["method"] == method).to_numpy()
        if not sel.any():
            continue
        order = np.argsort(xs[sel], kind="stable")
        mx, my = xs[sel][order], pct[sel][order]
        ax.errorbar(mx, my, yerr=yerr[:, sel][:, order], color=palette[method], marker=markers[method],
                    markersize=6, linewidth=1.2, capsize=3, elinewidth=0.8, label=mpl(method), zorder=3)
    on = frontier(data, x=x, y="top1", higher_is_better=higher).to_numpy()
    if on.sum() >= 1:
        order = np.argsort(xs[on], kind="stable")
        ax.plot(xs[on][order], pct[on][order], linestyle="--", color="0.25", linewidth=1.0,
                label="Pareto frontier", zorder=2)
    if x == "gmacs_per_view" and "method_name" in data.columns:
        base = baseline_frontier(data, x=x)
        if len(base) >= 2:
            ax.plot([p[0] for p in base], [100 * p[1] for p in base], linestyle=":", color="crimson",
                    linewidth=1.6, label="baseline frontier (dense, downsample, random_drop)", zorder=2)
    if dense.any():
        ax.scatter(xs[dense], pct[dense], s=220, facecolors="none", edgecolors="crimson", linewidths=1.8,
                   label="dense (no reduction)", zorder=4)
