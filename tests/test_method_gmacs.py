"""One GMACs cross-check for the whole registry: for every registered method at each of its example
settings (``register_method(examples=...)``), the analytic count from the token counts equals fvcore's
count of the same forward (fused attention, with the SDPA handle) and an independent count by
``torch.utils.flop_counter.FlopCounterMode`` of the explicit-attention model (matmuls only, so the
LayerNorms are subtracted from the analytic side)."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import harness
import methods
from harness.measure.flops import NORM_MACS_PER_ELEMENT, fvcore_macs

CASES = [pytest.param(name, example, id=f"{name}-{i}")
         for name in methods.list_methods() for i, example in enumerate(methods.get_method(name).examples)]


def _run(name: str, example: dict, fused: bool, clip: torch.Tensor):
    torch.manual_seed(0)  # the same weights for both kernels
    model = harness.build_model("synthetic_vit_tiny", method=name, method_args=example, fused_attention=fused)
    return model


@pytest.mark.parametrize("name,example", CASES)
def test_analytic_equals_fvcore_and_an_independent_counter(name, example):
    clip = torch.randn(1, 3, 16, 64, 64, generator=torch.Generator().manual_seed(1))
    fused = _run(name, example, True, clip)
    with torch.inference_mode():
        fused(clip)
    analytic = fused.view_macs()
    counted, unexpected = fvcore_macs(fused, clip)
    assert unexpected == {}
    assert counted == analytic.total

    explicit = _run(name, example, False, clip)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        explicit(clip)
    assert list(explicit.last_stats.tokens_in) == list(fused.last_stats.tokens_in)
    macs = explicit.view_macs()
    matmuls = macs.total - macs.norm - NORM_MACS_PER_ELEMENT * explicit.cfg.embed_dim  # fc_norm is in the head
    assert counter.get_total_flops() == 2 * matmuls


def test_every_method_is_checked():
    assert {p.values[0] for p in CASES} == set(methods.list_methods())
