"""Every report format survives hostile record text (issue 18 item 6) and garbage metrics (item 11)."""
from __future__ import annotations

import csv
import io
import json
import re

import pytest

from harness.report import render
from harness.report.safe import csv_cell, markdown, plain

HOSTILE = ["a|b", "line1\nline2\r\nline3", "<script>alert(1)</script>", "<img src=x onerror=alert(1)>",
           "\x1b[31mred\x1b[0m", "\x1b]0;title\x07", "$\\&%#_{}~^", '=HYPERLINK("http://x")', "+1", "-cmd",
           "@SUM(A1)", "`code`", "\ttab", "\x9b31m", "\u202eevil"]
EVERY = " ".join(HOSTILE)
FORMULA = ("=", "+", "-", "@", "\t", "\r")


def hostile_record(key: str, text: str, method: str = "tome", status: str = "ok") -> dict:
    metrics = {"top1": 0.5, "top5": 0.9, "num_videos": 10, "views_per_video": 1, "gmacs_per_view": 1.0,
               "clips_per_s": 10.0, "throughput_batch_size": 2, "peak_mem_gib": 0.1, "peak_mem_kind": text}
    return {"schema": 1, "key": key, "status": status, "label": f"{method} {text}",
            "error": {"type": text, "message": text} if status == "failed" else None,
            "suite": {"name": text, "file": "x.yaml"},
            "config": {"backbone": {"name": f"bb {text}", "checkpoint": f"/ckpt/{text}.pth"},
                       "dataset": {"name": f"ds {text}", "split": text},
                       "method": {"name": method, "params": {"r": text}}, "eval": {}, "measure": {}},
            "metrics": metrics if status == "ok" else {}, "coverage": {"listed": 10, "decoded": 10},
            "finished_at": "2026-01-01T00:00:00+00:00"}


@pytest.fixture
def records():
    out = [hostile_record("k-dense", EVERY, method="dense"), hostile_record("k-all", EVERY),
           hostile_record("k-fail", EVERY, status="failed")]
    out += [hostile_record(f"k{i}", text) for i, text in enumerate(HOSTILE)]
    out += [hostile_record(f"f{i}", text, status="failed") for i, text in enumerate(HOSTILE)]
    return out


def _cells(line: str) -> list[str]:
    return re.split(r"(?<!\\)\|", line.strip().strip("|"))


def test_markdown_keeps_its_columns_and_passes_no_markup(records):
    text = render(records, "md", budget="gmacs=1.0")
    assert "\x1b" not in text and "<script" not in text.lower() and "<img" not in text.lower()
    assert "\x07" not in text and "\u202e" not in text and "\x9b" not in text
    tables = 0
    for block in text.split("\n\n"):
        lines = [ln for ln in block.splitlines() if ln.startswith("|")]
        if not lines:
            continue
        tables += 1
        widths = {len(_cells(ln)) for ln in lines}
        assert len(widths) == 1, block  # header, separator and every row: one column count
    assert tables >= 2
    for heading in (ln for ln in text.splitlines() if ln.startswith("###")):
        assert "|" not in heading.replace("\\|", "")


def test_markdown_escape_renders_back_to_the_text():
    assert markdown("a|b`c<d>&") == "a\\|b\\`c&lt;d&gt;&amp;"
    assert markdown("x\ny") == "x y"


@pytest.mark.parametrize("fmt", ["term", "latex"])
def test_term_and_latex_carry_no_control_characters(records, fmt):
    text = render(records, fmt, budget="gmacs=1.0")
    controls = [ch for ch in text if (ord(ch) < 32 and ch != "\n") or 0x7f <= ord(ch) <= 0x9f]
    assert not controls
    assert "\u202e" not in text


def test_term_rows_stay_on_one_line(records):
    text = render(records, "term")
    assert "line2" in text
    for line in text.splitlines():
        assert not line.startswith(("line2", "line3"))


def test_latex_escapes_specials(records):
    text = render(records, "latex")
    assert "$\\&%#_{}~^" not in text
    body = [ln for ln in text.splitlines() if "caption" in ln]
    assert any("\\$\\textbackslash{}\\&\\%\\#\\_\\{\\}" in ln for ln in body)
    for line in body:
        assert not re.search(r"(?<!\\)[$#%_&]", line.replace("$\\Delta$", "")), line
    for line in text.splitlines():
        if line.endswith("\\\\") and "&" in line:  # a table row: no unescaped special of record text
            bare = re.sub(r"\\[A-Za-z]+\{[^{}]*\}|\\\^\{\}|\$\\Delta\$", "", line)  # the escapes' own braces
            assert not re.search(r"(?<!\\)[$#%_{}]", bare), line


def test_html_escapes_everything(records):
    pytest.importorskip("matplotlib")
    text = render(records[:3], "html")  # one group holding all of it (plots are slow)
    assert "<script" not in text.lower() and "<img src=x" not in text and "onerror=alert" not in text.replace(
        "onerror=alert(1)&gt;", "")
    assert "&lt;script&gt;" in text and "\x1b" not in text and "\x07" not in text


def test_csv_cells_never_start_with_a_formula(records):
    rows = list(csv.reader(io.StringIO(render(records, "csv"))))
    header = rows[0]
    for row in rows[1:]:
        for name, value in zip(header, row):
            if value.startswith(FORMULA):
                assert re.fullmatch(r"-?\d+(\.\d+)?(e-?\d+)?", value), (name, value)  # a genuine number only
    assert any(v == "'=HYPERLINK(\"http://x\")" for row in rows[1:] for v in row)


def test_csv_keeps_negative_numbers_numeric():
    assert csv_cell(-1.5) == -1.5 and csv_cell("-1") == "'-1" and csv_cell("ok") == "ok"
    good = [hostile_record("k-dense", "x", method="dense"), hostile_record("k-t", "x")]
    good[0]["config"]["method"]["params"] = {}  # the group's dense baseline
    good[1]["metrics"]["top1"] = 0.25  # delta_top1 -0.25 against dense
    rows = list(csv.DictReader(io.StringIO(render(good, "csv"))))
    assert float(next(r for r in rows if r["key"] == "k-t")["delta_top1"]) == pytest.approx(-0.25)


def test_json_round_trips_the_text_exactly(records):
    rows = {r["key"]: r for r in json.loads(render(records, "json"))}
    assert rows["k-all"]["label"] == f"tome {EVERY}"
    assert rows["k-fail"]["error_message"] == EVERY and rows["k-fail"]["error_type"] == EVERY
    for i, text in enumerate(HOSTILE):
        assert rows[f"k{i}"]["label"] == f"tome {text}" and rows[f"f{i}"]["error_message"] == text


def test_plain_strips_escape_sequences_and_controls():
    assert plain("\x1b[31mred\x1b[0m \x1b]0;title\x07x\x00\x7f\x9b2J") == "red x"
    assert plain("a\nb\tc") == "a b c" and plain("a\nb", one_line=False) == "a\nb"


@pytest.mark.parametrize("metrics, why", [
    ({"top1": "abc", "num_videos": 10}, "metrics.top1"),
    ({"top1": None, "num_videos": 10}, "metrics.top1"),
    ({"top1": 7.0, "num_videos": 10}, "metrics.top1"),
    ({"top1": 0.5, "num_videos": -3}, "metrics.num_videos"),
    ({"top1": 0.5, "num_videos": 10, "gmacs_per_view": "lots"}, "metrics.gmacs_per_view"),
    ("garbage", "metrics is not a mapping"),
])
def test_ok_record_with_garbage_metrics_is_shown_invalid(metrics, why):
    from harness.report import leaderboard

    dense = hostile_record("k-dense", "x", method="dense")
    dense["config"]["method"]["params"] = {}
    bad = hostile_record("k-bad", "x")
    bad["metrics"] = metrics
    samples = {"k-dense": [{"index": i, "pred": 1, "correct_top1": 1} for i in range(10)],
               "k-bad": [{"index": i, "pred": 0, "correct_top1": 0} for i in range(10)]}
    (_, df), = leaderboard([dense, hostile_record("k-bad", "x")], samples=lambda k: samples[k])
    assert df.set_index("key").loc["k-bad", "p_vs_dense"] < 0.01  # the same row with sound metrics
    (_, df), = leaderboard([dense, bad], samples=lambda k: samples[k])
    row = df.set_index("key").loc["k-bad"]
    assert row["status"].startswith("invalid record") and why in row["status"]
    assert row.isna()[["top1", "top1_ci_low", "p_vs_dense", "agreement_vs_dense", "delta_top1"]].all()
    assert "invalid record" in render([dense, bad], "term")
