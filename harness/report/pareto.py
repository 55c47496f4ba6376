"""Accuracy-cost trade-offs of leaderboard rows (pure pandas/numpy, torch-free).

``frontier`` marks the Pareto-optimal rows; ``at_budget`` reads every method's accuracy at one
matched cost (or throughput) by linear interpolation along that method's own curve;
``baseline_frontier`` / ``versus_baselines`` compare every row with the best of doing less work
(dense, input downsampling, random dropping) at the same GMACs.
"""
from __future__ import annotations

import math
import typing as tp

import numpy as np
import pandas as pd

BUDGET_AXES: tp.Dict[str, tp.Tuple[str, bool]] = {  # budget name -> (column, higher_is_better)
    "gmacs": ("gmacs_per_view", False), "gmacs_per_view": ("gmacs_per_view", False),
    "clips": ("clips_per_s", True), "clips_per_s": ("clips_per_s", True), "clips/s": ("clips_per_s", True),
}


def _usable(df: pd.DataFrame, x: str, y: str) -> pd.Series:
    """Rows that can take part: status ok (when there is a status column) and finite x and y."""
    xs = pd.to_numeric(df[x], errors="coerce").astype("float64")
    ys = pd.to_numeric(df[y], errors="coerce").astype("float64")
    ok = np.isfinite(xs.to_numpy()) & np.isfinite(ys.to_numpy())
    if "status" in df.columns:
        ok &= (df["status"] == "ok").to_numpy()
    return pd.Series(ok, index=df.index)


def frontier(df: pd.DataFrame, x: str = "gmacs_per_view", y: str = "top1",
             higher_is_better: bool = False) -> pd.Series:
    """Boolean Series (same index as ``df``): is the row on the Pareto frontier of ``y`` (higher is better)
    against ``x`` (lower is better, unless ``higher_is_better``)?

    A usable row is on it unless another usable row is at least as good on both axes and strictly better
    on one. Exact ties are all on it. Failed rows and rows with a missing value never are.
    """
    usable = _usable(df, x, y)
    on = pd.Series(False, index=df.index)
    if not usable.any():
        return on
    xs = pd.to_numeric(df.loc[usable, x], errors="coerce").to_numpy(dtype=float)
    ys = pd.to_numeric(df.loc[usable, y], errors="coerce").to_numpy(dtype=float)
    cost = -xs if higher_is_better else xs
    # dominated[i] <=> some j with cost_j <= cost_i, y_j >= y_i and one strict
    no_worse = (cost[None, :] <= cost[:, None]) & (ys[None, :] >= ys[:, None])
    strict = (cost[None, :] < cost[:, None]) | (ys[None, :] > ys[:, None])
    dominated = (no_worse & strict).any(axis=1)
    on.loc[usable[usable].index] = ~dominated
    return on


BASELINES = ("dense", "downsample", "random_drop")  # doing less work: the verdict's reference line


def baseline_frontier(df: pd.DataFrame, x: str = "gmacs_per_view", y: str = "top1",
                      baselines: tp.Sequence[str] = BASELINES, name: str = "method_name") -> list[tuple[float, float]]:
    """The accuracy-cost frontier of the baseline rows: ``[(x, y), ...]`` sorted by ``x``, each point
    better than every cheaper one (the upper-left envelope of the usable baseline rows)."""
    usable = _usable(df, x, y) & df[name].isin(list(baselines))
    rows = df.loc[usable]
    on = frontier(rows, x, y)
    points = sorted({(float(a), float(b)) for a, b in zip(rows.loc[on, x], rows.loc[on, y])})
    return [(a, b) for a, b in points if not any(c <= a and d > b for c, d in points if (c, d) != (a, b))]


def versus_baselines(df: pd.DataFrame, x: str = "gmacs_per_view", y: str = "top1",
                     baselines: tp.Sequence[str] = BASELINES, name: str = "method_name") -> pd.Series:
    """Per row: its ``y`` minus the baseline frontier's ``y`` linearly interpolated at its ``x``.

    NaN for the baseline rows themselves, for rows that are not usable, and outside the frontier's
    ``x`` range (never extrapolated; a frontier of one point only judges rows at exactly its cost).
    A negative value: the method is worse than doing less work at the same compute.
    """
    points = baseline_frontier(df, x, y, baselines, name)
    out = pd.Series(np.nan, index=df.index, dtype="float64")
    if not points:
        return out
    xs = np.array([p[0] for p in points])
    ys = np.array([p[1] for p in points])
    usable = _usable(df, x, y) & ~df[name].isin(list(baselines))
    for i in df.index[usable]:
        at = float(df.at[i, x])
        if xs[0] <= at <= xs[-1]:
            out.at[i] = float(df.at[i, y]) - float(np.interp(at, xs, ys))
    return out


VERDICT_BUDGETS = (0.75, 0.5, 0.25)  # fractions of dense GMACs/view for the "best method per budget" lines


def best_per_budget(df: pd.DataFrame, ratios: tp.Sequence[float] = VERDICT_BUDGETS, x: str = "gmacs_ratio",
                    y: str = "top1", baselines: tp.Sequence[str] = BASELINES,
                    name: str = "method_name") -> tp.List[dict]:
    """For each budget (``x`` at most ``ratio``, dense = 1): the usable non-dense row with the best ``y``
    and the runner-up, with whether the runner-up's 95% interval reaches the best's point estimate
    (``tied``: the table cannot rank them) and whether the best is a baseline (doing less work wins).

    Returns ``[{"ratio", "best": row | None, "runner_up": row | None, "tied", "baseline_wins"}, ...]``;
    rows are the table's Series. Budgets with no row under them keep ``best = None``.
    """
    usable = _usable(df, x, y) & (df[name] != "dense")
    out = []
    for ratio in ratios:
        under = df.loc[usable & (pd.to_numeric(df[x], errors="coerce") <= ratio)]
        ranked = under.sort_values([y, x], ascending=[False, True])
        best = ranked.iloc[0] if len(ranked) else None
        runner = ranked.iloc[1] if len(ranked) > 1 else None
        tied = bool(runner is not None and "top1_ci_high" in df.columns
                    and pd.notna(runner.get("top1_ci_high")) and runner["top1_ci_high"] >= best[y])
        out.append({"ratio": float(ratio), "best": best, "runner_up": runner, "tied": tied,
                    "baseline_wins": bool(best is not None and best[name] in baselines)})
    return out


def parse_budget(spec: str) -> tp.Tuple[str, float, bool]:
    """``"gmacs=0.12"`` -> ``("gmacs_per_view", 0.12, False)``; ``"clips_per_s=400"`` -> (..., True)."""
    name, sep, value = str(spec).partition("=")
    axis = BUDGET_AXES.get(name.strip().lower())
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not sep or axis is None or not math.isfinite(number):
        raise ValueError(f"bad budget {spec!r}: expected NAME=NUMBER with NAME one of {', '.join(BUDGET_AXES)}"
                         " (e.g. gmacs=0.12 or clips_per_s=400)")
    return axis[0], number, axis[1]


def at_budget(df: pd.DataFrame, budget: float, x: str = "gmacs_per_view", y: str = "top1",
              by: tp.Sequence[str] = ("method",), higher_is_better: bool = False,
              dense: str = "dense") -> pd.DataFrame:
    """Each method's ``y`` at ``x == budget``, linearly interpolated along its curve.

    A method's curve is its usable rows sorted by ``x`` plus the group's dense point (the first usable row
    whose method is ``dense``), shared by all methods with a usable row as their
    zero-reduction end. Rows at the same ``x``
    are averaged. Budgets outside a curve's range give NaN (no extrapolation), explained in ``note``.
    ``higher_is_better`` (e.g. for ``clips_per_s``) only changes the wording of the notes.
    Columns: the ``by`` columns, ``y``, ``note``; one row per group of ``by``, in order of first appearance.
    """
    by = list(by)
    usable = _usable(df, x, y)
    ok = df.loc[usable]
    is_dense = ok["method"] == dense if "method" in ok.columns else pd.Series(False, index=ok.index)
    dense_point = ((float(ok.loc[is_dense, x].iloc[0]), float(ok.loc[is_dense, y].iloc[0]))
                   if is_dense.any() else None)
    out = []
    ok_keys = [tuple(row) for row in ok[by].itertuples(index=False, name=None)]
    keys = list(dict.fromkeys(tuple(row) for row in df[by].itertuples(index=False, name=None)))
    for key in keys:
        points = [(float(a), float(b)) for k, a, b in zip(ok_keys, ok[x], ok[y]) if k == key]
        if points and dense_point is not None and dense_point not in points:
            points.append(dense_point)
        value, note = _interpolate(points, budget, higher_is_better)
        out.append({**dict(zip(by, key)), y: value, "note": note})
    return pd.DataFrame(out, columns=by + [y, "note"])


def _interpolate(points: list[tuple[float, float]], budget: float, higher_is_better: bool) -> tuple[float, str]:
    if not points:
        return math.nan, "no successful runs"
    curve = pd.DataFrame(points, columns=["x", "y"]).groupby("x", sort=True)["y"].mean()
    xs, ys = curve.index.to_numpy(dtype=float), curve.to_numpy(dtype=float)
    lo, hi = xs[0], xs[-1]
    span = f"measured {lo:.4g}" if lo == hi else f"measured {lo:.4g}-{hi:.4g}"
    if budget < lo or budget > hi:
        cheaper = budget > hi if higher_is_better else budget < lo
        side = "cheaper than" if cheaper else "costlier than"
        if higher_is_better:
            side = "faster than" if cheaper else "slower than"
        return math.nan, f"out of range: budget {budget:.4g} {side} any run ({span}); not extrapolated"
    value = float(np.interp(budget, xs, ys))
    exact = bool(np.isclose(xs, budget, rtol=1e-12, atol=0).any())
    return value, "measured" if exact else f"interpolated ({span})"
