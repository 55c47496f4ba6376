"""Leaderboard tables built from cell records (torch-free, so ``harness report`` stays fast).

Records are grouped by their exact ``config.backbone`` and ``config.dataset`` dicts; every group
gets one table. Each row is compared with the group's dense baseline: the ``dense`` record with
empty params and the same ``config.eval`` (throughput also needs the same ``config.measure``).
Tables keep raw values (accuracies as fractions); only ``term``, ``md``, ``latex`` and ``html`` format them.
The ``pareto`` column marks the rows on the group's accuracy-cost frontier (top-1 vs GMACs/view).

A speedup is the median over repeats of (row clips/s / dense clips/s) in the same interleaved repeat (each
repeat's clips/s from its median forward time), with a seeded bootstrap 95% interval (``speedup_ci_low``/
``high``); repeats of two different runs (no shared ``metrics.timing.session``) are compared unpaired
(``speedup_paired`` false). It is flagged
(``speedup_unreliable``) when its interval reaches beyond ``SPEEDUP_TOLERANCE`` of it on either side, or while either was timed
other processes took more of the CPUs than the recorded limit or the load average exceeded the cores. Agreement with dense gets a 95% Wilson interval and
the flip counts: videos dense got right and the row wrong (``flips_right_to_wrong``) and the reverse.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import statistics
import typing as tp
from pathlib import Path

import pandas as pd
from harness.report.pareto import at_budget, frontier, parse_budget, versus_baselines
from harness.report.stats import paired_comparison, paired_ratio, unpaired_ratio, wilson_interval

Record = tp.Dict[str, tp.Any]
Group = tp.Dict[str, tp.Any]
Fmt = tp.Literal["term", "md", "csv", "json", "latex", "html"]

FORMATS: tp.Tuple[str, ...] = ("term", "md", "csv", "json", "latex", "html")
FILTERS: tp.Tuple[str, ...] = ("suite", "backbone", "dataset", "method", "precision", "compile", "sdpa_backend")
GROUP_COLUMNS = ["backbone", "checkpoint", "dataset", "group"]
INT_COLUMNS = ["coverage_decoded", "coverage_listed", "num_videos", "views_per_video", "throughput_batch_size",
               "flips_right_to_wrong", "flips_wrong_to_right"]
COLUMNS = [
    "method", "settings", "top1", "top1_ci_low", "top1_ci_high", "top5", "delta_top1", "p_vs_dense",
    "agreement_vs_dense", "delta_top1_vs_baselines", "gmacs_per_view", "gmacs_ratio", "clips_per_s",
    "speedup", "peak_mem_gib", "coverage_decoded", "coverage_listed", "status", "pareto",
    "label", "key", "error_type", "error_message", "gflops_per_view", "gmacs_per_video", "clips_per_s_iqr",
    "throughput_batch_size", "peak_mem_kind", "num_videos", "views_per_video", "finished_at",
    "gmacs_theoretical_mean", "gmacs_theoretical_std", "gmacs_theoretical_p95", "method_name", "latency_ms",
    "speedup_unreliable", "timing_warnings", "speedup_ci_low", "speedup_ci_high", "speedup_paired",
    "agreement_ci_low", "agreement_ci_high", "flips_right_to_wrong", "flips_wrong_to_right",
]
_FLOAT_METRICS = ["top1", "top5", "gmacs_per_view", "gflops_per_view", "gmacs_per_video", "clips_per_s",
                  "clips_per_s_iqr", "peak_mem_gib"]
_FLOAT_COLUMNS = _FLOAT_METRICS + ["latency_ms", "gmacs_theoretical_mean", "gmacs_theoretical_std", "gmacs_theoretical_p95",
                                   "delta_top1", "gmacs_ratio", "speedup", "top1_ci_low", "top1_ci_high",
                                   "p_vs_dense", "agreement_vs_dense", "delta_top1_vs_baselines",
                                   "speedup_ci_low", "speedup_ci_high", "agreement_ci_low", "agreement_ci_high"]
Samples = tp.Optional[tp.Callable[[str], tp.List[dict]]]  # record key -> per-video rows (ResultStore.read_samples)
_EPOCH = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
SPEEDUP_TOLERANCE = 0.10  # a speedup whose 95% interval reaches further than this from it is flagged


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
    regimes = [regime_of(recs[0]) for recs in buckets.values()]
    titles = _titles(configs, [_regime_title(regime) for regime in regimes])
    code_ids: dict = {}  # (method, params) -> this checkout's numerics_code id, for this call only
    tables = [(dict(_group(bb, ds, title), regime=dict(zip(REGIME_FIELDS, regime))), _table(recs, samples, code_ids))
              for (bb, ds), title, regime, recs in zip(configs, titles, regimes, buckets.values())]
    return sorted(tables, key=lambda t: t[0]["title"])


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


def _names(value: tp.Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _keep(rec: Record, filters: dict[str, list[str]]) -> bool:
    fields = {"suite": _dict(rec.get("suite")).get("name"), "backbone": _config(rec, "backbone").get("name"),
              "dataset": _config(rec, "dataset").get("name"), **dict(zip(REGIME_FIELDS, regime_of(rec)))}
    return all(fields[k] in names for k, names in filters.items() if k in fields)


def _config(rec: Record, part: str) -> dict:
    return _dict(_dict(rec.get("config")).get(part))


def _canon(value: tp.Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


REGIME_FIELDS = ("precision", "compile", "sdpa_backend")
_REGIME_DEFAULT = ("fp32", "off", "auto")


def regime_of(rec: Record) -> tuple[str, str, str]:
    """(precision, compile mode, SDPA backend) a record was measured in: rows of different regimes are never
    in one table (their speedups and even their accuracies are not comparable)."""
    ev, me = _config(rec, "eval"), _config(rec, "measure")
    return (str(ev.get("precision") or "fp32"), str(me.get("compile") or "off"), str(me.get("sdpa_backend") or "auto"))


def _regime_title(regime: tuple[str, str, str]) -> str:
    if regime == _REGIME_DEFAULT:
        return ""
    return " [" + ", ".join([regime[0]] + ([f"compile {regime[1]}"] if regime[1] != "off" else []) +
                            ([f"sdpa {regime[2]}"] if regime[2] != "auto" else [])) + "]"


def _group_id(rec: Record) -> tuple[str, str, tuple]:
    return _canon(_config(rec, "backbone")), _canon(_config(rec, "dataset")), regime_of(rec)


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


def _titles(configs: list[tuple[dict, dict]], suffixes: tp.Optional[list[str]] = None) -> list[str]:
    """Base titles (plus each group's regime suffix), with the differing config fields appended where two
    groups would share one."""
    base = [_base_title(bb, ds) + suffix for (bb, ds), suffix in zip(configs, suffixes or [""] * len(configs))]
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

def _table(records: list[Record], samples: Samples, code_ids: dict) -> pd.DataFrame:
    rows = [_row(rec, code_ids) for rec in records]
    _add_baselines(rows, samples)
    rows.sort(key=_sort_key)
    df = pd.DataFrame(rows, columns=COLUMNS)
    df = df.astype({c: "Int64" for c in INT_COLUMNS} | {c: "float64" for c in _FLOAT_COLUMNS})
    df["pareto"] = frontier(df, "gmacs_per_view", "top1")
    df["delta_top1_vs_baselines"] = versus_baselines(df)
    return df


def _dict(value: tp.Any) -> dict:
    return value if isinstance(value, dict) else {}


def _row(rec: Record, code_ids: dict) -> dict:
    config = _dict(rec.get("config"))
    method = _dict(config.get("method"))
    name = str(method.get("name") or "?")
    params = _dict(method.get("params"))
    invalid = _invalid_metrics(rec) if rec.get("status") == "ok" else None
    metrics = _dict(rec.get("metrics")) if rec.get("status") == "ok" and not invalid else {}
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
        "status": f"invalid record ({invalid})" if invalid else
        _status(rec) + (" (other code)" if _other_code(rec, name, params, code_ids) else ""),
        "label": rec.get("label"), "key": rec.get("key"),
        "error_type": error.get("type"), "error_message": error.get("message"),
        "throughput_batch_size": _integer(metrics.get("throughput_batch_size")),
        "peak_mem_kind": metrics.get("peak_mem_kind"), "num_videos": _integer(metrics.get("num_videos")),
        "views_per_video": _integer(metrics.get("views_per_video")), "finished_at": rec.get("finished_at"),
        "timing_warnings": "; ".join(_dict(metrics.get("timing")).get("warnings") or []) or None,
        "_dense": name == "dense" and all(v is None for v in params.values()),
        "_eval": _canon(config.get("eval")), "_measure": _canon(config.get("measure")),
        "_rates": _repeat_rates(metrics), "_timing": _dict(metrics.get("timing")),
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


def _other_code(rec: Record, method: str, params: dict, code_ids: dict) -> bool:
    """Whether a finished record was computed by other model/method/data code than this checkout's
    (``provenance.numerics_code``; records without it, or of methods this checkout lacks, are not judged)."""
    from harness.provenance import code_state

    return rec.get("status") == "ok" and code_state(rec, method, params, code_ids) == "other code"


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


def _invalid_metrics(rec: Record) -> str | None:
    """Why an ``ok`` record's metrics cannot be shown (then the row shows none of them, and no comparison
    against its samples), or None. A record is written by the harness; this catches a damaged or edited one."""
    metrics = rec.get("metrics")
    if not isinstance(metrics, dict):
        return "metrics is not a mapping"
    for name in ("top1", "top5"):
        value = metrics.get(name)
        if (name == "top1" or value is not None) and not (_number(value) is not None and 0 <= value <= 1):
            return f"metrics.{name} is {_shown(value)}, not a fraction in [0, 1]"
    videos = metrics.get("num_videos")
    if videos is not None and not (_integer(videos) == videos and videos >= 1):
        return f"metrics.num_videos is {_shown(videos)}, not a positive integer"
    for name in ("gmacs_per_view", "clips_per_s", "peak_mem_gib"):
        value = metrics.get(name)
        if value is not None and not (_number(value) is not None and value >= 0):
            return f"metrics.{name} is {_shown(value)}, not a non-negative number"
    return None


def _shown(value: tp.Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


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
        row["agreement_ci_low"], row["agreement_ci_high"] = paired["agreement_ci"] if paired else (None, None)
        row["flips_right_to_wrong"] = paired and paired["only_baseline_correct"]
        row["flips_wrong_to_right"] = paired and paired["only_this_correct"]
        speed = _match(dense, row, "_eval", "_measure")
        row["delta_top1"] = _diff(row["top1"], accuracy and accuracy["top1"])
        row["gmacs_ratio"] = _ratio(row["gmacs_per_view"], accuracy and accuracy["gmacs_per_view"])
        row.update(_speedup(row, speed))


def _speedup(row: dict, dense: dict | None) -> dict:
    """speedup (paired where the two were timed in one interleaved session), its interval, and the flag."""
    ratio = _ratio(row["clips_per_s"], dense and dense["clips_per_s"])
    out = {"speedup": ratio, "speedup_ci_low": None, "speedup_ci_high": None, "speedup_paired": None,
           "speedup_unreliable": None}
    if ratio is None:
        return out
    rates, base = _rates(row), _rates(dense)
    session = row["_timing"].get("session")
    paired = bool(rates and base and session and session == dense["_timing"].get("session"))
    interval = paired_ratio(rates, base) if paired else (unpaired_ratio(rates, base) if rates and base else None)
    if interval is None:  # a record without its repeats: the ratio of medians, flagged by the timings' warnings
        out["speedup_unreliable"] = bool(row["timing_warnings"] or dense["timing_warnings"])
        return out
    low, high, value = interval["low"], interval["high"], interval["ratio"]
    wide = low < value * (1 - SPEEDUP_TOLERANCE) or high > value * (1 + SPEEDUP_TOLERANCE)
    out.update(speedup=value, speedup_ci_low=low, speedup_ci_high=high, speedup_paired=paired,
               speedup_unreliable=wide or _overloaded(row) or _overloaded(dense))
    return out


def _rates(row: dict) -> list[float]:
    rates = row["_rates"]
    return [r for r in rates if _number(r) is not None] if isinstance(rates, list) else []


def _repeat_rates(metrics: dict) -> list | None:
    """Clips/s of each timed repeat from its median forward time (``iteration_times_s``): on a shared machine one
    preempted forward inflates a repeat's mean, and a speedup should not depend on which cell it hit. Records
    without iteration times: ``clips_per_s_repeats``."""
    runs, bs = metrics.get("iteration_times_s"), _number(metrics.get("throughput_batch_size"))
    if bs and isinstance(runs, list) and runs and all(isinstance(r, list) for r in runs):
        medians = [statistics.median(times) if times else None
                   for times in ([t for t in run if _number(t) is not None and t > 0] for run in runs)]
        return [bs / m if m else None for m in medians]
    return metrics.get("clips_per_s_repeats")


def _overloaded(row: dict) -> bool:
    """Whether the machine was busy while the row was timed (``metrics.timing``): other processes took more
    than the recorded limit of the CPUs in a repeat, or the 1-minute load average exceeded the cores."""
    timing = row["_timing"]
    shares, limit = timing.get("others_cpu_share_per_repeat"), _number(timing.get("others_cpu_share_limit"))
    if isinstance(shares, list) and limit is not None and any((_number(x) or 0.0) > limit for x in shares):
        return True
    loads = timing.get("load_avg_per_repeat")
    loads = [x for x in loads if _number(x) is not None] if isinstance(loads, list) else []
    cores = _number(timing.get("cores"))
    if cores is None:  # a record from before ``cores`` was stored: its warning says so
        return "load average" in (row["timing_warnings"] or "")
    return any(x > cores for x in loads)


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


