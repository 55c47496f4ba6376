"""One GMACs cross-check for the whole registry: for every registered method at each of its example
settings (``register_method(examples=...)``), on the registry's test backbone of every family whose layout
the method supports (``methods.registry.example_backbone``), the analytic count from the token counts equals fvcore's count of the same forward (fused
attention, with the SDPA handle) and an independent count by ``torch.utils.flop_counter.FlopCounterMode``
of the explicit-attention model (matmuls only, so the LayerNorms are subtracted from the analytic side)."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import harness
import methods
from harness.measure.flops import NORM_MACS_PER_ELEMENT, fvcore_macs, probe_norm_macs
from harness.models.compatibility import families_supported, method_problems
from harness.models.presets import FAMILIES, resolve_config
from methods.registry import example_backbone

FAMILY_BACKBONES = {f: example_backbone(f) for f in FAMILIES}  # Video Swin: its own attention, no fused kernel


def _cases():
    for name in methods.list_methods():
        spec = methods.get_method(name)
        for family in families_supported(spec):
            backbone, dims = FAMILY_BACKBONES[family]
            for i, example in enumerate(spec.examples):
                if method_problems(name, spec.make_params(example), resolve_config(backbone, **dims)):
                    continue  # e.g. random_drop at STA's counts: STA does not run on that family
                yield pytest.param(name, example, family, id=f"{name}-{i}-{family}")


CASES = list(_cases())


def _run(name: str, example: dict, fused: bool, family: str = "videomae"):
    torch.manual_seed(0)  # the same weights for both kernels
    backbone, dims = FAMILY_BACKBONES[family]
    if family != "videoswin":
        dims = dict(dims, fused_attention=fused)
    return harness.build_model(backbone, method=name, method_args=example, **dims)


@pytest.mark.parametrize("name,example,family", CASES)
def test_analytic_equals_fvcore_and_an_independent_counter(name, example, family):
    clip = torch.randn(1, 3, 16, 64, 64, generator=torch.Generator().manual_seed(1))
    fused = _run(name, example, True, family)
    with torch.inference_mode():
        fused(clip)
    analytic = fused.view_macs()
    counted, unexpected = fvcore_macs(fused, clip)
    assert unexpected == {}
    assert counted == analytic.total

    explicit = _run(name, example, False, family)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        explicit(clip)
    assert list(explicit.last_stats.tokens_in) == list(fused.last_stats.tokens_in)
    macs = explicit.view_macs()
    cfg = explicit.cfg
    width = cfg.stage_dim(cfg.num_stages - 1) if family == "videoswin" else cfg.embed_dim  # the head's input
    head_norm = macs.head - width * cfg.num_classes  # fc_norm / the final norm are in the head
    if cfg.layout.pooling == "attentive":  # the final norm over the tokens left, and the probe's own norms
        left = explicit.last_stats.tokens_out
        head_norm = NORM_MACS_PER_ELEMENT * cfg.embed_dim * left + probe_norm_macs(cfg, left)
    matmuls = macs.total - macs.norm - head_norm
    assert counter.get_total_flops() == 2 * matmuls
    assert head_norm % (NORM_MACS_PER_ELEMENT * width) == 0


def test_every_method_is_checked():
    assert {p.values[0] for p in CASES} == set(methods.list_methods())
    covered = {(p.values[0], p.values[2]) for p in CASES}
    assert {("tome", "vivit"), ("tome", "timesformer"), ("random_drop", "timesformer")} <= covered
