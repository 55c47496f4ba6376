"""HaltingVT's variable-length attention: one nested-tensor SDPA call equals the per-clip loop."""
import pytest
import torch

from harness.measure.regime import autocast_context
from methods.haltingvt.layers import Attention

LENGTHS = [5, 9, 0, 2, 7]


def _attention(impl):
    torch.manual_seed(0)
    attn = Attention(32, 4).eval()
    attn.varlen_impl = impl
    return attn


@pytest.mark.parametrize("precision,atol", [("fp32", 1e-6), ("bf16", 3e-2)])
def test_one_nested_call_equals_the_loop_and_each_clip_alone(precision, atol):
    x = torch.randn(1, sum(LENGTHS), 32)
    nested, loop = _attention("nested"), _attention("loop")
    with torch.inference_mode(), autocast_context("cpu", precision):
        one = nested.forward_varlen(x, LENGTHS)
        each = loop.forward_varlen(x, LENGTHS)
        alone = torch.cat([loop(part)[0] for part in x.split(LENGTHS, dim=1) if part.shape[1]], dim=1)
    assert one.shape == x.shape
    assert torch.allclose(one.float(), each.float(), atol=atol)
    assert torch.allclose(one.float(), alone.float(), atol=atol)  # no clip sees another's tokens
    # and it is not vacuous: attending over the concatenation would differ
    joint = loop(x)[0] if precision == "fp32" else None
    if joint is not None:
        assert not torch.allclose(one, joint, atol=1e-3)


def test_auto_picks_the_loop_on_cpu_and_explicit_attention_loops():
    x = torch.randn(1, sum(LENGTHS), 32)
    with torch.inference_mode():
        auto = _attention("auto").forward_varlen(x, LENGTHS)
        explicit = _attention("nested")
        explicit.fused = False
        assert torch.allclose(auto, explicit.forward_varlen(x, LENGTHS), atol=1e-6)


@pytest.mark.gpu
def test_nested_call_on_cuda_uses_a_varlen_kernel_and_matches():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from torch.profiler import ProfilerActivity, profile

    x = torch.randn(1, sum(LENGTHS), 32, device="cuda")
    nested, loop = _attention("nested").cuda(), _attention("loop").cuda()
    for precision, atol in (("fp32", 1e-5), ("bf16", 3e-2), ("fp16", 5e-3)):
        with torch.inference_mode(), autocast_context("cuda", precision):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                one = nested.forward_varlen(x, LENGTHS)
            each = loop.forward_varlen(x, LENGTHS)
        assert torch.allclose(one.float(), each.float(), atol=atol), precision
        names = {e.name for e in prof.events()}
        assert names & {"aten::_flash_attention_forward", "aten::_efficient_attention_forward"}, precision
