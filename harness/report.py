"""Leaderboard tables built from cell records (torch-free, so ``harness report`` stays fast).

Records are grouped by their exact ``config.backbone`` and ``config.dataset`` dicts; every group
gets one table. Each row is compared with the group's dense baseline: the ``dense`` record with
empty params and the same ``config.eval`` (throughput also needs the same ``config.measure``).
Tables keep raw values (accuracies as fractions); only ``term``, ``md``, ``latex`` and ``html`` format them.
The ``pareto`` column marks the rows on the group's accuracy-cost frontier (top-1 vs GMACs/view).
"""
from __future__ import annotations

import datetime as dt
import json
import math
import statistics
import typing as tp
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from harness.pareto import at_budget, frontier, parse_budget
from harness.stats import paired_comparison, wilson_interval

Record = tp.Dict[str, tp.Any]
Group = tp.Dict[str, tp.Any]
Fmt = tp.Literal["term", "md", "csv", "json", "latex", "html"]

FORMATS: tp.Tuple[str, ...] = ("term", "md", "csv", "json", "latex", "html")
FILTERS: tp.Tuple[str, ...] = ("suite", "backbone", "dataset", "method")
GROUP_COLUMNS = ["backbone", "checkpoint", "dataset", "group"]
INT_COLUMNS = ["coverage_decoded", "coverage_listed", "num_videos", "views_per_video", "throughput_batch_size"]
COLUMNS = [
    "method", "settings", "top1", "top1_ci_low", "top1_ci_high", "top5", "delta_top1", "p_vs_dense",
    "agreement_vs_dense", "gmacs_per_view", "gmacs_ratio", "clips_per_s",
    "speedup", "peak_mem_gib", "coverage_decoded", "coverage_listed", "status", "pareto",
    "label", "key", "error_type", "error_message", "gflops_per_view", "gmacs_per_video", "clips_per_s_iqr",
    "throughput_batch_size", "peak_mem_kind", "num_videos", "views_per_video", "finished_at",
    "gmacs_theoretical_mean", "gmacs_theoretical_std", "gmacs_theoretical_p95", "method_name", "latency_ms",
]
_FLOAT_METRICS = ["top1", "top5", "gmacs_per_view", "gflops_per_view", "gmacs_per_video", "clips_per_s",
                  "clips_per_s_iqr", "peak_mem_gib"]
_FLOAT_COLUMNS = _FLOAT_METRICS + ["latency_ms", "gmacs_theoretical_mean", "gmacs_theoretical_std", "gmacs_theoretical_p95",
                                   "delta_top1", "gmacs_ratio", "speedup", "top1_ci_low", "top1_ci_high",
                                   "p_vs_dense", "agreement_vs_dense"]
Samples = tp.Optional[tp.Callable[[str], tp.List[dict]]]  # record key -> per-video rows (ResultStore.read_samples)
_EPOCH = dt.datetime.min.replace(tzinfo=dt.timezone.utc)


def empty_message(root: str | Path = "results") -> str:
    """The one-line answer for a store with no records."""
    return f"no records under {Path(root).as_posix()}/ — run `python -m harness run SUITE` first"


def latest_per_key(records: tp.Iterable[Record]) -> list[Record]:
    """One record per ``key``: the one with the latest ``finished_at`` (ties: the later one listed)."""
    best: dict[str, Record] = {}
    for i, rec in enumerate(records):
        key = rec.get("key") or f"<no key #{i}>"
        if key not in best or _finished_at(rec) >= _finished_at(best[key]):
            best[key] = rec
    return list(best.values())


def leaderboard(records: tp.Iterable[Record], samples: Samples = None) -> list[tuple[Group, pd.DataFrame]]:
    """One ``(group, table)`` per (backbone, dataset) config, ordered by title; rows: dense, then GMACs desc.

    ``group`` holds ``title``, ``backbone``, ``checkpoint``, ``dataset``, ``split`` and the full
    ``backbone_config`` / ``dataset_config`` dicts. Table columns are ``COLUMNS`` with raw values.
    With ``samples``, each row is also compared with its dense baseline on the same videos (exact McNemar
    p-value and agreement of top-1 predictions); top-1 always gets a 95% Wilson interval.
    """
    buckets: dict[tuple[str, str], list[Record]] = {}
    for rec in latest_per_key(records):
        buckets.setdefault(_group_id(rec), []).append(rec)
    configs = [(_config(recs[0], "backbone"), _config(recs[0], "dataset")) for recs in buckets.values()]
    titles = _titles(configs)
    tables = [(_group(bb, ds, title), _table(recs, samples))
              for (bb, ds), title, recs in zip(configs, titles, buckets.values())]
    return sorted(tables, key=lambda t: t[0]["title"])


def render(records: tp.Iterable[Record], fmt: Fmt = "term", root: str | Path = "results",
           samples: Samples = None, budget: tp.Optional[str] = None,
           filters: tp.Optional[tp.Mapping[str, tp.Any]] = None, sort: tp.Optional[str] = None) -> str:
    """The leaderboard as text: ``term`` / ``md`` / ``latex`` tables per group, one ``csv`` / ``json`` for all,
    or one self-contained ``html`` page (tables and embedded plots; needs matplotlib).

    ``budget`` (``"gmacs=0.12"`` or ``"clips_per_s=400"``) appends to each group of the table formats an
    "accuracy at matched budget" table (see ``harness.pareto.at_budget``). ``filters`` keeps records by exact
    name (``suite``, ``backbone``, ``dataset``: whole records; ``method``: rows, after the comparison with
    dense, which needs the dense rows); each value is a name or a list of names. ``sort`` orders each table
    by a column of ``COLUMNS`` (``-column``: descending; missing values last). Pareto markers always refer
    to the whole group. With no records it returns ``empty_message(root)`` whatever the format.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if budget is not None:
        parse_budget(budget)  # fail early on a bad spec
    tables = prepare(records, samples, filters, sort)
    if not tables:
        return empty_message(root) if not filters or not _any_records(records) else _no_match(filters)
    if fmt == "html":
        import tempfile

        from harness.html_report import render_html

        with tempfile.TemporaryDirectory(prefix="harness-plots-") as tmp:
            return render_html(tables, make_plots(tables, tmp), budget=budget)
    if fmt in ("csv", "json"):
        return _RENDERERS[fmt](tables)
    return _RENDERERS[fmt](tables, budget)


def prepare(records: tp.Iterable[Record], samples: Samples = None,
            filters: tp.Optional[tp.Mapping[str, tp.Any]] = None,
            sort: tp.Optional[str] = None) -> list[tuple[Group, pd.DataFrame]]:
    """``leaderboard`` after ``filters`` and ``sort`` (see ``render``); groups left empty are dropped."""
    filters = {k: _names(v) for k, v in (filters or {}).items() if v not in (None, [], ())}
    unknown = sorted(set(filters) - set(FILTERS))
    if unknown:
        raise ValueError(f"unknown report filter(s) {', '.join(unknown)}; choose from: {', '.join(FILTERS)}")
    if sort is not None and sort.lstrip("-") not in COLUMNS:
        raise ValueError(f"unknown sort column {sort!r}; choose one of: {', '.join(COLUMNS)} (prefix - to reverse)")
    records = [r for r in records if _keep(r, filters)]
    tables = []
    for group, df in leaderboard(records, samples):
        if "method" in filters:
            df = df[df["method_name"].isin(filters["method"])].reset_index(drop=True)
        if sort is not None:
            column = sort.lstrip("-")
            df = df.sort_values(column, ascending=not sort.startswith("-"), na_position="last",
                                kind="stable").reset_index(drop=True)
        if len(df):
            tables.append((group, df))
    return tables


def budget_table(df: pd.DataFrame, budget: str) -> pd.DataFrame:
    """Per method: top-1 interpolated at ``budget`` (``"gmacs=0.12"`` / ``"clips_per_s=400"``) and a note."""
    x, value, higher = parse_budget(budget)
    return at_budget(df, value, x=x, y="top1", higher_is_better=higher)


def make_plots(tables: list[tuple[Group, pd.DataFrame]], out_dir: str | Path) -> dict[str, list[Path]]:
    """PNG + SVG plots per group (``harness.plots.plot_group``) under ``out_dir`` as ``group<N>_*``,
    keyed by group title (needs matplotlib and seaborn)."""
    from harness.plots import plot_group

    out = Path(out_dir)
    return {group["title"]: plot_group(group, df, out, f"group{i + 1}") for i, (group, df) in enumerate(tables)}


def _names(value: tp.Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _keep(rec: Record, filters: dict[str, list[str]]) -> bool:
    fields = {"suite": _dict(rec.get("suite")).get("name"), "backbone": _config(rec, "backbone").get("name"),
              "dataset": _config(rec, "dataset").get("name")}
    return all(fields[k] in names for k, names in filters.items() if k in fields)


def _any_records(records: tp.Iterable[Record]) -> bool:
    return bool(records) if isinstance(records, (list, tuple)) else True


def _no_match(filters: tp.Mapping[str, tp.Any]) -> str:
    shown = ", ".join(f"{k}={'|'.join(_names(v))}" for k, v in filters.items() if v not in (None, [], ()))
    return f"no records match the filters ({shown})"


# ---- grouping -------------------------------------------------------------------------------------

def _config(rec: Record, part: str) -> dict:
    return _dict(_dict(rec.get("config")).get(part))


def _canon(value: tp.Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _group_id(rec: Record) -> tuple[str, str]:
    return _canon(_config(rec, "backbone")), _canon(_config(rec, "dataset"))


def _group(backbone: dict, dataset: dict, title: str) -> Group:
    return {"title": title, "backbone": backbone.get("name"), "checkpoint": backbone.get("checkpoint"),
            "dataset": dataset.get("name"), "split": dataset.get("split"),
            "backbone_config": backbone, "dataset_config": dataset}


def _base_title(backbone: dict, dataset: dict) -> str:
    title = str(backbone.get("name") or "?")
    if backbone.get("checkpoint"):
        title += f" ({Path(str(backbone['checkpoint'])).name})"
    title += f" on {dataset.get('name') or '?'}"
    if dataset.get("split"):
        title += f" [{dataset['split']}]"
    return title


def _titles(configs: list[tuple[dict, dict]]) -> list[str]:
    """Base titles, with the differing config fields appended where two groups would share one."""
    base = [_base_title(bb, ds) for bb, ds in configs]
    titles = []
    for title, config in zip(base, configs):
        twins = [c for t, c in zip(base, configs) if t == title]
        if len(twins) > 1:
            title += " {" + _differing_fields(config, twins) + "}"
        titles.append(title)
    return titles


def _flatten(value: tp.Any, prefix: str = "") -> dict[str, str]:
    if not isinstance(value, dict):
        return {prefix: _canon(value)}
    flat: dict[str, str] = {}
    for k, v in value.items():
        flat.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return flat


def _differing_fields(config: tuple[dict, dict], twins: list[tuple[dict, dict]]) -> str:
    flats = [_flatten({"backbone": bb, "dataset": ds}) for bb, ds in twins]
    mine = _flatten({"backbone": config[0], "dataset": config[1]})
    keys = sorted({k for f in flats for k in f if any(g.get(k) != f.get(k) for g in flats)})
    return ", ".join(f"{k}={mine.get(k, '-')}" for k in keys)


# ---- rows -----------------------------------------------------------------------------------------

def _table(records: list[Record], samples: Samples = None) -> pd.DataFrame:
    rows = [_row(rec) for rec in records]
    _add_baselines(rows, samples)
    rows.sort(key=_sort_key)
    df = pd.DataFrame(rows, columns=COLUMNS)
    df = df.astype({c: "Int64" for c in INT_COLUMNS} | {c: "float64" for c in _FLOAT_COLUMNS})
    df["pareto"] = frontier(df, "gmacs_per_view", "top1")
    return df


def _dict(value: tp.Any) -> dict:
    return value if isinstance(value, dict) else {}


def _row(rec: Record) -> dict:
    config = _dict(rec.get("config"))
    method = _dict(config.get("method"))
    name = str(method.get("name") or "?")
    params = _dict(method.get("params"))
    metrics = _dict(rec.get("metrics")) if rec.get("status") == "ok" else {}
    coverage = _dict(rec.get("coverage"))
    error = _dict(rec.get("error"))
    theoretical = _dict(metrics.get("gmacs_theoretical"))
    return {
        "method": _title(name), "method_name": name, "settings": _settings(name, params, rec.get("label")),
        **{f"gmacs_theoretical_{k}": _number(theoretical.get(k)) for k in ("mean", "std", "p95")},
        "latency_ms": _median_ms(metrics.get("iteration_times_s")),
        **{m: _number(metrics.get(m)) for m in _FLOAT_METRICS},
        **_top1_interval(metrics),
        "coverage_decoded": _integer(coverage.get("decoded")), "coverage_listed": _integer(coverage.get("listed")),
        "status": _status(rec) + (" (other code)" if _other_code(rec, name, params) else ""),
        "label": rec.get("label"), "key": rec.get("key"),
        "error_type": error.get("type"), "error_message": error.get("message"),
        "throughput_batch_size": _integer(metrics.get("throughput_batch_size")),
        "peak_mem_kind": metrics.get("peak_mem_kind"), "num_videos": _integer(metrics.get("num_videos")),
        "views_per_video": _integer(metrics.get("views_per_video")), "finished_at": rec.get("finished_at"),
        "_dense": name == "dense" and all(v is None for v in params.values()),
        "_eval": _canon(config.get("eval")), "_measure": _canon(config.get("measure")),
    }


def _median_ms(runs: tp.Any) -> float | None:
    """Median forward time (ms) of one timed batch over all repeats, from ``iteration_times_s``."""
    times = [t for run in runs for t in run] if isinstance(runs, list) and all(isinstance(r, list) for r in runs) else []
    times = [t for t in times if isinstance(t, (int, float))]
    return 1e3 * statistics.median(times) if times else None


def _title(name: str) -> str:
    """How leaderboards name a method (``display_name``, e.g. "STTM (re-implementation)")."""
    import methods

    try:
        return methods.get_method(name).title
    except KeyError:  # a record of a method this checkout does not have
        return name


def _settings(method: str, params: dict, label: tp.Any) -> str:
    """The label minus its leading method name if there is a label, else the params as ``k=v``."""
    if label:
        head, _, rest = str(label).strip().partition(" ")
        return (rest.strip() or "-") if head == method else str(label)
    return ", ".join(f"{k}={v if isinstance(v, str) else _canon(v)}" for k, v in params.items()) or "-"


_CURRENT_CODE: dict = {}  # (method, params) -> this checkout's numerics_code id


def _other_code(rec: Record, method: str, params: dict) -> bool:
    """Whether a finished record was computed by other model/method/data code than this checkout's
    (``provenance.numerics_code``; records without it, or of methods this checkout lacks, are not judged)."""
    from harness.provenance import code_state

    return rec.get("status") == "ok" and code_state(rec, method, params, _CURRENT_CODE) == "other code"


def _status(rec: Record) -> str:
    status = str(rec.get("status") or "unknown")
    if status == "partial":  # a sharded cell (harness/cluster) with shards still to finish
        shards = _dict(rec.get("execution")).get("shards") or []
        done = sum(1 for s in shards if _dict(s).get("complete"))
        return f"partial: {done}/{len(shards)} shards" if shards else status
    if status != "failed":
        return status
    error_type = _dict(rec.get("error")).get("type")
    return f"failed: {error_type}" if error_type else "failed"


def _top1_interval(metrics: dict) -> dict:
    top1, n = _number(metrics.get("top1")), _integer(metrics.get("num_videos"))
    if top1 is None or not n:
        return {"top1_ci_low": None, "top1_ci_high": None}
    low, high = wilson_interval(round(top1 * n), n)
    return {"top1_ci_low": low, "top1_ci_high": high}


def _add_baselines(rows: list[dict], samples: Samples = None) -> None:
    dense = [r for r in rows if r["_dense"] and r["status"] == "ok"]
    for row in rows:
        accuracy = _match(dense, row, "_eval", "_measure") or _match(dense, row, "_eval")
        paired = None
        if samples is not None and accuracy is not None and row["key"] != accuracy["key"] and row["status"] == "ok":
            paired = paired_comparison(samples(row["key"]), samples(accuracy["key"]))
        row["p_vs_dense"] = paired and paired["p_mcnemar"]
        row["agreement_vs_dense"] = paired and paired["agreement"]
        speed = _match(dense, row, "_eval", "_measure")
        row["delta_top1"] = _diff(row["top1"], accuracy and accuracy["top1"])
        row["gmacs_ratio"] = _ratio(row["gmacs_per_view"], accuracy and accuracy["gmacs_per_view"])
        row["speedup"] = _ratio(row["clips_per_s"], speed and speed["clips_per_s"])


def _match(dense: list[dict], row: dict, *fields: str) -> dict | None:
    return next((d for d in dense if all(d[f] == row[f] for f in fields)), None)


def _sort_key(row: dict) -> tuple:
    gmacs = row["gmacs_per_view"]
    return not row["_dense"], gmacs is None, -(gmacs or 0.0), row["method"], row["settings"]


def _number(value: tp.Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _integer(value: tp.Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


def _diff(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _finished_at(rec: Record) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(str(rec.get("finished_at")))
    except ValueError:
        return _EPOCH
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


# ---- rendering ------------------------------------------------------------------------------------

def _blank_or(fmt: tp.Callable[[tp.Any], str]) -> tp.Callable[[tp.Any], str]:
    return lambda v: "" if v is None or pd.isna(v) else fmt(v)


def _short(v: float) -> str:
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.3g}"


def _coverage(row: pd.Series) -> str:
    decoded, listed = row["coverage_decoded"], row["coverage_listed"]
    return "" if pd.isna(decoded) or pd.isna(listed) else f"{decoded}/{listed}"


_DISPLAY: list[tuple[str, str, tp.Callable[[pd.Series], str]]] = [  # header, alignment, cell
    ("method", "left", lambda r: r["method"]),
    ("settings", "left", lambda r: r["settings"]),
    ("top-1 %", "right", lambda r: _blank_or(lambda v: f"{100 * v:.1f}")(r["top1"])),
    ("95% CI", "right", lambda r: "" if pd.isna(r["top1_ci_low"]) else
     f"{100 * r['top1_ci_low']:.1f}-{100 * r['top1_ci_high']:.1f}"),
    ("top-5 %", "right", lambda r: _blank_or(lambda v: f"{100 * v:.1f}")(r["top5"])),
    ("Δtop-1 pp", "right", lambda r: _blank_or(lambda v: f"{100 * v:+.1f}")(r["delta_top1"])),
    ("p vs dense", "right", lambda r: _blank_or(lambda v: "<0.001" if v < 0.001 else f"{v:.3f}")(r["p_vs_dense"])),
    ("agree %", "right", lambda r: _blank_or(lambda v: f"{100 * v:.1f}")(r["agreement_vs_dense"])),
    ("front", "center", lambda r: "*" if bool(r["pareto"]) else ""),
    ("GMACs/view", "right", lambda r: _blank_or(_short)(r["gmacs_per_view"])),
    ("GMACs ratio", "right", lambda r: _blank_or(lambda v: f"{v:.2f}x")(r["gmacs_ratio"])),
    ("adaptive GMACs", "right", lambda r: "" if pd.isna(r["gmacs_theoretical_mean"]) else
     f"{_short(r['gmacs_theoretical_mean'])}±{_short(r['gmacs_theoretical_std'])} "
     f"p95 {_short(r['gmacs_theoretical_p95'])}"),
    ("clips/s", "right", lambda r: _blank_or(_short)(r["clips_per_s"])),
    ("ms/batch", "right", lambda r: _blank_or(_short)(r["latency_ms"])),
    ("speedup", "right", lambda r: _blank_or(lambda v: f"{v:.2f}x")(r["speedup"])),
    ("peak GiB", "right", lambda r: _blank_or(lambda v: f"{v:.2f}")(r["peak_mem_gib"])),
    ("coverage", "right", _coverage),
    ("status", "left", lambda r: r["status"]),
]


def _display_rows(df: pd.DataFrame) -> list[list[str]]:
    return [[cell(row) for _, _, cell in _DISPLAY] for _, row in df.iterrows()]


def _notes(df: pd.DataFrame) -> list[str]:
    notes = []
    sizes = sorted({int(b) for b in df["throughput_batch_size"].dropna()})
    if sizes:
        notes.append("clips/s and ms/batch (median forward time of one batch) at batch size "
                     + ", ".join(map(str, sizes)))
    kinds = sorted(set(df["peak_mem_kind"].dropna()))
    if kinds:
        notes.append("peak memory: " + ", ".join(kinds))
    if df["p_vs_dense"].notna().any():
        notes.append("p vs dense: exact McNemar test on the same videos; agree %: same top-1 prediction as dense")
    if df["pareto"].any():
        notes.append("front *: on the accuracy-cost Pareto frontier (top-1 vs GMACs/view) of this group")
    if df["gmacs_theoretical_mean"].notna().any():
        notes.append("GMACs/view: what the forwards executed; adaptive GMACs: per-video cost from each "
                     "video's active tokens (mean±std, p95), as the halting papers count it")
    if df["status"].astype(str).str.endswith("(other code)").any():
        notes.append("(other code): computed by other model/method/data code than this checkout "
                     "(provenance.numerics_code); `run --force` recomputes it")
    return ["", "; ".join(notes)] if notes else []


BUDGET_HEADERS = ["method", "top-1 % (interpolated)", "note"]


def budget_title(budget: str) -> str:
    x, value, _ = parse_budget(budget)
    return f"accuracy at matched budget: {'GMACs/view' if x == 'gmacs_per_view' else 'clips/s'} = {value:g}"


def budget_rows(df: pd.DataFrame, budget: str) -> list[list[str]]:
    table = budget_table(df, budget)
    return [[str(r["method"]), _blank_or(lambda v: f"{100 * v:.1f}")(r["top1"]), str(r["note"])]
            for _, r in table.iterrows()]


def _render_tables(tables: list[tuple[Group, pd.DataFrame]], tablefmt: str, heading: str,
                   budget: tp.Optional[str] = None) -> str:
    headers = [header for header, _, _ in _DISPLAY]
    align = [alignment for _, alignment, _ in _DISPLAY]
    blocks = []
    for group, df in tables:
        table = tabulate(_display_rows(df), headers=headers, tablefmt=tablefmt, colalign=align,
                         disable_numparse=True)
        block = [heading + group["title"], "", table, *_notes(df)]
        if budget is not None:
            block += ["", budget_title(budget), "",
                      tabulate(budget_rows(df, budget), headers=BUDGET_HEADERS, tablefmt=tablefmt,
                               colalign=("left", "right", "left"), disable_numparse=True)]
        blocks.append("\n".join(block))
    return "\n\n".join(blocks) + "\n"


_LATEX_ESCAPES = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
                  "<": r"\textless{}", ">": r"\textgreater{}", "Δ": r"$\Delta$"}


def latex_escape(text: tp.Any) -> str:
    """``text`` with LaTeX's special characters escaped (for captions and notes)."""
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def _booktabs(rows: list[list[str]], headers: list[str], align: tp.Sequence[str]) -> str:
    """tabulate's ``latex_booktabs`` (which escapes the cells), with Δ made valid in plain LaTeX too."""
    return tabulate(rows, headers=headers, tablefmt="latex_booktabs", colalign=align,
                    disable_numparse=True).replace("Δ", "$\\Delta$")


def _render_latex(tables: list[tuple[Group, pd.DataFrame]], budget: tp.Optional[str] = None) -> str:
    headers = [header for header, _, _ in _DISPLAY]
    align = [alignment for _, alignment, _ in _DISPLAY]
    blocks = ["% leaderboard: one table per group; needs \\usepackage{booktabs}"]
    for group, df in tables:
        block = ["\\begin{table}[ht]", "\\centering", f"\\caption{{{latex_escape(group['title'])}}}",
                 _booktabs(_display_rows(df), headers, align)]
        notes = [n for n in _notes(df) if n]
        if notes:
            block.append(f"\\par\\smallskip{{\\footnotesize {latex_escape(notes[0])}}}")
        block.append("\\end{table}")
        if budget is not None:
            block += ["\\begin{table}[ht]", "\\centering",
                      f"\\caption{{{latex_escape(group['title'] + ': ' + budget_title(budget))}}}",
                      _booktabs(budget_rows(df, budget), BUDGET_HEADERS, ("left", "right", "left")),
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


def _json_value(value: tp.Any) -> tp.Any:
    if value is None or (not isinstance(value, (dict, list)) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def _render_json(tables: list[tuple[Group, pd.DataFrame]]) -> str:
    rows = [{k: _json_value(v) for k, v in row.items()} for row in _flat_frame(tables).to_dict(orient="records")]
    return json.dumps(rows, indent=2, allow_nan=False) + "\n"


_RENDERERS: dict[str, tp.Callable[..., str]] = {
    "term": lambda tables, budget=None: _render_tables(tables, "simple", "", budget),
    "md": lambda tables, budget=None: _render_tables(tables, "github", "### ", budget),
    "latex": _render_latex,
    "csv": lambda tables: _flat_frame(tables).to_csv(index=False),
    "json": _render_json,
}
