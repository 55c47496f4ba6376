"""Checks that need a CUDA device (``pytest -m gpu``; scripts/gpu_check.sh runs them). They skip without one."""
import pytest
import torch

from harness.build import build_model
from harness.measure.kernels import probe_attention_kernels
from harness.measure.regime import regime_context
from harness.measure.speed import measure_throughput, peak_memory, reset_peak_memory

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

CUDA = torch.device("cuda")


def _model(method="dense", params=None, **backbone):
    torch.manual_seed(0)
    model = build_model("videomae_vit_s16", method=method, method_args=params or {}, img_size=112, **backbone)
    return model.to(CUDA).eval()


def _clip(model, batch=2):
    cfg = model.cfg
    return torch.randn(batch, cfg.in_chans, cfg.num_frames, cfg.img_size, cfg.img_size, device=CUDA)


def test_cuda_events_timer_and_memory_counters():
    model = _model()
    reset_peak_memory(CUDA)
    out = measure_throughput(model, _clip(model).shape[1:], device=CUDA, batch_size=4, warmup_iters=2, warmup_s=0,
                             timed_iters=3, min_timed_s=0, repeats=2, precision="fp16", sdpa_backend="auto")
    assert out["timer"] == "cuda_events" and out["clips_per_s"] > 0
    assert all(t > 0 for run in out["iteration_times_s"] for t in run)
    mem = peak_memory(CUDA)
    assert mem["peak_mem_kind"] == "cuda_max_allocated"
    assert 0 < mem["peak_mem_gib"] <= mem["peak_mem_reserved_gib"]


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_dense_runs_flash_in_half_precision_and_efficient_under_an_additive_bias(precision):
    dense = _model()
    fused = probe_attention_kernels(dense, _clip(dense), lambda: regime_context(CUDA, precision, "auto"))
    assert len(set(fused)) == 1 and fused[0] in ("flash", "cudnn"), fused  # torch prefers cuDNN on some GPUs
    tome = _model("tome", {"r": 16, "prop_attn": True})  # log(size) bias after the first merge: no flash
    kernels = probe_attention_kernels(tome, _clip(tome), lambda: regime_context(CUDA, precision, "auto"))
    assert kernels[0] == fused[0] and set(kernels[1:]) <= {"efficient", "cudnn"}, kernels


def test_blocks_needing_probabilities_run_explicit_and_forcing_math_is_recorded():
    tldr = _model("vid_tldr", {"r": [[100, 50, 25]]})
    kernels = probe_attention_kernels(tldr, _clip(tldr), lambda: regime_context(CUDA, "fp16", "auto"))
    assert "explicit" in kernels[0] and kernels[-1] in ("flash", "cudnn")
    dense = _model()
    forced = probe_attention_kernels(dense, _clip(dense), lambda: regime_context(CUDA, "fp16", "math"))
    assert set(forced) == {"math"}


@pytest.mark.parametrize("precision,tolerance", [("bf16", 0.05), ("fp16", 0.01)])
def test_half_precision_logits_agree_with_fp32(precision, tolerance):
    """Max |logit difference| relative to the fp32 logits' spread: bf16 (8-bit mantissa) within 5%, fp16 1%."""
    model = _model()
    x = _clip(model, 4)
    with torch.inference_mode():
        ref = model(x).float()
        with regime_context(CUDA, precision, "auto"):
            low = model(x).float()
    assert ((low - ref).abs().max() / ref.std()).item() < tolerance


def test_haltingvt_varlen_single_call_matches_packed_on_cuda():
    torch.manual_seed(0)
    model = build_model("videomae_vit_s16", method="haltingvt",
                        method_args={"keep_rate": 0.5, "halt_center": 5, "mode": "packed"}, img_size=112,
                        num_classes=12).to(CUDA).eval()
    x = _clip(model, 4)
    with torch.inference_mode():
        packed = model(x)
        model.set_mode("varlen")
        varlen = model(x)
    assert torch.allclose(packed, varlen, atol=1e-4)
    assert model.last_stats.tokens_in[-1] < model.last_stats.tokens_in[2]  # something halted: varlen ran
    kernels = probe_attention_kernels(model, x, lambda: regime_context(CUDA, "fp16", "auto"))
    assert "flash" in kernels[-1], kernels


def test_compile_on_cuda_counts_no_recompiles_for_a_static_method():
    from harness.measure.compiled import compile_for_timing, count_after

    model = _model()
    x = _clip(model)
    compiled, info = compile_for_timing(model, x, mode="default", context=lambda: regime_context(CUDA, "fp16", "auto"))
    assert info["compile_error"] is None and info["compile_time_s"] > 0
    with torch.inference_mode(), regime_context(CUDA, "fp16", "auto"):
        compiled(x)
    assert count_after(info)["recompiles"] == 0


def test_energy_per_clip_when_nvml_is_present():
    pytest.importorskip("pynvml", reason="nvidia-ml-py (extra 'gpu') not installed")
    model = _model()
    out = measure_throughput(model, _clip(model).shape[1:], device=CUDA, batch_size=8, warmup_iters=2, warmup_s=0,
                             timed_iters=5, min_timed_s=0.5, repeats=1, precision="fp16", sdpa_backend="auto", energy=True)
    assert out["energy_j_per_clip"] is not None and out["energy_j_per_clip"] > 0, out["energy_how"]
