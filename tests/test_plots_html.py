from __future__ import annotations

import re

import pytest

from harness.report import leaderboard, prepare, render
from tests.test_report import SMALL, cell

EVIL = "<script>alert(1)</script>"


@pytest.fixture
def records():
    return [
        cell("k-dense", top1=0.80, gmacs=100.0, clips=50.0),
        cell("k-tome8", "tome", {"r": 8}, top1=0.78, gmacs=60.0, clips=80.0),
        cell("k-tome16", "tome", {"r": 16}, label=f"tome {EVIL}", top1=0.70, gmacs=40.0, clips=120.0),
        cell("k-rand", "random_drop", {"keep": 0.5}, top1=0.60, gmacs=50.0, clips=95.0),
        cell("k-fail", "halting", {"threshold": 0.9}, status="failed",
             error={"type": "RuntimeError", "message": f"bad {EVIL} & worse"}),
        cell("k-small-tome", "tome", {"r": 8}, backbone=SMALL, top1=0.6, gmacs=30.0, clips=20.0),
    ]


def test_pareto_column_and_front_marker(records):
    tables = dict((g["backbone"], df.set_index("key")) for g, df in leaderboard(records))
    tiny = tables["synthetic_vit_tiny"]
    assert tiny["pareto"].to_dict() == {"k-dense": True, "k-tome8": True, "k-tome16": True, "k-rand": False,
                                        "k-fail": False}
    text = render(records, "md")
    header = next(line for line in text.splitlines() if line.startswith("| method"))
    assert "front" in header
    rand = next(line for line in text.splitlines() if line.startswith("| random_drop"))
    tome8 = next(line for line in text.splitlines() if "| r=8" in line and "78.0" in line)
    assert "*" in tome8 and "*" not in rand


def test_budget_table_in_text(records):
    text = render(records, "term", budget="gmacs=50")
    assert "accuracy at matched budget: GMACs/view = 50" in text
    tome = next(line for line in text.splitlines() if line.startswith("tome") and "interpolated" in line)
    assert "74.0" in tome  # halfway between (40, 70%) and (60, 78%)
    assert "not extrapolated" in render(records, "md", budget="clips_per_s=1000")
    with pytest.raises(ValueError, match="bad budget"):
        render(records, "term", budget="speed=3")


def test_filters_and_sort(records):
    assert len(prepare(records, filters={"backbone": "synthetic_vit_small"})) == 1
    assert prepare(records, filters={"suite": "nope"}) == []
    assert "no records match" in render(records, "term", filters={"dataset": "kinetics"})
    (_, df), = prepare(records, filters={"method": ["tome"], "backbone": ["synthetic_vit_tiny"]})
    assert set(df["method"]) == {"tome"} and df["delta_top1"].notna().all()  # dense still the baseline
    (_, df), = prepare(records, filters={"backbone": "synthetic_vit_tiny"}, sort="-top1")
    assert list(df["key"]) == ["k-dense", "k-tome8", "k-tome16", "k-rand", "k-fail"]
    (_, df), = prepare(records, filters={"backbone": "synthetic_vit_tiny"}, sort="gmacs_per_view")
    assert list(df["key"]) == ["k-tome16", "k-rand", "k-tome8", "k-dense", "k-fail"]
    with pytest.raises(ValueError, match="sort column"):
        prepare(records, sort="nope")
    with pytest.raises(ValueError, match="filter"):
        prepare(records, filters={"colour": "red"})


def test_latex_format(records):
    text = render(records, "latex", budget="gmacs=50")
    assert text.count("\\begin{tabular}") == 4 and text.count("\\toprule") == 4
    assert "\\caption{synthetic\\_vit\\_tiny (x.pth) on synthetic\\_motion [val]}" in text
    assert "$\\Delta$top-1 pp" in text and "Δ" not in text
    assert EVIL not in text


def test_plots_written(records, tmp_path):
    from harness.report.plots import plot_group

    group, df = leaderboard(records)[1]
    paths = plot_group(group, df, tmp_path / "p", "tiny")
    assert sorted(p.name for p in paths) == ["tiny_gmacs.png", "tiny_gmacs.svg", "tiny_throughput.png",
                                             "tiny_throughput.svg"]
    for p in paths:
        assert p.stat().st_size > 1000
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = (tmp_path / "p" / "tiny_gmacs.svg").read_text()
    assert "<svg" in svg and EVIL not in svg


def test_html_is_escaped_and_self_contained(records):
    page = render(records, "html", budget="gmacs=50")
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<table>") == 2 * 2  # per group: leaderboard + budget table
    assert page.count("<section") == 2
    assert page.count('src="data:image/png;base64,') == 4
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # label and error message, escaped
    assert "bad &lt;script&gt;" in page and "&amp; worse" in page
    assert not re.search(r'(src|href)="(http|//)', page)  # nothing loaded from elsewhere


def test_html_one_table_per_group_without_budget(records):
    page = render(records, "html")
    assert page.count("<table>") == 2


def test_cli_report_html_out_and_plots(records, tmp_path, capsys):
    from harness.cli import main
    from harness.store import ResultStore

    store = ResultStore(tmp_path / "results")
    for rec in records:
        store.write(rec)
    out = tmp_path / "r" / "report.html"
    plots = tmp_path / "plots"
    assert main(["report", "--results", str(store.root), "--format", "html", "--out", str(out),
                 "--plots", str(plots), "--budget", "gmacs=50"]) == 0
    page = out.read_text()
    assert page.count("<section") == 2 and "<script" not in page.lower()
    assert len(list(plots.glob("*.png"))) == 4 and len(list(plots.glob("*.svg"))) == 4
    assert main(["report", "--results", str(store.root), "--format", "latex", "--method", "tome",
                 "--sort=-top1"]) == 0
    text = capsys.readouterr().out
    assert "\\caption{" in text and "random" not in text
    assert main(["report", "--results", str(store.root), "--sort", "nope"]) == 2
    assert main(["report", "--results", str(store.root), "--format", "csv", "--out", str(tmp_path / "r.csv")]) == 0
    assert "pareto" in (tmp_path / "r.csv").read_text().splitlines()[0]
