"""Variable-length attention (harness.models.varlen): one nested-tensor SDPA call equals the per-clip
loop and each clip alone, for the function and for both users (HaltingVT's and RLT's varlen modes)."""
import pytest
import torch

import harness
from harness.measure.regime import autocast_context
from harness.models.varlen import resolve_varlen_impl, varlen_attention
from methods.haltingvt.layers import Attention

LENGTHS = [5, 9, 0, 2, 7]


def _qkv(heads=4, dim=8, device="cpu"):
    torch.manual_seed(0)
    return [torch.randn(sum(LENGTHS), heads, dim, device=device) for _ in range(3)]


def _each_alone(q, k, v):
    parts = [torch.nn.functional.scaled_dot_product_attention(*(t.transpose(0, 1)[None] for t in part))[0]
             for part in zip(q.split(LENGTHS), k.split(LENGTHS), v.split(LENGTHS)) if part[0].shape[0]]
    return torch.cat(parts, dim=1).transpose(0, 1)


@pytest.mark.parametrize("precision,atol", [("fp32", 1e-6), ("bf16", 3e-2)])
def test_one_nested_call_equals_the_loop_and_each_clip_alone(precision, atol):
    with torch.inference_mode(), autocast_context("cpu", precision):
        q, k, v = _qkv()  # made in inference mode, as a model's projections are
        one = varlen_attention(q, k, v, LENGTHS, impl="nested")
        each = varlen_attention(q, k, v, LENGTHS, impl="loop")
    alone = _each_alone(q, k, v)
    assert one.shape == q.shape
    assert torch.allclose(one.float(), each.float(), atol=atol)
    assert torch.allclose(one.float(), alone, atol=atol)
    joint = torch.nn.functional.scaled_dot_product_attention(*(t.transpose(0, 1)[None] for t in (q, k, v)))
    assert not torch.allclose(alone, joint[0].transpose(0, 1), atol=1e-3)  # not vacuous: clips are kept apart


def test_auto_is_the_loop_on_cpu_and_an_explicit_softmax_loops():
    assert resolve_varlen_impl("auto", torch.device("cpu")) == "loop"
    assert resolve_varlen_impl("auto", torch.device("cuda")) == "nested"
    with pytest.raises(ValueError, match="one of"):
        resolve_varlen_impl("flex", torch.device("cpu"))
    q, k, v = _qkv()
    calls = []

    def explicit(q, k, v):
        calls.append(q.shape[2])
        return ((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5).softmax(-1) @ v

    out = varlen_attention(q, k, v, LENGTHS, impl="nested", explicit=explicit)
    assert calls == [n for n in LENGTHS if n]
    assert torch.allclose(out, _each_alone(q, k, v), atol=1e-6)


def test_haltingvt_attention_nested_equals_loop():
    torch.manual_seed(0)
    x = torch.randn(1, sum(LENGTHS), 32)
    outs = {}
    for impl in ("nested", "loop"):
        torch.manual_seed(1)
        attn = Attention(32, 4).eval()
        attn.varlen_impl = impl
        with torch.inference_mode():
            outs[impl] = attn.forward_varlen(x, LENGTHS)
            alone = torch.cat([attn(p)[0] for p in x.split(LENGTHS, dim=1) if p.shape[1]], dim=1)
        assert torch.allclose(outs[impl], alone, atol=1e-6)
    assert torch.allclose(outs["nested"], outs["loop"], atol=1e-6)


def test_rlt_varlen_nested_equals_loop():
    clips = torch.randn(1, 3, 1, 64, 64).expand(3, 3, 16, 64, 64).contiguous()
    clips[1] = torch.randn(3, 16, 64, 64)  # clip 1 keeps every token, clips 0 and 2 fewer
    clips[2, :, 9:, 16:32, 32:48] += 1.0
    logits = {}
    for impl in ("nested", "loop"):
        torch.manual_seed(0)
        model = harness.build_model("synthetic_vit_tiny", method="rlt", method_args={"mode": "varlen"},
                                    embed_dim=32, depth=2, num_heads=2, num_classes=5).eval()
        model.varlen_impl = impl
        with torch.inference_mode():
            logits[impl] = model(clips)
    assert len({t[0] for t in model.last_stats.tokens_per_sample}) == 3  # the clips really differ in length
    assert torch.allclose(logits["nested"], logits["loop"], atol=1e-5)


@pytest.mark.gpu
def test_nested_call_on_cuda_uses_a_varlen_kernel_and_matches():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from torch.profiler import ProfilerActivity, profile

    for precision, atol in (("fp32", 1e-5), ("bf16", 3e-2), ("fp16", 5e-3)):
        with torch.inference_mode(), autocast_context("cuda", precision):
            q, k, v = _qkv(device="cuda")
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                one = varlen_attention(q, k, v, LENGTHS, impl="nested")
            each = varlen_attention(q, k, v, LENGTHS, impl="loop")
        assert torch.allclose(one.float(), each.float(), atol=atol), precision
        names = {e.name for e in prof.events()}
        assert names & {"aten::_flash_attention_forward", "aten::_efficient_attention_forward"}, precision
