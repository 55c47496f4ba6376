"""Precision (autocast), SDPA backend forcing and recording, torch.compile bookkeeping and energy, on CPU."""
import os
import shutil

import pytest
import torch

from harness.build import build_model
from harness.measure.compiled import compile_for_timing, count_after
from harness.measure.kernels import check_sdpa_backend_runs, kernel_set, probe_attention_kernels
from harness.measure.regime import (PrecisionError, SdpaBackendError, autocast_context, regime_context,
                                    regime_record, validate_precision)
from harness.measure.speed import measure_throughput

CPU = torch.device("cpu")


def _tiny(method="dense", params=None):
    torch.manual_seed(0)
    return build_model("synthetic_vit_tiny", method=method, method_args=params or {}).eval()


def _clip(batch=2):
    return torch.randn(batch, 3, 16, 64, 64)


class DtypeSpy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.seen = []

    def forward(self, x):
        y = self.lin(x.flatten(1)[:, :4])
        self.seen.append(y.dtype)
        return y


def test_precision_is_validated_with_a_clear_error():
    assert validate_precision("bf16", "cpu") == "bf16"
    with pytest.raises(PrecisionError, match="fp16 runs on CUDA only"):
        validate_precision("fp16", "cpu")
    with pytest.raises(PrecisionError, match="fp32|bf16|fp16"):
        validate_precision("float16", "cpu")
    with pytest.raises(PrecisionError, match="CUDA only"):
        measure_throughput(DtypeSpy(), (4,), device=CPU, batch_size=1, warmup_iters=0, warmup_s=0,
                           timed_iters=1, min_timed_s=0, repeats=1, precision="fp16", sdpa_backend="auto")


def test_bf16_autocast_wraps_every_timed_forward_and_is_recorded():
    spy = DtypeSpy()
    out = measure_throughput(spy, (4,), device=CPU, batch_size=2, warmup_iters=2, warmup_s=0, timed_iters=3,
                             min_timed_s=0, repeats=1, precision="bf16", sdpa_backend="auto", energy=True)
    assert spy.seen == [torch.bfloat16] * 5 and out["precision"] == "bf16"
    assert out["energy_j_per_clip"] is None and out["energy_how"] == "not a CUDA device"  # absent, not zero
    spy.seen.clear()
    measure_throughput(spy, (4,), device=CPU, batch_size=2, warmup_iters=1, warmup_s=0, timed_iters=1,
                       min_timed_s=0, repeats=1, precision="fp32", sdpa_backend="auto")
    assert spy.seen == [torch.float32] * 2


def test_bf16_tiny_model_agrees_with_fp32():
    model, x = _tiny(), _clip()
    with torch.inference_mode():
        ref = model(x)
        with autocast_context(CPU, "bf16"):
            low = model(x).float()
    assert ((low - ref).abs().max() / ref.std()).item() < 0.1


def test_kernels_per_block_are_recorded_and_forcing_works():
    dense, x = _tiny(), _clip()
    assert probe_attention_kernels(dense, x) == ["cpu_flash"] * 4  # SDPA's fused CPU kernel
    assert probe_attention_kernels(dense, x, lambda: regime_context(CPU, "fp32", "math")) == ["math"] * 4
    tldr = _tiny("vid_tldr", {"r": [32, 16]})  # blocks 0-1 need probabilities
    kernels = probe_attention_kernels(tldr, x)
    assert kernels[:2] == ["explicit", "explicit"] and kernels[2:] == ["cpu_flash", "cpu_flash"]
    assert kernel_set(kernels) == ["explicit", "cpu_flash"]
    with pytest.raises(SdpaBackendError, match="'efficient' cannot run this model on cpu"):
        check_sdpa_backend_runs(dense, x, "efficient", lambda: regime_context(CPU, "fp32", "efficient"))
    with pytest.raises(SdpaBackendError, match="must be one of"):
        regime_context(CPU, "fp32", "flashy").__enter__()
    rec = regime_record(CPU, "bf16", "auto")
    assert rec["precision"] == "bf16" and rec["torch_version"] == torch.__version__ and rec["device_name"]


def test_compile_time_recompiles_and_failures_become_fields():
    model, x = _tiny(), _clip()
    compiled, info = compile_for_timing(model, x, mode="default", backend="eager")  # dynamo only: fast
    assert info["compile_error"] is None and info["compile_time_s"] > 0 and info["compile_graphs"] >= 1
    with torch.inference_mode():
        compiled(x)
    assert count_after(info)["recompiles"] == 0
    with torch.inference_mode():
        compiled(_clip(3))  # a new batch size: a guard fails, dynamo compiles again
    assert count_after(info)["recompiles"] >= 1

    def broken(gm, example_inputs):
        raise RuntimeError("backend exploded\nsecond line")

    mlp = torch.nn.Linear(4, 4)
    compiled, info = compile_for_timing(mlp, torch.randn(2, 4), mode="default", backend=broken)
    assert compiled is None and "\n" not in info["compile_error"]
    assert info["compile_error"].startswith("BackendCompilerFailed")
    assert "RuntimeError: backend exploded" in info["compile_error"]
    assert compile_for_timing(model, x, mode="off")[1]["compile_time_s"] is None


def test_inductor_compiles_on_cpu():
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("inductor on CPU needs a C++ compiler")
    mlp = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.GELU()).eval()
    x = torch.randn(2, 8)
    compiled, info = compile_for_timing(mlp, x, mode="default")
    if compiled is None and ("Cxx" in info["compile_error"] or "Cpp" in info["compile_error"]):
        pytest.skip(f"inductor unavailable here: {info['compile_error']}")
    assert info["compile_error"] is None, info["compile_error"]
    with torch.inference_mode():
        assert torch.allclose(compiled(x), mlp(x), atol=1e-6)


class FakeNvml:
    def __init__(self, fail=False):
        self.fail, self.mj = fail, 10_000

    def nvmlInit(self):
        if self.fail:
            raise OSError("libnvidia-ml.so.1: cannot open shared object file")

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        self.mj += 1500  # millijoules since the driver loaded
        return self.mj


def test_energy_meter_reads_nvml_millijoules_as_joules_or_says_why_not(monkeypatch):
    from harness.measure import energy

    monkeypatch.setattr(energy, "_handle_of", lambda nvml, device: "handle0")
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    meter = energy.EnergyMeter(torch.device("cuda"), nvml=FakeNvml())
    assert meter.available
    meter.start()
    assert meter.stop() == pytest.approx(1.5) and meter.stop() is None  # one window per start
    broken = energy.EnergyMeter(torch.device("cuda"), nvml=FakeNvml(fail=True))
    assert not broken.available and "cannot open shared object" in broken.reason
    broken.start()
    assert broken.stop() is None
    assert energy.EnergyMeter(CPU).reason == "not a CUDA device"
