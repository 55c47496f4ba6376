"""Reports: leaderboards from cell records, in six formats, with plots (torch-free).

    from harness.report import render
    print(render(records, "md", samples=store.read_samples))

``tables`` turns records into one table per (backbone, dataset) group with the comparisons against
dense and the Pareto front; ``text`` formats them (term, md, latex, csv, json), ``html_page`` as one
self-contained page, ``plots`` draws accuracy-cost plots; ``pareto`` and ``stats`` hold the maths.
A report only reads the store: it never writes, syncs or imports torch.
"""
from __future__ import annotations

import typing as tp
from pathlib import Path

import pandas as pd

from harness.report.pareto import parse_budget
from harness.report.tables import (COLUMNS, FILTERS, FORMATS, Fmt, Group, Record, Samples, budget_table,
                                   empty_message, latest_per_key, leaderboard, prepare)

__all__ = ["COLUMNS", "FILTERS", "FORMATS", "budget_table", "empty_message", "latest_per_key", "leaderboard",
           "make_plots", "prepare", "render"]


def render(records: tp.Iterable[Record], fmt: Fmt = "term", root: str | Path = "results",
           samples: Samples = None, budget: tp.Optional[str] = None,
           filters: tp.Optional[tp.Mapping[str, tp.Any]] = None, sort: tp.Optional[str] = None) -> str:
    """The leaderboard as text: ``term`` / ``md`` / ``latex`` tables per group, one ``csv`` / ``json`` for all,
    or one self-contained ``html`` page (tables and embedded plots; needs matplotlib).

    ``budget`` (``"gmacs=0.12"`` or ``"clips_per_s=400"``) appends to each group of the table formats an
    "accuracy at matched budget" table (see ``harness.report.pareto.at_budget``). ``filters`` keeps records
    by exact name (``suite``, ``backbone``, ``dataset``: whole records; ``method``: rows, after the comparison
    with dense, which needs the dense rows); each value is a name or a list of names. ``sort`` orders each
    table by a column of ``COLUMNS`` (``-column``: descending; missing values last). Pareto markers always
    refer to the whole group. With no records it returns ``empty_message(root)`` whatever the format.
    """
    from harness.report.text import RENDERERS

    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if budget is not None:
        parse_budget(budget)  # fail early on a bad spec
    records = list(records)
    tables = prepare(records, samples, filters, sort)
    if not tables:
        active = {k: v for k, v in (filters or {}).items() if v not in (None, [], ())}
        if not active or not records:
            return empty_message(root)
        shown = ", ".join(f"{k}={'|'.join([v] if isinstance(v, str) else map(str, v))}" for k, v in active.items())
        return f"no records match the filters ({shown})"
    if fmt == "html":
        import tempfile

        from harness.report.html_page import render_html

        with tempfile.TemporaryDirectory(prefix="harness-plots-") as tmp:
            return render_html(tables, make_plots(tables, tmp), budget=budget)
    if fmt in ("csv", "json"):
        return RENDERERS[fmt](tables)
    return RENDERERS[fmt](tables, budget)


def make_plots(tables: list[tuple[Group, pd.DataFrame]], out_dir: str | Path) -> dict[str, list[Path]]:
    """PNG + SVG plots per group (``harness.report.plots.plot_group``) under ``out_dir`` as ``group<N>_*``,
    keyed by group title (needs matplotlib and seaborn)."""
    from harness.report.plots import plot_group

    out = Path(out_dir)
    return {group["title"]: plot_group(group, df, out, f"group{i + 1}") for i, (group, df) in enumerate(tables)}
