"""Benchmark bookkeeping: warm-up excluded, per-iteration times kept, OOM back-off, interleaving, table."""
import os

import pytest
import torch

from harness.bench.sweep import BenchConfig, run_bench, targets_of
from harness.bench.table import efficiency_rows, read_records, render
from harness.measure.regions import RegionTimer, reduction_region
from harness.measure.speed import measure_throughput
from harness.suite import CellSpec, load_suite

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
                             warmup_s=0.0, timed_iters=5, min_timed_s=0.0, repeats=3,
                             precision="fp32", sdpa_backend="auto")
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
        spec = CellSpec.from_json(req["cell"])
        r, fused = spec.method.params.get("r"), spec.backbone.get("fused_attention")
        calls.append((r, fused, req["batch_size"]))
        if r == 16 and req["batch_size"] >= 4:
            return {"oom": True, "batch_size": req["batch_size"]}
        gm = {None: 0.14, 8: 0.12, 16: 0.10}[r]
        if r == 8 and req["batch_size"] == 1:
            gm = 0.5  # an adaptive method's executed GMACs depend on the batch: the table reads its own size
        rate = 100.0 / gm * (0.5 if fused is False else 1.0)
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
    latency = by_label["dense"]["latency_bs1"]
    assert latency["iterations"] == 4 and latency["p50_ms"] <= latency["p90_ms"] <= latency["p99_ms"]
    assert by_label["dense"]["overhead"] == {"share": 0.02}
    stored = read_records(str(tmp_path / "results"))
    assert len(stored) == 4
    rows = {r["method"]: r for r in efficiency_rows(stored, 4)}
    assert [e["gmacs_per_view"] for e in by_label["tome r=8"]["sweep"]] == pytest.approx([0.5, 0.12, 0.12])
    assert rows["tome r=8"]["gmacs_ratio"] == pytest.approx(0.14 / 0.12)
    assert rows["tome r=8"]["efficiency"] == pytest.approx(1.0)
    assert rows["dense [explicit attention]"]["speedup"] == pytest.approx(0.5)
    assert "efficiency" in render(stored, 4) and "bs=1 p50/p90/p99 ms" in render(stored, 4)


def _request(target, cfg, **extra):
    """What ``run_bench`` sends a worker for ``target``: its cell as JSON plus bench's own fields."""
    return {"cell": target.spec(cfg).to_json(), "batch_size": 2, "overhead": False, "energy": False,
            "compile_backend": cfg.compile_backend, **extra}


def test_worker_measures_a_real_model_in_this_process(tmp_path):
    from harness.bench.sweep import Target
    from harness.bench.worker import measure

    (tome,) = [c for c in _suite(tmp_path).cells() if c.method.params.get("r") == 8]
    cfg = BenchConfig(threads=1, warmup_iters=1, warmup_s=0.0, timed_iters=3, min_timed_s=0.0)
    out = measure(_request(Target(tome), cfg, overhead=True))
    assert not out["oom"] and len(out["iteration_times_s"]) == 3 and out["clips_per_s"] > 0
    assert out["attention_kernel_per_block"] == ["sdpa"] * 4
    assert 0 < out["overhead"]["share"] < 1
    assert any(k.endswith("after_attention") for k in out["overhead"]["per_region_share"])
    assert out["gmacs_per_view"] == pytest.approx(0.1275, abs=1e-3)


def test_worker_builds_and_times_through_the_task(tmp_path, monkeypatch):
    """The worker's model is the one ``run.cell.prepare_cell`` builds from the target's cell (random weights,
    no dataset for a static method) and what it times is ``run.cell.throughput_subject``'s."""
    import harness.run.cell as cell
    from harness.bench.sweep import Target
    from harness.bench.worker import measure

    (tome,) = [c for c in _suite(tmp_path).cells() if c.method.params.get("r") == 8]
    target = Target(tome, fused_attention=False, precision="bf16", sdpa_backend="math")
    cfg = BenchConfig(threads=1, warmup_iters=0, warmup_s=0.0, timed_iters=1, min_timed_s=0.0, device="cpu")
    spec = target.spec(cfg)
    assert CellSpec.from_json(spec.to_json()) == spec and spec.key == CellSpec.from_json(spec.to_json()).key
    assert spec.regime.as_tuple() == ("bf16", "off", "math") and spec.backbone["fused_attention"] is False
    assert spec.key != tome.key and target.key.startswith(tome.key + "-")  # the target's key: the cell's + a suffix
    built, timed = [], []
    prepare, subject = cell.prepare_cell, cell.throughput_subject
    monkeypatch.setattr(cell, "prepare_cell", lambda *a, **k: built.append((a, k, prepare(*a, **k))) or built[-1][2])
    monkeypatch.setattr(cell, "throughput_subject", lambda *a, **k: timed.append(subject(*a, **k)) or timed[-1])
    out = measure(_request(target, cfg))
    (((got, _, _), options, setup),) = built
    assert got == spec and options == {"weights": False, "data": False}
    assert setup.checkpoint is None and setup.dataset is None and not out.get("failed")
    assert timed[0]["model"] is setup.model and out["precision"] == "bf16" and out["sdpa_backend"] == "math"
    torch.manual_seed(spec.measure.seed)
    again = prepare(spec, cell.Progress(None), weights=False, data=False).model
    assert all(torch.equal(a, b) for a, b in zip(setup.model.state_dict().values(), again.state_dict().values()))
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("regime, error", [(dict(precision="fp16"), "precision fp16 runs on CUDA only"),
                                           (dict(sdpa_backend="efficient"), "sdpa_backend 'efficient' cannot run")])
def test_a_regime_the_device_cannot_run_is_that_rows_error(tmp_path, regime, error):
    from harness.bench.sweep import Target
    from harness.bench.worker import measure

    (dense,) = [c for c in _suite(tmp_path).cells() if c.method.name == "dense"]
    out = measure(_request(Target(dense, **regime), BenchConfig(threads=1, device="cpu")))
    assert out["failed"] and not out["oom"] and error in out["error"] and out["device_type"] == "cpu"


def _fake_result(req, rate, **extra):
    spec = CellSpec.from_json(req["cell"])
    return {"oom": False, "batch_size": req["batch_size"], "clips_per_s": rate, "iteration_times_s": [0.01],
            "peak_mem_gib": 0.1, "peak_mem_kind": "cpu_process_peak_rss", "loadavg": [0, 0, 0],
            "gmacs_per_view": 0.14 if spec.method.name == "dense" else 0.07,
            "attention_kernel_per_block": ["sdpa"] * 4, "device": "cpu", "torch_threads": 1,
            "timer": "perf_counter", "timing_input": "random normal", "precision": spec.regime.precision,
            "torch_version": "x", "device_name": "cpu", **extra}


def test_regimes_are_compared_within_themselves_and_failures_are_rows(tmp_path):
    text = """name: r
backbones: [{name: synthetic_vit_tiny}]
datasets: [{name: synthetic_motion, split: val, root: data, num_train: 0, num_val: 4}]
methods: [{name: dense}, {name: tome, r: 8}]
"""
    (tmp_path / "s.yaml").write_text(text)
    suite = load_suite(str(tmp_path / "s.yaml"))

    def fake(req):
        spec = CellSpec.from_json(req["cell"])
        name, regime = spec.method.name, spec.regime
        if regime.compile == "default" and name == "tome":
            return {"oom": False, "failed": True, "batch_size": req["batch_size"],
                    "error": "Unsupported: data-dependent shape"}
        rate = (100.0 if name == "dense" else 180.0) * (1.5 if regime.precision == "bf16" else 1.0)
        if regime.sdpa_backend == "math":
            rate /= 2
        per_block = ["efficient"] * 4 if name == "tome" else ["math" if regime.sdpa_backend == "math" else "flash"] * 4
        return _fake_result(req, rate, sdpa_backend_per_block=per_block,
                            compile_time_s=3.0 if regime.compile != "off" else None)

    cfg = BenchConfig(batch_sizes=[2], repeats=1, reference_batch_size=2, precisions=["fp32", "bf16"],
                      compile_modes=["off", "default"], explicit_dense=False, dense_backends=["efficient"])
    with pytest.raises(ValueError, match="fp16 runs on CUDA only"):
        run_bench(suite, BenchConfig(precisions=["fp16"], device="cpu"), runner=fake)
    records = run_bench(suite, cfg, store_root=str(tmp_path / "res"), runner=fake, out=open(os.devnull, "w"))
    keys = {r["key"] for r in records}
    assert len(keys) == len(records) == 12  # (dense, dense [sdpa efficient], tome) x 2 precisions x 2 compile modes
    rows = efficiency_rows(records, 2)
    by = {(r["method"], r["regime"]): r for r in rows}
    tome = by[("tome r=8", ("bf16", "off", "auto"))]
    assert tome["speedup"] == pytest.approx(1.8)  # over bf16 dense, not fp32 dense
    assert tome["vs_fp32_eager"] == pytest.approx(1.5)
    assert tome["kernels"] == "efficient"
    # same-kernel baseline: dense forced to the efficient kernel the method ran
    assert by[("dense [sdpa efficient]", ("bf16", "off", "auto"))]["speedup"] == pytest.approx(1.0)
    failed = by[("tome r=8", ("fp32", "default", "auto"))]
    assert failed["clips_per_s"] is None and failed["error"] == "Unsupported: data-dependent shape"
    assert by[("dense", ("fp32", "default", "auto"))]["compile_time_s"] == 3.0
    table = render(records, 2)
    assert "precision bf16 | compile default" in table and "Unsupported: data-dependent shape" in table
    assert table.index("precision fp32 | compile off") < table.index("precision bf16")


def test_bf16_compiled_cell_runs_end_to_end_in_process(tmp_path):
    """The issue's CPU 'done when': bf16 + compile default on the tiny model, record and table hold the regime."""
    suite = _suite(tmp_path)
    cfg = BenchConfig(batch_sizes=[1], repeats=1, reference_batch_size=1, precisions=["bf16"], compile_modes=["default"],
                      explicit_dense=False, in_process=True, compile_backend="eager", threads=1,
                      warmup_iters=1, warmup_s=0.0, timed_iters=2, min_timed_s=0.0)
    suite_dense = [c for c in suite.cells() if c.method.name == "dense"]
    suite.cells = lambda: suite_dense  # dense only: keep the test fast
    (rec,) = run_bench(suite, cfg, store_root=str(tmp_path / "res"), out=open(os.devnull, "w"))
    assert rec["precision"] == "bf16" and rec["compile_mode"] == "default" and rec["compile_time_s"] > 0
    assert rec["recompiles"] == 0 and rec["sdpa_backend_per_block"] == ["cpu_flash"] * 4
    assert rec["torch_version"] == torch.__version__ and rec["error"] is None
    assert rec["sweep"][0]["energy_j_per_clip"] is None  # CPU: absent, not zero
    table = render([rec], 1)
    assert "precision bf16 | compile default" in table and "compile s" in table and "cpu_flash" in table
