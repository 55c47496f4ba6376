"""The efficiency table from bench records: does each method turn its GMACs savings into time?"""
from __future__ import annotations

import json
import typing as tp
from pathlib import Path


def read_records(store_root: str, cell_keys: tp.Optional[set] = None) -> tp.List[dict]:
    out = []
    for path in sorted((Path(store_root) / "bench").glob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if cell_keys is None or rec.get("cell_key") in cell_keys:
            out.append(rec)
    return out


def efficiency_rows(records: tp.Sequence[dict], batch_size: int) -> tp.List[dict]:
    """One row per record at ``batch_size``, relative to the dense record of the same backbone.

    speedup = clips/s / dense clips/s (fused attention); ``speedup_same_kernel`` divides by dense run
    with the attention implementation the method needs (explicit softmax when any block needs
    probabilities), so a kernel change cannot pass for a method's speedup.
    """
    def at(rec):
        return next((e for e in rec["sweep"] if e["batch_size"] == batch_size), None)

    def backbone(rec):
        return json.dumps(rec["config"]["backbone"], sort_keys=True)

    dense = {(backbone(r), r.get("fused_attention_forced")): r for r in records
             if r["config"]["method"]["name"] == "dense"}
    rows = []
    order = lambda r: (r["config"]["method"]["name"] != "dense", r.get("fused_attention_forced") is False,
                       -(r.get("gmacs_per_view") or 0), r["label"])
    for rec in sorted(records, key=order):
        e = at(rec)
        base = dense.get((backbone(rec), None))
        explicit_needed = "explicit" in (rec.get("attention_kernel_per_block") or [])
        same = dense.get((backbone(rec), False)) if explicit_needed else base
        be, se = (at(base) if base else None), (at(same) if same else None)
        gmacs = e.get("gmacs_per_view", rec.get("gmacs_per_view")) if e else rec.get("gmacs_per_view")
        row = {"method": rec["label"], "gmacs": gmacs,
               "clips_per_s": e and e["clips_per_s"],
               "iqr_pct": e and 100 * e["clips_per_s_iqr"] / e["clips_per_s"],
               "peak_mem_gib": e and e.get("peak_rss_increase_gib", e["peak_mem_gib"]),
               "overhead_pct": rec["overhead"] and 100 * rec["overhead"]["share"],
               "latency_p50_ms": rec["latency_bs1"] and rec["latency_bs1"]["p50_ms"],
               "latency_p90_ms": rec["latency_bs1"] and rec["latency_bs1"]["p90_ms"],
               "largest_bs": rec.get("largest_batch_size")}
        if base and e and be and gmacs:
            row["gmacs_ratio"] = be.get("gmacs_per_view", base["gmacs_per_view"]) / gmacs
            row["speedup"] = e["clips_per_s"] / be["clips_per_s"]
            row["efficiency"] = row["speedup"] / row["gmacs_ratio"]
        if same and e and se:
            row["speedup_same_kernel"] = e["clips_per_s"] / se["clips_per_s"]
        rows.append(row)
    return rows


HEADERS = [("method", "method", "{}"), ("GMACs/view", "gmacs", "{:.4g}"), ("GMACs ratio", "gmacs_ratio", "{:.2f}x"),
           ("clips/s", "clips_per_s", "{:.3g}"), ("IQR %", "iqr_pct", "{:.1f}"), ("speedup", "speedup", "{:.2f}x"),
           ("speedup (same attn kernel)", "speedup_same_kernel", "{:.2f}x"), ("efficiency", "efficiency", "{:.2f}"),
           ("overhead %", "overhead_pct", "{:.1f}"), ("peak mem GiB", "peak_mem_gib", "{:.3g}"),
           ("bs=1 p50/p90 ms", None, None), ("largest bs", "largest_bs", "{}")]


def render(records: tp.Sequence[dict], batch_size: int, fmt: str = "simple") -> str:
    from tabulate import tabulate

    rows = []
    for r in efficiency_rows(records, batch_size):
        line = []
        for _, key, f in HEADERS:
            if key is None:
                line.append("" if r["latency_p50_ms"] is None else f"{r['latency_p50_ms']:.1f}/{r['latency_p90_ms']:.1f}")
            else:
                v = r.get(key)
                line.append("" if v is None else f.format(v))
        rows.append(line)
    note = (f"\nbatch size {batch_size}; efficiency = speedup / GMACs ratio (1.0: savings fully realised); "
            "overhead % = time in the method's own operations; peak mem = peak RSS increase (CPU) or "
            "max allocated (CUDA); each figure the median of fresh-process repeats")
    return tabulate(rows, headers=[h for h, _, _ in HEADERS], tablefmt=fmt, disable_numparse=True) + note
