"""One self-contained HTML leaderboard page: inline CSS, tables, notes and base64-embedded PNG plots.

Every piece of record text goes through ``harness.report.safe.html_text`` (control characters removed,
then ``html.escape``); the page loads nothing from anywhere.
"""
from __future__ import annotations

import base64
import datetime as dt
import typing as tp
from pathlib import Path

import pandas as pd

from harness.report.safe import html_text as esc
from harness.report.text import BUDGET_HEADERS, DISPLAY_COLUMNS, budget_rows, budget_title, display_rows, notes

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1400px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2.2em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #e3e3e3; white-space: nowrap; }
th { background: #f4f4f4; border-bottom: 2px solid #999; }
td.right, th.right { text-align: right; } td.center, th.center { text-align: center; }
tr.front td { background: #f3f8ff; }
p.notes { font-size: 0.85em; color: #555; }
.plots img { max-width: 100%; height: auto; margin: 0.5em 1em 0.5em 0; border: 1px solid #eee; }
.error { color: #a00; white-space: normal; max-width: 30em; }
"""


def render_html(tables: tp.Sequence[tp.Tuple[dict, pd.DataFrame]],
                plots: tp.Optional[tp.Mapping[str, tp.Sequence[tp.Union[str, Path]]]] = None,
                budget: tp.Optional[str] = None, title: str = "Token reduction leaderboard") -> str:
    """The page: one ``<section>`` per group (table, notes, optional budget table, plots).

    ``plots`` maps a group title to image paths; PNGs are embedded as base64 ``<img>`` (other files ignored).
    """
    plots = plots or {}
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{esc(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
             f"<h1>{esc(title)}</h1>",
             f"<p class=\"notes\">{len(tables)} group(s); generated {esc(stamp)}. Top-1 with 95% Wilson "
             "interval; Δ and ratios against the group's dense baseline.</p>"]
    for i, (group, df) in enumerate(tables):
        parts.append(_section(i, group, df, plots.get(group["title"], ()), budget))
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


def _section(i: int, group: dict, df: pd.DataFrame, images: tp.Sequence[tp.Union[str, Path]],
             budget: tp.Optional[str]) -> str:
    out = [f'<section id="group-{i + 1}">', f"<h2>{esc(str(group['title']))}</h2>", _table(df)]
    lines = [n for n in notes(df) if n]
    if lines:
        out.append(f'<p class="notes">{esc(lines[0])}</p>')
    failed = df[df["error_message"].notna()]
    if len(failed):
        out.append("<h3>errors</h3><ul>")
        out += [f'<li><b>{esc(str(r["method"]))} {esc(str(r["settings"]))}</b>: '
                f'<span class="error">{esc(str(r["error_type"] or ""))}: '
                f'{esc(str(r["error_message"]))}</span></li>' for _, r in failed.iterrows()]
        out.append("</ul>")
    if budget is not None:
        out.append(f"<h3>{esc(budget_title(budget))}</h3>")
        out.append(_simple_table(BUDGET_HEADERS, budget_rows(df, budget), ["left", "right", "left"]))
    pngs = [Path(p) for p in images if Path(p).suffix.lower() == ".png" and Path(p).is_file()]
    if pngs:
        out.append('<div class="plots">')
        for path in pngs:
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            alt = esc(f"{group['title']}: {path.stem}")
            out.append(f'<img alt="{alt}" src="data:image/png;base64,{data}">')
        out.append("</div>")
    out.append("</section>")
    return "\n".join(out)


def _table(df: pd.DataFrame) -> str:
    headers = [h for h, _, _ in DISPLAY_COLUMNS]
    align = [a for _, a, _ in DISPLAY_COLUMNS]
    classes = ["front" if bool(p) else "" for p in df["pareto"]]
    return _simple_table(headers, display_rows(df), align, classes)


def _simple_table(headers: tp.Sequence[str], rows: tp.Sequence[tp.Sequence[str]], align: tp.Sequence[str],
                  row_classes: tp.Optional[tp.Sequence[str]] = None) -> str:
    head = "".join(f'<th class="{a}">{esc(str(h))}</th>' for h, a in zip(headers, align))
    body = []
    for i, row in enumerate(rows):
        cls = row_classes[i] if row_classes else ""
        cells = "".join(f'<td class="{a}">{esc(str(c))}</td>' for c, a in zip(row, align))
        body.append(f'<tr class="{cls}">{cells}</tr>' if cls else f"<tr>{cells}</tr>")
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"
