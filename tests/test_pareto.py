from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from harness.report.pareto import at_budget, frontier, parse_budget


def frame(rows):
    return pd.DataFrame(rows, columns=["method", "gmacs_per_view", "top1", "clips_per_s", "status"])


@pytest.fixture
def df():
    return frame([
        ("dense", 1.00, 0.80, 100.0, "ok"),
        ("tome", 0.60, 0.78, 160.0, "ok"),
        ("tome", 0.40, 0.70, 240.0, "ok"),
        ("prune", 0.60, 0.75, 150.0, "ok"),   # dominated by tome 0.60/0.78
        ("prune", 0.30, 0.50, 300.0, "ok"),
        ("prune", 0.45, 0.65, 200.0, "ok"),  # dominated by tome 0.40/0.70
        ("halt", 0.10, 0.99, 999.0, "failed: OutOfMemoryError"),  # would dominate all, but failed
        ("halt", math.nan, 0.90, 100.0, "ok"),
    ])


def test_frontier_membership(df):
    on = frontier(df)
    assert list(on) == [True, True, True, False, True, False, False, False]
    assert on.index.equals(df.index) and on.dtype == bool


def test_frontier_ties_and_one_strict_axis():
    d = frame([("a", 1.0, 0.5, 1.0, "ok"), ("b", 1.0, 0.5, 1.0, "ok"),  # exact tie: both on
               ("c", 1.0, 0.4, 1.0, "ok"),  # same cost, lower accuracy: dominated
               ("d", 2.0, 0.5, 1.0, "ok")])  # same accuracy, higher cost: dominated
    assert list(frontier(d)) == [True, True, False, False]


def test_frontier_higher_is_better_throughput(df):
    on = frontier(df, x="clips_per_s", higher_is_better=True)
    # (100,.80) (160,.78) (240,.70) (300,.50) on; (150,.75) and (200,.65) dominated; NaN gmacs row is usable here
    # but (100, .90) dominates dense (100, .80)
    assert list(on) == [False, True, True, False, True, False, False, True]


def test_frontier_empty_and_all_failed():
    assert frontier(frame([])).empty
    assert not frontier(frame([("x", 1.0, 0.5, 1.0, "failed")])).any()


def test_at_budget_interpolates_along_each_method_with_dense_end(df):
    out = at_budget(df, 0.5).set_index("method")
    # tome: (0.4, .70) -> (0.6, .78): halfway = .74
    assert out.loc["tome", "top1"] == pytest.approx(0.74)
    assert out.loc["tome", "note"].startswith("interpolated")
    # prune: (0.45, .65) -> (0.60, .75): 1/3 of the way = .68333
    assert out.loc["prune", "top1"] == pytest.approx(0.65 + 0.10 / 3)
    # dense alone: 0.5 is below its only point
    assert math.isnan(out.loc["dense", "top1"]) and "out of range" in out.loc["dense", "note"]
    # halt has no usable row
    assert math.isnan(out.loc["halt", "top1"]) and out.loc["halt", "note"] == "no successful runs"
    assert list(out.columns) == ["top1", "note"]


def test_at_budget_uses_dense_point_as_curve_end(df):
    out = at_budget(df, 0.8).set_index("method")
    assert out.loc["tome", "top1"] == pytest.approx(0.79)  # between (0.6,.78) and dense (1.0,.80)
    assert at_budget(df, 1.0).set_index("method").loc["dense", "note"] == "measured"


def test_at_budget_out_of_range_is_nan_not_extrapolated(df):
    out = at_budget(df, 0.2).set_index("method")
    assert out["top1"].isna().all()
    assert all("not extrapolated" in n for n in out.loc[["dense", "tome", "prune"], "note"])
    assert at_budget(df, 1.5)["top1"].isna().all()


def test_at_budget_on_throughput(df):
    out = at_budget(df, 200.0, x="clips_per_s", higher_is_better=True).set_index("method")
    # tome curve: (100,.80 dense) (160,.78) (240,.70): at 200 -> .78 - 0.08*40/80 = .74
    assert out.loc["tome", "top1"] == pytest.approx(0.74)
    assert out.loc["prune", "top1"] == pytest.approx(0.65)
    assert "faster than" in at_budget(df, 5000.0, x="clips_per_s", higher_is_better=True)["note"].iloc[0]


def test_parse_budget():
    assert parse_budget("gmacs=0.12") == ("gmacs_per_view", 0.12, False)
    assert parse_budget("clips_per_s=400") == ("clips_per_s", 400.0, True)
    for bad in ("gmacs", "speed=3", "gmacs=abc", "gmacs=nan"):
        with pytest.raises(ValueError, match="bad budget"):
            parse_budget(bad)


def test_at_budget_matches_numpy_on_random_curves():
    rng = np.random.default_rng(0)
    xs = np.sort(rng.uniform(0.1, 1.0, 6))
    ys = rng.uniform(0.3, 0.9, 6)
    d = frame([("m", x, y, 1.0, "ok") for x, y in zip(xs, ys)])
    for b in rng.uniform(xs[0], xs[-1], 10):
        assert at_budget(d, b)["top1"].iloc[0] == pytest.approx(np.interp(b, xs, ys))


def _baselines_table():
    return pd.DataFrame({
        "method_name": ["dense", "downsample", "random_drop", "tome", "sta", "vid_tldr", "rlt", "tome"],
        "gmacs_per_view": [1.0, 0.5, 0.7, 0.75, 0.6, 0.3, 1.2, 0.9],
        "top1": [0.9, 0.8, 0.7, 0.88, 0.80, 0.95, 0.99, 0.5],
        "status": ["ok"] * 7 + ["failed: RuntimeError"],
    })


def test_baseline_frontier_is_the_upper_envelope_of_dense_downsample_and_random_drop():
    from harness.report.pareto import baseline_frontier

    assert baseline_frontier(_baselines_table()) == [(0.5, 0.8), (1.0, 0.9)]  # random_drop is dominated


def test_versus_baselines_interpolates_never_extrapolates_and_skips_baselines():
    from harness.report.pareto import versus_baselines

    delta = versus_baselines(_baselines_table())
    assert delta.iloc[:3].isna().all()  # the baselines themselves
    assert delta.iloc[3] == pytest.approx(0.88 - 0.85)  # frontier at 0.75: halfway between 0.8 and 0.9
    assert delta.iloc[4] == pytest.approx(0.80 - 0.82)  # worse than doing less work
    assert math.isnan(delta.iloc[5]) and math.isnan(delta.iloc[6])  # cheaper / costlier than any baseline
    assert math.isnan(delta.iloc[7])  # a failed row


def test_versus_baselines_without_baselines_is_blank():
    from harness.report.pareto import versus_baselines

    df = _baselines_table()
    df = df[~df["method_name"].isin(["dense", "downsample", "random_drop"])].reset_index(drop=True)
    assert versus_baselines(df).isna().all()
