from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from harness.report import COLUMNS, empty_message, latest_per_key, leaderboard, render

TINY = {"name": "synthetic_vit_tiny", "checkpoint": "checkpoints/x.pth", "embed_dim": 192, "depth": 12}
SMALL = {"name": "synthetic_vit_small", "checkpoint": None, "embed_dim": 384, "depth": 12}
MOTION = {"name": "synthetic_motion", "split": "val", "num_clips": 2, "num_crops": 1}
EVAL = {"batch_size": 4, "precision": "fp32"}
MEASURE = {"batch_size": 8, "repeats": 3}


def cell(key, method="dense", params=None, label=None, backbone=TINY, top1=0.80, gmacs=100.0, clips=50.0,
         status="ok", error=None, finished_at="2024-05-01T10:00:00+00:00", **metrics):
    metrics = {"top1": top1, "top5": min(1.0, top1 + 0.15), "num_videos": 600, "views_per_video": 2,
               "gmacs_per_view": gmacs, "gflops_per_view": 2 * gmacs, "gmacs_per_video": 2 * gmacs,
               "clips_per_s": clips, "clips_per_s_iqr": 1.0, "throughput_batch_size": 8,
               "peak_mem_gib": 1.5, "peak_mem_kind": "cuda_max_allocated", **metrics}
    return {
        "schema": 1, "key": key, "status": status, "error": error,
        "suite": {"name": "smoke", "file": "suites/smoke.yaml"},
        "config": {"backbone": dict(backbone), "dataset": dict(MOTION),
                   "method": {"name": method, "params": params or {}}, "eval": dict(EVAL), "measure": dict(MEASURE)},
        "label": label, "metrics": metrics if status == "ok" else {},
        "coverage": {"listed": 600, "decoded": 598, "failed": 2, "failed_videos": ["a.mp4", "b.mp4"]},
        "provenance": {"git_hash": "abc"}, "finished_at": finished_at,
    }


@pytest.fixture
def records():
    return [
        cell("k-tome16", "tome", {"r": 16}, label="tome r=16", top1=0.70, gmacs=40.0, clips=120.0),
        cell("k-dense", top1=0.80, gmacs=100.0, clips=50.0),
        cell("k-tome8", "tome", {"r": 8}, top1=0.78, gmacs=60.0, clips=80.0),
        cell("k-fail", "halting", {"threshold": 0.9}, status="failed",
             error={"type": "OutOfMemoryError", "message": "CUDA out of memory"}),
        cell("k-small-tome", "tome", {"r": 8}, backbone=SMALL, top1=0.6, gmacs=30.0, clips=20.0),
    ]


def tiny_table(records):
    tables = dict((g["title"], df) for g, df in leaderboard(records))
    return tables["synthetic_vit_tiny (x.pth) on synthetic_motion [val]"].set_index("settings")


def test_one_table_per_backbone_and_dataset(records):
    tables = leaderboard(records)
    assert [g["title"] for g, _ in tables] == [
        "synthetic_vit_small on synthetic_motion [val]",
        "synthetic_vit_tiny (x.pth) on synthetic_motion [val]",
    ]
    group, df = tables[1]
    assert (group["backbone"], group["checkpoint"], group["dataset"]) == ("synthetic_vit_tiny", "checkpoints/x.pth",
                                                                          "synthetic_motion")
    assert list(df.columns) == COLUMNS
    assert len(df) == 4


def test_dense_first_then_gmacs_descending_failed_last(records):
    df = tiny_table(records)
    assert list(df["method"]) == ["dense", "tome", "tome", "halting"]
    assert list(df.index) == ["-", "r=8", "r=16", "threshold=0.9"]


def test_relative_columns_against_dense(records):
    df = tiny_table(records)
    assert df.loc["-", "delta_top1"] == pytest.approx(0.0)
    assert df.loc["-", "speedup"] == pytest.approx(1.0)
    assert df.loc["r=8", "delta_top1"] == pytest.approx(-0.02)
    assert df.loc["r=16", "delta_top1"] == pytest.approx(-0.10)
    assert df.loc["r=8", "gmacs_ratio"] == pytest.approx(0.6)
    assert df.loc["r=16", "gmacs_ratio"] == pytest.approx(0.4)
    assert df.loc["r=8", "speedup"] == pytest.approx(1.6)
    assert df.loc["r=16", "speedup"] == pytest.approx(2.4)
    assert df.loc["r=16", "top1"] == pytest.approx(0.70)  # raw fraction, not percent


def test_no_dense_leaves_relative_columns_blank(records):
    small = dict((g["backbone"], df) for g, df in leaderboard(records))["synthetic_vit_small"]
    assert small["delta_top1"].isna().all() and small["speedup"].isna().all() and small["gmacs_ratio"].isna().all()
    assert small["top1"].iloc[0] == pytest.approx(0.6)


def test_dense_must_share_eval_settings(records):
    other_eval = cell("k-tome8-lim", "tome", {"r": 8}, top1=0.77, gmacs=60.0)
    other_eval["config"]["eval"]["limit"] = 7
    df = tiny_table(records + [other_eval]).reset_index()
    row = df[df["key"] == "k-tome8-lim"].iloc[0]
    assert pd.isna(row["delta_top1"]) and pd.isna(row["gmacs_ratio"])


def test_regimes_get_their_own_tables(records):
    bf16 = cell("k-tome8-bf16", "tome", {"r": 8}, top1=0.77, gmacs=60.0)
    bf16["config"]["eval"]["precision"] = "bf16"
    compiled = cell("k-dense-c", "dense", {}, top1=0.8, gmacs=100.0)
    compiled["config"]["measure"]["compile"] = "default"
    groups = {g["title"]: (g, df) for g, df in leaderboard(records + [bf16, compiled])}
    base = "synthetic_vit_tiny (x.pth) on synthetic_motion [val]"
    assert {base, base + " [bf16]", base + " [fp32, compile default]"} <= set(groups)
    group, df = groups[base + " [bf16]"]
    assert group["regime"] == {"precision": "bf16", "compile": "off", "sdpa_backend": "auto"}
    assert list(df["key"]) == ["k-tome8-bf16"] and pd.isna(df["delta_top1"].iloc[0])  # never against fp32 dense
    assert "k-tome8-bf16" not in set(groups[base][1]["key"])
    from harness.report import render

    only_bf16 = render(records + [bf16, compiled], "csv", filters={"precision": ["bf16"]})
    assert "k-tome8-bf16" in only_bf16 and "k-dense-c" not in only_bf16
    eager_fp32 = render(records + [bf16, compiled], "csv", filters={"precision": ["fp32"], "compile": ["off"]})
    assert "k-tome8-bf16" not in eager_fp32 and "k-dense-c" not in eager_fp32 and records[0]["key"] in eager_fp32


def test_speedup_needs_same_measure_settings(records):
    bs32 = cell("k-tome8-bs32", "tome", {"r": 8}, top1=0.78, gmacs=60.0, clips=200.0)
    bs32["config"]["measure"]["batch_size"] = 32
    df = tiny_table(records + [bs32]).reset_index()
    row = df[df["key"] == "k-tome8-bs32"].iloc[0]
    assert row["delta_top1"] == pytest.approx(-0.02)
    assert pd.isna(row["speedup"])


def test_failed_cell_is_a_row_with_blanks(records):
    row = tiny_table(records).loc["threshold=0.9"]
    assert row["status"] == "failed: OutOfMemoryError"
    assert row["error_message"] == "CUDA out of memory"
    assert pd.isna(row["top1"]) and pd.isna(row["gmacs_per_view"]) and pd.isna(row["speedup"])
    text = render(records, "term")
    assert "failed: OutOfMemoryError" in text


def test_failed_dense_is_not_a_baseline():
    recs = [cell("d", status="failed", error={"type": "RuntimeError", "message": "x"}),
            cell("t", "tome", {"r": 8}, gmacs=60.0)]
    (_, df), = leaderboard(recs)
    assert df["delta_top1"].isna().all()
    assert list(df["status"]) == ["failed: RuntimeError", "ok"]


def test_latest_record_per_key_wins(records):
    newer = cell("k-tome8", "tome", {"r": 8}, top1=0.79, gmacs=60.0, finished_at="2024-05-02T09:00:00Z")
    older = cell("k-tome8", "tome", {"r": 8}, top1=0.10, gmacs=60.0, finished_at="2024-04-01T09:00:00")
    for recs in (records + [newer, older], [older, newer] + records):
        assert tiny_table(recs).loc["r=8", "top1"] == pytest.approx(0.79)
    assert len(latest_per_key(records + [newer, older])) == len(records)


def test_label_gives_settings_and_params_otherwise(records):
    df = tiny_table(records)
    assert "r=16" in df.index  # from label "tome r=16"
    assert "r=8" in df.index  # from params
    custom = cell("k-custom", "tome", {"r": [8, 4]}, label="ToMe paper schedule")
    listed = cell("k-list", "tome", {"r": [8, 4], "prop_attn": True})
    settings = set(tiny_table([custom, listed]).index)
    assert settings == {"ToMe paper schedule", "r=[8,4], prop_attn=true"}


def test_groups_split_on_any_config_difference(records):
    other = cell("k-dense-3clips")
    other["config"]["dataset"]["num_clips"] = 3
    titles = [g["title"] for g, _ in leaderboard(records + [other])]
    assert len(titles) == 3 and len(set(titles)) == 3
    assert any("dataset.num_clips=3" in t for t in titles)


def test_missing_fields_do_not_crash():
    odd = {"status": "failed", "error": "boom", "config": {"method": {"name": "x", "params": [1]}}}
    tables = leaderboard([{"key": "bare"}, {"status": "ok", "metrics": {"top1": "n/a"}}, {}, odd])
    assert len(tables) == 1
    assert render([{"key": "bare"}], "term")


def test_term_format(records):
    text = render(records, "term")
    assert "synthetic_vit_tiny (x.pth) on synthetic_motion [val]" in text
    for header in ("top-1 %", "Δtop-1 pp", "GMACs/view", "GMACs ratio", "clips/s", "speedup", "peak GiB", "coverage"):
        assert header in text
    assert "-2.0" in text and "0.60x" in text and "2.40x" in text and "598/600" in text and "78.0" in text
    assert "clips/s and ms/batch (median forward time of one batch) at batch size 8" in text


def test_md_format(records):
    text = render(records, "md")
    assert "### synthetic_vit_tiny (x.pth) on synthetic_motion [val]" in text
    lines = text.splitlines()
    separator = next(i for i, line in enumerate(lines) if line.startswith("|--") or line.startswith("|:-"))
    header = [cell.strip() for cell in lines[separator - 1].strip("|").split("|")]
    assert header[:5] == ["method", "settings", "top-1 %", "95% CI", "top-5 %"] and header[-1] == "status"
    assert text.count("### ") == 2


def test_csv_format_parses_with_group_columns_first(records):
    df = pd.read_csv(io.StringIO(render(records, "csv")))
    assert list(df.columns[:3]) == ["backbone", "checkpoint", "dataset"]
    assert len(df) == 5
    tome16 = df[df["key"] == "k-tome16"].iloc[0]
    assert tome16["top1"] == pytest.approx(0.70) and tome16["speedup"] == pytest.approx(2.4)
    assert tome16["coverage_decoded"] == 598 and tome16["checkpoint"] == "checkpoints/x.pth"


def test_json_format_parses_with_raw_values(records):
    rows = json.loads(render(records, "json"))
    assert len(rows) == 5
    by_key = {r["key"]: r for r in rows}
    assert by_key["k-tome8"]["top1"] == pytest.approx(0.78)
    assert by_key["k-tome8"]["gmacs_ratio"] == pytest.approx(0.6)
    assert by_key["k-tome8"]["dataset"] == "synthetic_motion"
    assert by_key["k-tome8"]["coverage_listed"] == 600 and isinstance(by_key["k-tome8"]["coverage_listed"], int)
    assert by_key["k-fail"]["top1"] is None and by_key["k-fail"]["status"] == "failed: OutOfMemoryError"
    assert by_key["k-small-tome"]["checkpoint"] is None and by_key["k-small-tome"]["speedup"] is None


@pytest.mark.parametrize("fmt", ["term", "md", "csv", "json"])
def test_empty_store_gives_one_line_message(fmt):
    text = render([], fmt)
    assert text == empty_message() and "\n" not in text
    assert "python -m harness run SUITE" in text and "results/" in text


def test_unknown_format_is_rejected(records):
    with pytest.raises(ValueError, match="term, md, csv, json"):
        render(records, "pdf")


def test_report_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, harness.report, harness.store; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_wilson_interval_and_paired_test_against_dense(records):
    # dense right on videos 0-9; tome r=16 right on 0-1 and 10-11: 8 discordant for dense, 2 for tome
    rows = {"k-dense": [{"index": i, "pred": 0 if i < 10 else 1, "correct_top1": int(i < 10)} for i in range(12)],
            "k-tome16": [{"index": i, "pred": 0 if i < 2 or i >= 10 else 2, "correct_top1": int(i < 2 or i >= 10)}
                         for i in range(12)]}
    table = dict((g["title"], df) for g, df in leaderboard(records, samples=lambda k: rows.get(k, [])))
    df = table["synthetic_vit_tiny (x.pth) on synthetic_motion [val]"].set_index("key")
    tome16 = df.loc["k-tome16"]
    assert tome16["p_vs_dense"] == pytest.approx(2 * (1 + 10 + 45) / 1024)  # exact McNemar, b=2, c=8
    assert tome16["agreement_vs_dense"] == pytest.approx(2 / 12)
    assert pd.isna(df.loc["k-dense"]["p_vs_dense"]) and pd.isna(df.loc["k-tome8"]["p_vs_dense"])  # no samples
    assert tome16["top1_ci_low"] < 0.70 < tome16["top1_ci_high"]
    assert "McNemar" in render(records, "term", samples=lambda k: rows.get(k, []))


def test_adaptive_gmacs_statistics_and_display_names_on_the_leaderboard(records, monkeypatch):
    import methods

    theoretical = {"mean": 31.5, "std": 4.25, "p95": 38.0, "p50": 31.0, "min": 20.0, "max": 40.0, "count": 600}
    records.append(cell("k-halt", "dense", {}, label="halting beta=5", top1=0.75, gmacs=100.0,
                        gmacs_theoretical=theoretical))
    records[-1]["config"]["method"]["name"] = "tome"  # any registered method; the title comes from its spec
    spec = methods.get_method("tome")
    monkeypatch.setattr(type(spec), "title", property(lambda self: "ToMe (display)"))
    df = tiny_table(records)
    row = df.loc["halting beta=5"]
    assert (row["gmacs_theoretical_mean"], row["gmacs_theoretical_std"], row["gmacs_theoretical_p95"]) == (31.5, 4.25, 38.0)
    assert row["method"] == "ToMe (display)" and row["method_name"] == "tome"
    assert pd.isna(df.loc["-", "gmacs_theoretical_mean"])
    text = render(records, "term")
    assert "31.5±4.25 p95 38.0" in text and "adaptive GMACs" in text
    only = render(records, "csv", filters={"method": ["tome"]})
    assert "ToMe (display)" in only and "halting" not in only.split("ToMe (display)")[0]


def test_batch_latency_is_the_median_forward_time_over_all_repeats(records):
    records[1]["metrics"]["iteration_times_s"] = [[0.010, 0.030], [0.020, 0.040, 0.050]]
    df = tiny_table(records)
    assert df.loc["-", "latency_ms"] == pytest.approx(30.0)
    assert pd.isna(df.loc["r=8", "latency_ms"])
    assert "ms/batch" in render(records, "term")


def test_unreliable_timing_flags_the_speedup_in_every_format():
    from harness.report import render

    def record(key, method, params, clips, warnings):
        return {"key": key, "status": "ok", "label": method, "finished_at": "2026-01-01T00:00:00+00:00",
                "config": {"backbone": {"name": "b"}, "dataset": {"name": "d"}, "eval": {}, "measure": {},
                           "method": {"name": method, "params": params}},
                "metrics": {"top1": 0.5, "num_videos": 10, "gmacs_per_view": 1.0 if method == "dense" else 0.5,
                            "clips_per_s": clips, "timing": {"reliable": not warnings, "warnings": warnings}}}

    records = [record("a" * 64, "dense", {}, 100.0, []),
               record("b" * 64, "tome", {"r": 8}, 150.0, ["load average up to 5.0 on 2 cores while timing"])]
    term = render(records, "term")
    assert "1.50x?" in term and "speedup ?: unreliable" in term
    assert "1.50x?" in render(records, "md") and "1.50x?" in render(records, "latex")
    rows = json.loads(render(records, "json"))
    assert [r["speedup_unreliable"] for r in rows] == [False, True]
    assert "load average" in rows[1]["timing_warnings"]
    assert "speedup_unreliable" in render(records, "csv").splitlines()[0]


def test_best_method_per_budget_lines(records):
    from harness.report.pareto import best_per_budget

    records.append(cell("k-down", "downsample", {"size": 48}, top1=0.79, gmacs=50.0))
    df = tiny_table(records).reset_index()
    verdict = {v["ratio"]: v for v in best_per_budget(df)}
    # <= 0.75x: tome r=8 (0.78 at 0.6x) loses to downsample (0.79 at 0.5x), whose CI covers it: tied
    assert verdict[0.75]["best"]["key"] == "k-down" and verdict[0.75]["baseline_wins"]
    assert verdict[0.75]["runner_up"]["key"] == "k-tome8" and verdict[0.75]["tied"]
    assert verdict[0.5]["best"]["key"] == "k-down" and verdict[0.5]["runner_up"]["key"] == "k-tome16"
    assert not verdict[0.5]["tied"]  # 70% against 79% on 600 videos: separable
    assert verdict[0.25]["best"] is None
    text = render(records, "term")
    assert "best at ≤ 0.75x dense GMACs: downsample size=48 79.0%" in text and "not separable" in text
    assert "best at ≤ 0.25x dense GMACs: no row" in text
    assert "- best at ≤ 0.50x dense GMACs: downsample" in render(records, "md")


def _timed(key, method, params, rates, session="s1", loads=(0.5, 0.5, 0.5), cores=2):
    return {"key": key, "status": "ok", "label": method, "finished_at": "2026-01-01T00:00:00+00:00",
            "config": {"backbone": {"name": "b"}, "dataset": {"name": "d"}, "eval": {}, "measure": {},
                       "method": {"name": method, "params": params}},
            "metrics": {"top1": 0.5, "num_videos": 10, "gmacs_per_view": 1.0 if method == "dense" else 0.5,
                        "clips_per_s": sorted(rates)[len(rates) // 2], "clips_per_s_repeats": list(rates),
                        "timing": {"reliable": True, "warnings": [], "session": session, "cores": cores,
                                   "load_avg_per_repeat": list(loads)}}}


def test_speedup_is_the_median_of_paired_repeat_ratios_with_a_seeded_interval():
    # dense's repeats swing by 2x (load), the method's swing with them: each repeat's ratio is 1.5
    records = [_timed("a" * 64, "dense", {}, [100.0, 50.0, 80.0]),
               _timed("b" * 64, "tome", {"r": 8}, [150.0, 75.0, 120.0])]
    rows = json.loads(render(records, "json"))
    tome = rows[1]
    assert tome["speedup"] == pytest.approx(1.5) and tome["speedup_paired"] is True
    assert tome["speedup_ci_low"] == pytest.approx(1.5) and tome["speedup_ci_high"] == pytest.approx(1.5)
    assert tome["speedup_unreliable"] is False  # spread repeats, but their ratios agree
    assert "1.50x [1.50-1.50]" in render(records, "term") and rows == json.loads(render(records, "json"))
    header = render(records, "csv").splitlines()[0].split(",")
    assert {"speedup_ci_low", "speedup_ci_high", "speedup_paired", "speedup_unreliable"} <= set(header)


def test_a_wide_interval_or_an_overloaded_machine_flags_the_speedup():
    dense = _timed("a" * 64, "dense", {}, [100.0] * 5)
    noisy = _timed("b" * 64, "tome", {"r": 8}, [100.0, 150.0, 200.0, 120.0, 180.0])
    rows = json.loads(render([dense, noisy], "json"))
    assert rows[1]["speedup_unreliable"] is True and rows[1]["speedup_ci_high"] > 1.1 * rows[1]["speedup"]
    busy = _timed("b" * 64, "tome", {"r": 8}, [150.0] * 5, loads=(0.5, 3.5, 0.5))
    assert json.loads(render([_timed("a" * 64, "dense", {}, [100.0] * 5, loads=(0.5, 3.5, 0.5)), busy],
                             "json"))[1]["speedup_unreliable"] is True
    assert "1.50x [1.50-1.50]?" in render([dense | {}, busy], "term")


def test_repeats_of_different_runs_are_compared_unpaired():
    records = [_timed("a" * 64, "dense", {}, [100.0, 50.0, 80.0], session="run1"),
               _timed("b" * 64, "tome", {"r": 8}, [150.0, 75.0, 120.0], session="run2")]
    tome = json.loads(render(records, "json"))[1]
    assert tome["speedup_paired"] is False and tome["speedup"] == pytest.approx(120.0 / 80.0)
    assert tome["speedup_ci_low"] < 1.5 < tome["speedup_ci_high"]
    assert "~?" in render(records, "term") and "compared unpaired" in render(records, "term")


def test_agreement_interval_and_flip_counts_in_every_format(records):
    # dense right on videos 0-9; tome r=16 right on 0-1 and 10-11: 8 right->wrong, 2 wrong->right
    rows = {"k-dense": [{"index": i, "pred": 0 if i < 10 else 1, "correct_top1": int(i < 10)} for i in range(12)],
            "k-tome16": [{"index": i, "pred": 0 if i < 2 or i >= 10 else 2, "correct_top1": int(i < 2 or i >= 10)}
                         for i in range(12)]}
    samples = lambda k: rows.get(k, [])  # noqa: E731
    csv_rows = list(pd.read_csv(io.StringIO(render(records, "csv", samples=samples))).itertuples())
    tome16 = next(r for r in csv_rows if r.key == "k-tome16")
    assert (tome16.flips_right_to_wrong, tome16.flips_wrong_to_right) == (8, 2)
    assert tome16.agreement_ci_low < 2 / 12 < tome16.agreement_ci_high
    got = next(r for r in json.loads(render(records, "json", samples=samples)) if r["key"] == "k-tome16")
    assert got["flips_right_to_wrong"] == 8 and got["agreement_ci_low"] == pytest.approx(tome16.agreement_ci_low)
    for fmt in ("term", "md", "latex"):
        text = render(records, fmt, samples=samples)
        assert "16.7 [" in text and "8/2" in text, fmt


def test_html_page_shows_the_agreement_interval_flips_and_speedup_interval(records):
    pytest.importorskip("matplotlib")
    rows = {"k-dense": [{"index": i, "pred": 0, "correct_top1": 1} for i in range(4)],
            "k-tome8": [{"index": i, "pred": int(i == 0), "correct_top1": int(i != 0)} for i in range(4)]}
    page = render(records, "html", samples=lambda k: rows.get(k, []))
    assert "75.0 [" in page and "1/0" in page and "flips -/+" in page


def test_each_repeat_counts_its_median_forward_so_one_preempted_forward_does_not_move_the_speedup():
    dense = _timed("a" * 64, "dense", {}, [80.0] * 3)
    tome = _timed("b" * 64, "tome", {"r": 8}, [120.0] * 3)
    dense["metrics"].update(throughput_batch_size=8, iteration_times_s=[[0.1, 0.1, 0.1], [0.1, 0.1, 0.1], [0.2] * 3])
    tome["metrics"].update(throughput_batch_size=8,
                           iteration_times_s=[[0.05, 0.05, 0.05], [0.05, 0.05, 2.0], [0.1] * 3])  # 2.0: preempted
    row = json.loads(render([dense, tome], "json"))[1]
    assert row["speedup"] == pytest.approx(2.0) and row["speedup_ci_low"] == row["speedup_ci_high"] == pytest.approx(2.0)
