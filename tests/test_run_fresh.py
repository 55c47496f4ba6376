"""The fresh-process runner (``harness.run.fresh``: ``harness bench``'s measurements, the CPU memory probe) and
the memory probe a group runs where the peak RSS cannot be reset (``harness.run.memory_probe``)."""
import os
import textwrap

import pytest

from harness.run.fresh import run_fresh

CKPT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "checkpoints", "synthetic_vit_tiny.pth"))


def _module(tmp_path, monkeypatch, body: str) -> str:
    """A module ``fresh_entry`` on the child's path whose ``handle(request)`` is ``body``."""
    (tmp_path / "fresh_entry.py").write_text(textwrap.dedent("""
        import os, sys
        from harness.run.fresh import serve

        def handle(request):
        """) + textwrap.indent(textwrap.dedent(body), "    ") + "\nsys.exit(serve(handle, sys.argv[1:]))\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    return "fresh_entry"


def test_the_answer_is_the_last_result_line_of_a_fresh_process(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    module = _module(tmp_path, monkeypatch, """
        print("RESULT {\\"early\\": 1}")
        return {"echo": request["x"], "pid": os.getpid(), "omp": os.environ.get("OMP_WAIT_POLICY")}
        """)
    out = run_fresh(module, {"x": [1, 2]}, timeout_s=60)
    assert out["echo"] == [1, 2] and out["pid"] != os.getpid() and out["omp"] == "PASSIVE"


@pytest.mark.parametrize("body, oom", [
    ("raise MemoryError('no room')", True),  # serve answers it
    ("os.kill(os.getpid(), 9)", True),  # the kernel's OOM killer
    ("raise RuntimeError('CUDA out of memory. Tried to allocate 2 GiB')", True),
    ("raise ValueError('bad field')", False),
])
def test_out_of_memory_is_an_answer_and_any_other_failure_raises(tmp_path, monkeypatch, body, oom):
    module = _module(tmp_path, monkeypatch, body)
    if oom:
        assert run_fresh(module, {}, timeout_s=60)["oom"] is True
    else:
        with pytest.raises(RuntimeError, match=r"fresh_entry failed \(exit 1\).*bad field"):
            run_fresh(module, {}, timeout_s=60)


def test_a_process_past_its_timeout_is_one_clear_error(tmp_path, monkeypatch):
    module = _module(tmp_path, monkeypatch, "import time; time.sleep(30)")
    with pytest.raises(RuntimeError, match="fresh_entry did not answer within 1 s"):
        run_fresh(module, {}, timeout_s=1)


def test_group_memory_without_a_resettable_peak_is_probed_in_a_fresh_process(tmp_path, monkeypatch):
    """Off Linux (no /proc/self/clear_refs) a cell's CPU memory comes from ``run.memory_probe``: the cell
    built by ``prepare_cell`` in a fresh process, weights plus the peak RSS increase of one forward."""
    import harness.run.fresh as fresh
    import harness.run.memory_probe as probe
    from harness.run.cell import CellJob, Progress
    from harness.run.group import measure_costs, prepare_cells
    from harness.suite import load_suite

    (tmp_path / "s.yaml").write_text(f"""name: m
backbones: [{{name: synthetic_vit_tiny, checkpoint: {CKPT}}}]
datasets: [{{name: synthetic_motion, split: val, root: data, num_train: 0, num_val: 4}}]
methods: [{{name: dense}}]
eval: {{batch_size: 2, device: cpu}}
measure: {{throughput: false, flops: false}}
""")
    (spec,) = load_suite(str(tmp_path / "s.yaml")).cells()
    job = CellJob(spec, str(tmp_path / "results"))
    setups, failed = prepare_cells([job], Progress(None))
    assert not failed
    reset = probe.forward_peak_reset(setups[job.key].model, setups[job.key].clip_shape(2))
    monkeypatch.setattr(probe, "forward_peak_reset", lambda model, shape: None)
    sent = []
    real = fresh.run_fresh
    monkeypatch.setattr(fresh, "run_fresh", lambda module, request, t: sent.append((module, request)) or
                        real(module, request, t))
    ((metrics, _),) = measure_costs([job], setups, Progress(None)).values()
    assert [m for m, _ in sent] == ["harness.run.memory_probe"] and sent[0][1]["cell"] == spec.to_json()
    weights = probe.weight_bytes(setups[job.key].model) / 2 ** 30
    assert metrics["peak_mem_kind"] == probe.FRESH_KIND and weights <= metrics["peak_mem_gib"] < weights + 2
    if reset is not None:  # Linux: the in-process figure is of the same kind of quantity
        assert reset["peak_mem_kind"] == "cpu_weights_plus_forward_peak_rss" and reset["peak_mem_gib"] >= weights


@pytest.mark.parametrize("platform,reported,expected", [("linux", 2048, 2048 * 1024), ("darwin", 2048, 2048)])
def test_peak_rss_is_in_bytes_whatever_the_platform_reports(monkeypatch, platform, reported, expected):
    """``ru_maxrss`` is KiB on Linux and bytes on macOS; every peak-RSS figure goes through ``max_rss_bytes``."""
    import resource
    import sys
    import types

    from harness.measure import speed

    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setattr(resource, "getrusage", lambda who: types.SimpleNamespace(ru_maxrss=reported))
    assert speed.max_rss_bytes() == expected
    assert speed.peak_memory(__import__("torch").device("cpu"))["peak_mem_gib"] == expected / 2 ** 30
