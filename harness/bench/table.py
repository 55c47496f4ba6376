"""The efficiency table from bench records: does each method turn its GMACs savings into time?

Rows are compared only within one regime (precision, compile mode, SDPA backend): each regime is
its own table, with the torch/CUDA versions and the device in its title, and speedups are over dense
in the same regime. ``vs fp32 eager`` is the one cross-regime figure: the same method's clips/s
over its own fp32, eager, torch-chosen-kernel record (what the regime itself buys).
"""
from __future__ import annotations

import json
import typing as tp
from harness.layout import Layout

from harness.suite.regime import DEFAULT

DEFAULT_REGIME = DEFAULT.as_tuple()  # (precision, compile mode, SDPA backend)


def read_records(store_root: str, cell_keys: tp.Optional[set] = None) -> tp.List[dict]:
    from harness.files import MAX_RECORD_BYTES, read_json

    out = []
    for path in sorted(Layout(store_root).bench.glob("*.json")):
        try:  # the bounded reader: a FIFO, /dev/zero or a deep file here costs its row, never the table
            rec = read_json(path, MAX_RECORD_BYTES, what="bench record")
        except ValueError:
            continue
        if not isinstance(rec, dict):
            continue
        if cell_keys is None or rec.get("cell_key") in cell_keys:
            out.append(rec)
    return out


def regime_of(rec: dict) -> tp.Tuple[str, str, str]:
    """(precision, compile mode, SDPA backend of the run); records before schema 2: fp32, eager, auto."""
    r = rec.get("regime") or {}
    return (r.get("precision", rec.get("precision", DEFAULT.precision)),
            r.get("compile", rec.get("compile_mode", DEFAULT.compile)), r.get("sdpa_backend", DEFAULT.sdpa_backend))


def kernels_of(rec: dict) -> tp.List[str]:
    """The distinct attention kernels a record's blocks ran, slowest first."""
    from harness.measure.kernels import SLOWNESS

    per_block = rec.get("sdpa_backend_per_block") or rec.get("attention_kernel_per_block") or []
    kinds = {k for entry in per_block for k in str(entry).split("+") if k and k != "none"}
    return sorted(kinds, key=lambda k: SLOWNESS.index(k) if k in SLOWNESS else len(SLOWNESS))


def efficiency_rows(records: tp.Sequence[dict], batch_size: int,
                    regime: tp.Optional[tp.Tuple[str, str, str]] = None) -> tp.List[dict]:
    """One row per record at ``batch_size`` (of ``regime``, default: every regime), relative to the
    dense record of the same backbone and regime.

    speedup = clips/s / dense clips/s (torch's kernel choice); ``speedup_same_kernel`` divides by dense
    run with the slowest attention kernel the method's blocks ran (explicit softmax when a block
    needs probabilities; a forced SDPA backend, e.g. memory-efficient where an additive bias rules out
    flash, when such a dense record exists), so a kernel change cannot pass for a method's speedup.
    """
    def at(rec):
        return next((e for e in rec["sweep"] if e["batch_size"] == batch_size), None) if rec else None

    def backbone(rec):
        return json.dumps(rec["config"]["backbone"], sort_keys=True)

    def forced(rec):
        if rec.get("fused_attention_forced") is False:
            return "explicit"
        return rec.get("sdpa_backend") if rec.get("sdpa_backend_forced") else None

    dense = {(backbone(r), regime_of(r), forced(r)): r for r in records if r["config"]["method"]["name"] == "dense"}
    plain = {(backbone(r), r["label"]): r for r in records if regime_of(r) == DEFAULT_REGIME}
    chosen = [r for r in records if regime is None or regime_of(r) == regime]
    order = lambda r: (regime_of(r), r["config"]["method"]["name"] != "dense", forced(r) is not None,
                       -(r.get("gmacs_per_view") or 0), r["label"])
    rows = []
    for rec in sorted(chosen, key=order):
        e = at(rec)
        b, reg = backbone(rec), regime_of(rec)
        base = dense.get((b, reg, None))
        kinds = kernels_of(rec)
        slowest = kinds[0] if kinds else None
        if slowest is not None and (b, reg, slowest) in dense:
            same = dense[(b, reg, slowest)]
        else:
            base_kinds = kernels_of(base) if base else []
            same = base if base and (not base_kinds or base_kinds[0] == slowest or slowest is None) else None
        be, se = at(base), at(same)
        gmacs = e.get("gmacs_per_view", rec.get("gmacs_per_view")) if e else rec.get("gmacs_per_view")
        row = {"method": rec["label"], "regime": reg, "gmacs": gmacs, "kernels": "+".join(kinds) or None,
               "clips_per_s": e and e["clips_per_s"],
               "iqr_pct": e and 100 * e["clips_per_s_iqr"] / e["clips_per_s"],
               "peak_mem_gib": e and e.get("peak_rss_increase_gib", e["peak_mem_gib"]),
               "overhead_pct": rec["overhead"] and 100 * rec["overhead"]["share"],
               "latency_p50_ms": rec["latency_bs1"] and rec["latency_bs1"]["p50_ms"],
               "latency_p90_ms": rec["latency_bs1"] and rec["latency_bs1"]["p90_ms"],
               "latency_p99_ms": rec["latency_bs1"] and rec["latency_bs1"].get("p99_ms"),  # absent in older records
               "largest_bs": rec.get("largest_batch_size"),
               "energy_j_per_clip": e and e.get("energy_j_per_clip"),
               "compile_time_s": (e and e.get("compile_time_s")) or rec.get("compile_time_s"),
               "recompiles": rec.get("recompiles"), "graph_breaks": rec.get("compile_graph_breaks"),
               "error": rec.get("error")}
        if base and e and be and gmacs:
            row["gmacs_ratio"] = be.get("gmacs_per_view", base["gmacs_per_view"]) / gmacs
            row["speedup"] = e["clips_per_s"] / be["clips_per_s"]
            row["efficiency"] = row["speedup"] / row["gmacs_ratio"]
        if same and e and se:
            row["speedup_same_kernel"] = e["clips_per_s"] / se["clips_per_s"]
        ref = at(plain.get((b, rec["label"])))
        if e and ref and reg != DEFAULT_REGIME:
            row["vs_fp32_eager"] = e["clips_per_s"] / ref["clips_per_s"]
        rows.append(row)
    return rows


HEADERS = [("method", "method", "{}"), ("GMACs/view", "gmacs", "{:.4g}"), ("GMACs ratio", "gmacs_ratio", "{:.2f}x"),
           ("clips/s", "clips_per_s", "{:.3g}"), ("IQR %", "iqr_pct", "{:.1f}"), ("speedup", "speedup", "{:.2f}x"),
           ("speedup (same attn kernel)", "speedup_same_kernel", "{:.2f}x"), ("efficiency", "efficiency", "{:.2f}"),
           ("vs fp32 eager", "vs_fp32_eager", "{:.2f}x"), ("attn kernels", "kernels", "{}"),
           ("overhead %", "overhead_pct", "{:.1f}"), ("peak mem GiB", "peak_mem_gib", "{:.3g}"),
           ("J/clip", "energy_j_per_clip", "{:.3g}"), ("compile s", "compile_time_s", "{:.1f}"),
           ("recompiles", "recompiles", "{}"), ("graph breaks", "graph_breaks", "{}"),
           ("bs=1 p50/p90/p99 ms", None, None), ("largest bs", "largest_bs", "{}"),
           ("error", "error", "{}")]


def regime_title(records: tp.Sequence[dict], regime: tp.Tuple[str, str, str]) -> str:
    first = next((r for r in records if regime_of(r) == regime), {})
    cuda = first.get("cuda_version")
    return (f"precision {regime[0]} | compile {regime[1]} | sdpa {regime[2]} | torch {first.get('torch_version', '?')}"
            f" | CUDA {cuda or 'none'} | {first.get('device_name') or first.get('device') or '?'}")


def render(records: tp.Sequence[dict], batch_size: int, fmt: str = "simple") -> str:
    from tabulate import tabulate

    regimes = sorted({regime_of(r) for r in records}, key=lambda g: (g != DEFAULT_REGIME, g))
    parts = []
    for regime in regimes:
        rows = efficiency_rows(records, batch_size, regime)
        used = [h for h in HEADERS if h[1] is None or any(r.get(h[1]) is not None for r in rows) or h[1] == "method"]
        lines = []
        for r in rows:
            line = []
            for _, key, f in used:
                if key is None:
                    line.append("" if r["latency_p50_ms"] is None else
                                f"{r['latency_p50_ms']:.1f}/{r['latency_p90_ms']:.1f}/"
                                + ("-" if r["latency_p99_ms"] is None else f"{r['latency_p99_ms']:.1f}"))
                else:
                    v = r.get(key)
                    line.append("" if v is None else f.format(v))
            lines.append(line)
        from harness.report.safe import term

        lines = [[term(c) for c in line] for line in lines]  # method labels are suite text
        title = term(regime_title(records, regime))
        parts.append((f"### {title}\n\n" if fmt == "github" else f"{title}\n")
                     + tabulate(lines, headers=[h for h, _, _ in used], tablefmt=fmt, disable_numparse=True))
    note = (f"\nbatch size {batch_size}; efficiency = speedup / GMACs ratio (1.0: savings fully realised), speedups "
            "over dense in the same regime; vs fp32 eager = the same method over its fp32 eager record; overhead % = "
            "time in the method's own operations; peak mem = peak RSS increase (CPU) or max allocated (CUDA); "
            "J/clip = NVML board energy over the timed iterations (blank: not measured); each figure the median of "
            "the repeats")
    return "\n\n".join(parts) + note
