"""Shared decoding: cells with one test protocol evaluated on one pass give the records they give alone;
groups respect memory and share_decode: false; throughput is timed interleaved with its load recorded."""
import types

import pytest
import torch
import yaml

import harness
from conftest import FAST_MEASURE
from harness.cli import main
from harness.run.group import memory_estimate, plan_groups, share_key
from harness.store import ResultStore

SAME_METRICS = ("top1", "top5", "num_videos", "views_per_video", "gmacs_per_view", "gflops_per_view",
                "gmacs_per_video", "tokens_per_block", "tokens_per_mlp", "tokens_out", "gmacs_per_block",
                "gmacs_breakdown", "gmacs_theoretical", "aggregation")


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("share")
    torch.manual_seed(0)
    torch.save({"module": harness.build_model("synthetic_vit_tiny").state_dict()}, root / "tiny.pth")
    suite = {"name": "share", "backbones": [{"name": "synthetic_vit_tiny", "checkpoint": "tiny.pth"}],
             "datasets": [{"name": "synthetic_motion", "root": "data", "num_train": 0, "num_val": 10}],
             "methods": [{"name": "dense"}, {"name": "tome", "r": 16}, {"name": "sta", "r": 4},
                         {"name": "vid_tldr", "r": [[16, 16]]}, {"name": "random_drop", "match": "sta", "r": 4}],
             "eval": {"batch_size": 4, "num_workers": 0},
             "measure": {**FAST_MEASURE, "flops": False, "memory": False}}
    path = root / "share.yaml"
    path.write_text(yaml.safe_dump(suite))
    return root, str(path)


def _run(root, suite, share: bool):
    results = str(root / f"results-{share}")
    assert main(["run", suite, "--executor", "debug", "--results", results,
                 "--set", f"eval.share_decode={str(share).lower()}"]) == 0
    store = ResultStore(results)
    return store, {r["label"]: r for r in store.records()}


def test_shared_pass_gives_the_records_of_each_cell_alone(suite_file):
    root, suite = suite_file
    alone_store, alone = _run(root, suite, False)
    shared_store, shared = _run(root, suite, True)
    assert set(alone) == set(shared) and len(shared) == 5
    for label, record in shared.items():
        other = alone[label]
        assert record["key"] == other["key"]  # share_decode is not part of the key
        assert record["execution"]["shared_decode"]["cells"] == 5
        assert other["execution"]["shared_decode"]["cells"] == 1
        for field in SAME_METRICS:
            assert record["metrics"].get(field) == other["metrics"].get(field), (label, field)
        assert record["coverage"] == other["coverage"]
        assert shared_store.read_samples(record["key"]) == alone_store.read_samples(other["key"])
        timing = record["metrics"]["timing"]
        assert timing["interleaved_with"] == 5 and len(timing["load_avg_per_repeat"]) == FAST_MEASURE["repeats"]


def _cell(dataset=None, batch=4, share=True, embed=32):
    config = {"backbone": {"name": "video_vit", "embed_dim": embed, "depth": 2, "num_heads": 2},
              "dataset": dataset or {"name": "synthetic_motion", "num_val": 8},
              "method": {"name": "dense", "params": {}},
              "eval": {"batch_size": batch, "num_workers": 0, "share_decode": share}, "measure": {}}
    return types.SimpleNamespace(config=lambda: config, label="x")


def test_groups_follow_the_protocol_the_memory_budget_and_share_decode():
    a, b, c = _cell(), _cell(), _cell()
    assert plan_groups([a, b, c]) == [[a, b, c]]
    assert plan_groups([a, b, c], share=False) == [[a], [b], [c]]
    other_data, other_batch, opted_out = _cell({"name": "synthetic_motion", "num_val": 9}), _cell(batch=2), _cell(share=False)
    assert share_key(a.config()) != share_key(other_data.config()) != share_key(other_batch.config())
    assert plan_groups([a, other_data, b, other_batch, opted_out]) == [[a, b], [other_data], [other_batch], [opted_out]]
    one = memory_estimate(a.config())
    assert plan_groups([a, b, c], budget=2 * one) == [[a, b], [c]]  # falls back to smaller groups
    assert plan_groups([a, b, c], budget=one // 2) == [[a], [b], [c]]
    assert memory_estimate(_cell(embed=64).config()) > one


def test_interleaved_throughput_records_load_and_flags_unreliable_timing(monkeypatch):
    from harness.measure import interleaved

    models = {name: harness.build_model("video_vit", embed_dim=32, depth=1, num_heads=2, num_frames=2,
                                        tubelet_size=2, img_size=32, num_classes=3).eval() for name in "ab"}
    subjects = {n: {"model": m, "x": torch.randn(2, 3, 2, 32, 32), "warmup_iters": 1, "warmup_s": 0.0,
                    "timed_iters": 2, "min_timed_s": 0.0, "repeats": 3} for n, m in models.items()}
    order = []
    monkeypatch.setattr(interleaved, "_step", lambda model, x, device, context=None: order.append(model) or 0.01)
    monkeypatch.setattr(interleaved.os, "getloadavg", lambda: (99.0, 0.0, 0.0))
    monkeypatch.setattr(interleaved.CpuShare, "stop", lambda self: 0.5)  # others took half the CPUs
    out = interleaved.interleaved_throughput(subjects, device=torch.device("cpu"))
    a, b = models["a"], models["b"]
    assert order[:2] == [a, b]  # warm-up
    cycles = [order[i:i + 2] for i in range(2, len(order), 2)]
    assert len(cycles) == 2 * 3 and all(set(map(id, c)) == {id(a), id(b)} for c in cycles)  # one slice each per cycle
    assert len({tuple(map(id, c)) for c in cycles}) == 2  # in a shuffled order, not always A first
    for result in out.values():
        assert result["clips_per_s"] == pytest.approx(200.0) and len(result["iteration_times_s"]) == 3
        assert result["timing"]["load_avg_per_repeat"] == [99.0] * 3
        assert result["timing"]["others_cpu_share_per_repeat"] == [0.5] * 3
        warnings = result["timing"]["warnings"]
        assert not result["timing"]["reliable"] and "load average" in warnings[0] and "other processes" in warnings[1]
        assert result["timing"]["cores"] >= 1
    assert out["a"]["timing"]["session"] == out["b"]["timing"]["session"]  # the repeats pair up in a report


def test_cpu_share_counts_other_processes_only(monkeypatch):
    from harness.measure.interleaved import CpuShare

    samples = iter([(10.0, 20.0, 1.0), (16.0, 30.0, 4.0)])  # (machine busy s, machine total s, own CPU s)
    monkeypatch.setattr(CpuShare, "_sample", staticmethod(lambda: next(samples)))
    share = CpuShare()
    share.start()
    assert share.stop() == pytest.approx((6.0 - 3.0) / 10.0)
    monkeypatch.undo()
    real = CpuShare()
    real.start()
    sum(i * i for i in range(200000))  # this process's own work is not "others"
    value = real.stop()
    assert value is None or 0.0 <= value <= 1.0


def test_a_bf16_compiled_cell_records_its_regime(tmp_path):
    """On CPU: eval.precision bf16 and measure.compile default run end to end; the record holds the
    precision, the compile mode, compile time, recompilations and the kernel of every block."""
    pytest.importorskip("torch._inductor")
    torch.manual_seed(0)
    torch.save({"module": harness.build_model("synthetic_vit_tiny").state_dict()}, tmp_path / "tiny.pth")
    suite = {"name": "regime", "backbones": [{"name": "synthetic_vit_tiny", "checkpoint": "tiny.pth"}],
             "datasets": [{"name": "synthetic_motion", "root": "data", "num_train": 0, "num_val": 4}],
             "methods": [{"name": "dense"}, {"name": "tome", "r": 8}],
             "eval": {"batch_size": 4, "num_workers": 0, "precision": "bf16"},
             "measure": {**FAST_MEASURE, "flops": False, "memory": False, "compile": "default", "batch_size": 2}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(suite))
    results = str(tmp_path / "results")
    assert main(["run", str(tmp_path / "s.yaml"), "--executor", "debug", "--results", results]) == 0
    for record in ResultStore(results).records():
        regime, compiled = record["metrics"]["regime"], record["metrics"]["compile"]
        assert record["provenance"]["numerics"]["precision"] == regime["precision"] == "bf16"
        assert compiled["compile_mode"] == "default"
        assert compiled["compile_error"] is not None or (compiled["compile_time_s"] > 0 and compiled["recompiles"] >= 0)
        assert len(regime["sdpa_backend_per_block"]) == 4 and regime["torch_version"]
    fp32 = dict(suite, eval={**suite["eval"], "precision": "fp32"})
    (tmp_path / "f.yaml").write_text(yaml.safe_dump(fp32))
    from harness.suite import load_suite
    keys = {c.key for c in load_suite(str(tmp_path / "f.yaml")).cells()}
    assert not keys & {r["key"] for r in ResultStore(results).records()}  # the regime is part of the key


def test_fp16_on_cpu_fails_the_cell_with_one_clear_line(tmp_path, capsys):
    suite = {"name": "fp16", "backbones": [{"name": "synthetic_vit_tiny"}],
             "datasets": [{"name": "synthetic_motion", "root": "data", "num_train": 0, "num_val": 2}],
             "methods": [{"name": "dense"}], "eval": {"batch_size": 2, "num_workers": 0, "precision": "fp16",
                                                     "device": "cpu"},
             "measure": {**FAST_MEASURE, "flops": False, "memory": False}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(suite))
    assert main(["run", str(tmp_path / "s.yaml"), "--executor", "debug", "--results", str(tmp_path / "r")]) == 1
    (record,) = ResultStore(str(tmp_path / "r")).records()
    assert record["status"] == "failed" and "fp16 runs on CUDA only" in record["error"]["message"]
