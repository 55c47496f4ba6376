"""Benchmark bookkeeping: warm-up excluded, per-iteration times kept, OOM back-off, interleaving, table."""
import os

import pytest
import torch

from harness.bench.sweep import BenchConfig, run_bench, targets_of
from harness.bench.table import efficiency_rows, read_records, render
from harness.measure.regions import RegionTimer, reduction_region
from harness.measure.speed import measure_throughput
from harness.suite import load_suite

CKPT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "checkpoints", "synthetic_vit_tiny.pth"))


class Counting(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x.sum()


def test_warmup_is_excluded_and_every_timed_iteration_is_kept():
    model = Counting()
    out = measure_throughput(model, (3, 2, 4, 4), device=torch.device("cpu"), batch_size=2, warmup_iters=7,
                             warmup_s=0.0, timed_iters=5, min_timed_s=0.0, repeats=3)
    assert out["warmup_iters"] == 7
    assert [len(t) for t in out["iteration_times_s"]] == [5, 5, 5]
    assert model.calls == 7 + 15
    assert out["clips_per_s"] == pytest.approx(sorted(2 * 5 / sum(t) for t in out["iteration_times_s"])[1])


def test_region_timer_counts_only_inside_a_measurement():
    with reduction_region("outside"):
        pass
    with RegionTimer() as timer:
        with reduction_region("block0/x"):
            sum(range(10000))
        with reduction_region("block0/x"):
            pass
    assert set(timer.seconds) == {"block0/x"} and timer.calls["block0/x"] == 2 and timer.seconds["block0/x"] > 0


def _suite(tmp_path):
    text = f"""name: b
backbones: [{{name: synthetic_vit_tiny, checkpoint: {CKPT}}}]
datasets: [{{name: synthetic_motion, split: val, root: data, num_train: 0, num_val: 4}}]
methods: [{{name: dense}}, {{name: tome, r: [8, 16]}}]
"""
    (tmp_path / "s.yaml").write_text(text)
    return load_suite(str(tmp_path / "s.yaml"))


def test_interleaved_fresh_measurements_with_oom_back_off(tmp_path):
    suite = _suite(tmp_path)
    calls = []

    def fake(req):
        calls.append((req["method"]["params"].get("r"), req["fused_attention"], req["batch_size"]))
        if req["method"]["params"].get("r") == 16 and req["batch_size"] >= 4:
            return {"oom": True, "batch_size": req["batch_size"]}
        gm = {None: 0.14, 8: 0.12, 16: 0.10}[req["method"]["params"].get("r")]
        if req["method"]["params"].get("r") == 8 and req["batch_size"] == 1:
            gm = 0.5  # an adaptive method's executed GMACs depend on the batch: the table reads its own size
        rate = 100.0 / gm * (0.5 if req["fused_attention"] is False else 1.0)
        return {"oom": False, "batch_size": req["batch_size"], "clips_per_s": rate, "iteration_times_s": [0.01, 0.02],
                "peak_mem_gib": 0.1, "peak_mem_kind": "cpu_process_peak_rss", "loadavg": [0, 0, 0],
                "gmacs_per_view": gm, "attention_kernel_per_block": ["sdpa"] * 4, "device": "cpu",
                "torch_threads": 1, "timer": "perf_counter", "timing_input": "random normal",
                **({"overhead": {"share": 0.02}} if req["overhead"] else {})}

    cfg = BenchConfig(batch_sizes=[1, 4, 8], repeats=2, reference_batch_size=4)
    records = run_bench(suite, cfg, store_root=str(tmp_path / "results"), runner=fake, out=open(os.devnull, "w"))
    assert [t.label for t in targets_of(suite, cfg)] == ["dense", "dense [explicit attention]", "tome r=8", "tome r=16"]
    # every method once per (repeat, batch size), in order; r=16 never retried above its OOM size
    assert calls[:4] == [(None, None, 1), (None, False, 1), (8, None, 1), (16, None, 1)]
    assert (16, None, 8) not in calls and sum(1 for c in calls if c[0] == 16) == 3
    by_label = {r["label"]: r for r in records}
    assert by_label["tome r=16"]["oom_at_batch_size"] == 4 and by_label["tome r=16"]["largest_batch_size"] == 1
    assert by_label["dense"]["latency_bs1"]["iterations"] == 4
    assert by_label["dense"]["overhead"] == {"share": 0.02}
    stored = read_records(str(tmp_path / "results"))
    assert len(stored) == 4
    rows = {r["method"]: r for r in efficiency_rows(stored, 4)}
    assert [e["gmacs_per_view"] for e in by_label["tome r=8"]["sweep"]] == pytest.approx([0.5, 0.12, 0.12])
    assert rows["tome r=8"]["gmacs_ratio"] == pytest.approx(0.14 / 0.12)
    assert rows["tome r=8"]["efficiency"] == pytest.approx(1.0)
    assert rows["dense [explicit attention]"]["speedup"] == pytest.approx(0.5)
    assert "efficiency" in render(stored, 4)


def test_worker_measures_a_real_model_in_this_process():
    from harness.bench.worker import measure

    req = {"backbone": {"name": "synthetic_vit_tiny", "checkpoint": CKPT}, "method": {"name": "tome", "params": {"r": 8}},
           "dataset": {}, "batch_size": 2, "threads": 1, "fused_attention": None, "overhead": True,
           "timing": {"warmup_iters": 1, "warmup_s": 0.0, "timed_iters": 3, "min_timed_s": 0.0}}
    out = measure(req)
    assert not out["oom"] and len(out["iteration_times_s"]) == 3 and out["clips_per_s"] > 0
    assert out["attention_kernel_per_block"] == ["sdpa"] * 4
    assert 0 < out["overhead"]["share"] < 1
    assert any(k.endswith("after_attention") for k in out["overhead"]["per_region_share"])
    assert out["gmacs_per_view"] == pytest.approx(0.1275, abs=1e-3)
