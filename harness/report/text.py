"""Text formats of the leaderboard: terminal, Markdown, LaTeX, CSV and JSON (torch-free).

``DISPLAY_COLUMNS`` is the one list of shown columns (header, alignment, cell formatter) that the
term, md, latex and html formats share; csv and json write the raw table columns instead. Record text
reaches every format through ``harness.report.safe`` (escaped for md/latex/html, control characters and
escape sequences removed, csv formulas neutralised); json alone keeps it exactly.
"""
from __future__ import annotations

import json
import typing as tp

import pandas as pd
from tabulate import tabulate

from harness.report import safe
from harness.report.pareto import best_per_budget, parse_budget
from harness.report.tables import GROUP_COLUMNS, Group, budget_table


def _blank_or(fmt: tp.Callable[[tp.Any], str]) -> tp.Callable[[tp.Any], str]:
    return lambda v: "" if v is None or pd.isna(v) else fmt(v)


def _short(v: float) -> str:
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.3g}"


def _interval(low: tp.Any, high: tp.Any, fmt: tp.Callable[[float], str]) -> str:
    return "" if low is None or high is None or pd.isna(low) or pd.isna(high) else f" [{fmt(low)}-{fmt(high)}]"


def _coverage(row: pd.Series) -> str:
    decoded, listed = row["coverage_decoded"], row["coverage_listed"]
    return "" if pd.isna(decoded) or pd.isna(listed) else f"{decoded}/{listed}"


DISPLAY_COLUMNS: list[tuple[str, str, tp.Callable[[pd.Series], str]]] = [  # header, alignment, cell
    ("method", "left", lambda r: r["method"]),
    ("settings", "left", lambda r: r["settings"]),
    ("top-1 %", "right", lambda r: _blank_or(lambda v: f"{100 * v:.1f}")(r["top1"])),
    ("95% CI", "right", lambda r: "" if pd.isna(r["top1_ci_low"]) else
     f"{100 * r['top1_ci_low']:.1f}-{100 * r['top1_ci_high']:.1f}"),
    ("top-5 %", "right", lambda r: _blank_or(lambda v: f"{100 * v:.1f}")(r["top5"])),
    ("Δtop-1 pp", "right", lambda r: _blank_or(lambda v: f"{100 * v:+.1f}")(r["delta_top1"])),
    ("p vs dense", "right", lambda r: _blank_or(lambda v: "<0.001" if v < 0.001 else f"{v:.3f}")(r["p_vs_dense"])),
    ("agree %", "right", lambda r: _blank_or(lambda v: f"{100 * v:.1f}")(r["agreement_vs_dense"])
     + _interval(r["agreement_ci_low"], r["agreement_ci_high"], lambda v: f"{100 * v:.1f}")),
    ("flips -/+", "right", lambda r: "" if pd.isna(r["flips_right_to_wrong"]) else
     f"{r['flips_right_to_wrong']}/{r['flips_wrong_to_right']}"),
    ("Δ vs baselines pp", "right", lambda r: _blank_or(lambda v: f"{100 * v:+.1f}")(r["delta_top1_vs_baselines"])),
    ("front", "center", lambda r: "*" if bool(r["pareto"]) else ""),
    ("GMACs/view", "right", lambda r: _blank_or(_short)(r["gmacs_per_view"])),
    ("GMACs ratio", "right", lambda r: _blank_or(lambda v: f"{v:.2f}x")(r["gmacs_ratio"])),
    ("adaptive GMACs", "right", lambda r: "" if pd.isna(r["gmacs_theoretical_mean"]) else
     f"{_short(r['gmacs_theoretical_mean'])}±{_short(r['gmacs_theoretical_std'])} "
     f"p95 {_short(r['gmacs_theoretical_p95'])}"),
    ("clips/s", "right", lambda r: _blank_or(_short)(r["clips_per_s"])),
    ("ms/batch", "right", lambda r: _blank_or(_short)(r["latency_ms"])),
    ("speedup", "right", lambda r: _blank_or(lambda v: f"{v:.2f}x")(r["speedup"])
     + ("" if r["method_name"] == "dense" and r["speedup"] == 1 else
        _interval(r["speedup_ci_low"], r["speedup_ci_high"], lambda v: f"{v:.2f}"))
     + ("~" if r["speedup_paired"] is False else "") + ("?" if r["speedup_unreliable"] is True else "")),
    ("peak GiB", "right", lambda r: _blank_or(lambda v: f"{v:.2f}")(r["peak_mem_gib"])),
    ("coverage", "right", _coverage),
    ("status", "left", lambda r: r["status"]),
]


Clean = tp.Callable[[tp.Any], str]  # record text -> text safe for one format (harness.report.safe)


def display_rows(df: pd.DataFrame, clean: Clean = safe.plain) -> list[list[str]]:
    return [[clean(cell(row)) for _, _, cell in DISPLAY_COLUMNS] for _, row in df.iterrows()]


def notes(df: pd.DataFrame) -> list[str]:
    """The footnotes of a group's table: ["", joined notes], or [] when there is nothing to say."""
    out = []
    sizes = sorted({int(b) for b in df["throughput_batch_size"].dropna()})
    if sizes:
        out.append("clips/s and ms/batch (median forward time of one batch) at batch size "
                     + ", ".join(map(str, sizes)))
    kinds = sorted(set(df["peak_mem_kind"].dropna()))
    if kinds:
        out.append("peak memory: " + ", ".join(kinds))
    if df["p_vs_dense"].notna().any():
        out.append("p vs dense: exact McNemar test on the same videos; agree %: same top-1 prediction as dense "
                   "[95% Wilson interval]; flips -/+: videos dense got right and this row wrong / the reverse")
    if df["pareto"].any():
        out.append("front *: on the accuracy-cost Pareto frontier (top-1 vs GMACs/view) of this group")
    if df["delta_top1_vs_baselines"].notna().any():
        out.append("Δ vs baselines: top-1 minus the frontier of the doing-less-work baselines (dense, downsampled input, "
                   "chance dropping) interpolated "
                   "at the row's GMACs (blank outside that frontier's range); negative = worse than doing less work")
    if df["speedup_ci_low"].notna().any():
        out.append("speedup: median over the interleaved repeats of this row's clips/s over dense's in the same "
                   "repeat (each from the repeat's median forward time) [bootstrap 95% interval]")
    if (df["speedup_paired"] == False).any():  # noqa: E712 -- an object column with None
        out.append("speedup ~: timed in another run than dense, compared unpaired (ratio of medians)")
    if (df["speedup_unreliable"] == True).any():  # noqa: E712 -- an object column with None
        out.append("speedup ?: unreliable, its interval reaches beyond ±10%, or while it or dense was timed other "
                   "processes took over 10% of the CPUs or the load average exceeded the cores (records without "
                   "repeats: either timing's warnings, "
                   "metrics.timing.warnings)")
    if df["gmacs_theoretical_mean"].notna().any():
        out.append("GMACs/view: what the forwards executed; adaptive GMACs: per-video cost from each "
                     "video's active tokens (mean±std, p95), as the halting papers count it")
    if df["status"].astype(str).str.endswith("(other code)").any():
        out.append("(other code): computed by other model/method/data code than this checkout "
                     "(provenance.numerics_code); `run --force` recomputes it")
    return ["", "; ".join(out)] if out else []


def verdict_lines(df: pd.DataFrame) -> list[str]:
    """One line per GMACs budget (``pareto.VERDICT_BUDGETS`` of dense) naming the best row under it."""
    lines = []
    for v in best_per_budget(df):
        head = f"best at ≤ {v['ratio']:.2f}x dense GMACs: "
        best, runner = v["best"], v["runner_up"]
        if best is None:
            lines.append(head + "no row")
            continue
        text = head + f"{_name(best)} {_pct_ci(best)} at {best['gmacs_ratio']:.2f}x"
        if v["baseline_wins"]:
            text += " (a baseline: no token-reduction row beats doing less work here)"
        if runner is not None:
            text += (f"; runner-up {_name(runner)} {_pct_ci(runner)}"
                     + (", within its 95% CI: not separable" if v["tied"] else ""))
        lines.append(text)
    return lines


def _name(row: pd.Series) -> str:
    return f"{row['method']} {row['settings']}".strip() if row["settings"] not in ("", "-") else str(row["method"])


def _pct_ci(row: pd.Series) -> str:
    ci = "" if pd.isna(row["top1_ci_low"]) else f" [{100 * row['top1_ci_low']:.1f}-{100 * row['top1_ci_high']:.1f}]"
    return f"{100 * row['top1']:.1f}%{ci}"


BUDGET_HEADERS = ["method", "top-1 % (interpolated)", "note"]


def budget_title(budget: str) -> str:
    x, value, _ = parse_budget(budget)
    return f"accuracy at matched budget: {'GMACs/view' if x == 'gmacs_per_view' else 'clips/s'} = {value:g}"


def budget_rows(df: pd.DataFrame, budget: str, clean: Clean = safe.plain) -> list[list[str]]:
    table = budget_table(df, budget)
    return [[clean(r["method"]), _blank_or(lambda v: f"{100 * v:.1f}")(r["top1"]), clean(r["note"])]
            for _, r in table.iterrows()]


def _render_tables(tables: list[tuple[Group, pd.DataFrame]], tablefmt: str, heading: str, clean: Clean,
                   budget: tp.Optional[str] = None) -> str:
    headers = [header for header, _, _ in DISPLAY_COLUMNS]
    align = [alignment for _, alignment, _ in DISPLAY_COLUMNS]
    blocks = []
    for group, df in tables:
        table = tabulate(display_rows(df, clean), headers=headers, tablefmt=tablefmt, colalign=align,
                         disable_numparse=True)
        block = [heading + clean(group["title"]), "", table, *map(clean, notes(df))]
        verdict = verdict_lines(df)
        if verdict and df["method_name"].eq("dense").any():
            bullet = "- " if tablefmt == "github" else ""
            block += ["", *(bullet + clean(line) for line in verdict)]
        if budget is not None:
            block += ["", budget_title(budget), "",
                      tabulate(budget_rows(df, budget, clean), headers=BUDGET_HEADERS, tablefmt=tablefmt,
                               colalign=("left", "right", "left"), disable_numparse=True)]
        blocks.append("\n".join(block))
    return "\n\n".join(blocks) + "\n"


latex_escape = safe.latex  # captions and notes


def _booktabs(rows: list[list[str]], headers: list[str], align: tp.Sequence[str]) -> str:
    """tabulate's ``latex_booktabs`` (which escapes the cells' specials; ``rows`` must be ``safe.plain``), with Δ
    made valid in plain LaTeX too."""
    return tabulate(rows, headers=headers, tablefmt="latex_booktabs", colalign=align,
                    disable_numparse=True).replace("Δ", "$\\Delta$")


def _render_latex(tables: list[tuple[Group, pd.DataFrame]], budget: tp.Optional[str] = None) -> str:
    headers = [header for header, _, _ in DISPLAY_COLUMNS]
    align = [alignment for _, alignment, _ in DISPLAY_COLUMNS]
    blocks = ["% leaderboard: one table per group; needs \\usepackage{booktabs}"]
    for group, df in tables:
        block = ["\\begin{table}[ht]", "\\centering", f"\\caption{{{latex_escape(group['title'])}}}",
                 _booktabs(display_rows(df, safe.plain), headers, align)]
        lines = [n for n in notes(df) if n]
        if lines:
            block.append(f"\\par\\smallskip{{\\footnotesize {latex_escape(lines[0])}}}")
        block.append("\\end{table}")
        if budget is not None:
            block += ["\\begin{table}[ht]", "\\centering",
                      f"\\caption{{{latex_escape(group['title'] + ': ' + budget_title(budget))}}}",
                      _booktabs(budget_rows(df, budget, safe.plain), BUDGET_HEADERS, ("left", "right", "left")),
                      "\\end{table}"]
        blocks.append("\n".join(block))
    return "\n\n".join(blocks) + "\n"


def _flat_frame(tables: list[tuple[Group, pd.DataFrame]]) -> pd.DataFrame:
    frames = []
    for group, df in tables:
        df = df.copy()
        for i, col in enumerate(GROUP_COLUMNS):
            df.insert(i, col, group["title"] if col == "group" else group[col])
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _render_csv(tables: list[tuple[Group, pd.DataFrame]]) -> str:
    df = _flat_frame(tables)
    for column in df.columns:
        if not pd.api.types.is_numeric_dtype(df[column]):  # text (object or str dtype): numbers stay numbers
            df[column] = df[column].map(safe.csv_cell)
    return df.to_csv(index=False)


def _json_value(value: tp.Any) -> tp.Any:
    if value is None or (not isinstance(value, (dict, list)) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def _render_json(tables: list[tuple[Group, pd.DataFrame]]) -> str:
    rows = [{k: _json_value(v) for k, v in row.items()} for row in _flat_frame(tables).to_dict(orient="records")]
    return json.dumps(rows, indent=2, allow_nan=False) + "\n"


RENDERERS: dict[str, tp.Callable[..., str]] = {
    "term": lambda tables, budget=None: _render_tables(tables, "simple", "", safe.term, budget),
    "md": lambda tables, budget=None: _render_tables(tables, "github", "### ", safe.markdown, budget),
    "latex": _render_latex,
    "csv": _render_csv,
    "json": _render_json,
}
