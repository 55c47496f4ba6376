"""GMACs from token counts: the published per-view figures, and agreement with counters."""
import pytest
import torch

import harness
from harness.measure.flops import count_macs, fvcore_macs, model_macs
from harness.models.presets import resolve_config


@pytest.mark.parametrize("name,gmacs", [("videomae_vit_s16", 57.0), ("videomae_vit_b16", 180.5),
                                        ("videomae_vit_l16", 597.2)])
def test_dense_presets_match_published_gmacs(name, gmacs):
    cfg = resolve_config(name)
    n = [cfg.num_tokens] * cfg.depth
    assert count_macs(cfg, n, n).total / 1e9 == pytest.approx(gmacs, abs=0.5)


def test_vit_b_closed_form():
    cfg = resolve_config("videomae_vit_b16")
    c, n, depth = 768, 1568, 12
    matmuls = depth * (12 * c * c * n + 2 * n * n * c) + n * c * 3 * 2 * 16 * 16 + c * 400
    norms = 5 * c * (2 * n * depth + 1)
    assert count_macs(cfg, [n] * depth, [n] * depth).total == matmuls + norms


def test_flop_counter_on_meta_device_agrees_with_fused_attention_included():
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = harness.build_model("videomae_vit_b16")
        clip = torch.empty(1, 3, 16, 224, 224)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(clip)
    matmul_macs = counter.get_total_flops() / 2
    cfg = model.cfg
    macs = count_macs(cfg, model.token_counts, model.last_stats.tokens_mlp)
    assert matmul_macs == macs.total - macs.norm - 5 * cfg.embed_dim  # counters skip LayerNorm
    assert matmul_macs / 1e9 == pytest.approx(180.3, abs=0.1)


def test_reduction_lowers_gmacs():
    dense = harness.build_model("synthetic_vit_tiny")
    tome = harness.build_model("synthetic_vit_tiny", method="tome", method_args={"r": 16})
    clip = torch.randn(1, 3, 16, 64, 64)
    with torch.inference_mode():
        dense(clip), tome(clip)
    assert model_macs(tome).total < 0.85 * model_macs(dense).total
    assert model_macs(tome).overhead > 0


@pytest.mark.parametrize("fused", [True, False])
def test_reduced_schedule_closed_form_equals_fvcore_with_either_attention_kernel(fused):
    model = harness.build_model("synthetic_vit_tiny", method="sta", method_args={"r": 4}, fused_attention=fused)
    clip = torch.randn(1, 3, 16, 64, 64)
    with torch.inference_mode():
        model(clip)
    c, n_in, n_mlp = 128, model.last_stats.tokens_in, model.last_stats.tokens_mlp
    assert n_in == [128, 96, 80, 72] and n_mlp == n_in  # STA prunes 8, 4, 2 groups x 4 after blocks 0, 1, 2
    closed = 128 * c * 3 * 2 * 16 * 16 + 5 * c + c * 12  # tubelet embedding, fc_norm, head
    for layer, (n, m) in enumerate(zip(n_in, n_mlp)):
        closed += 4 * n * c * c + 8 * m * c * c + 2 * n * n * c + 5 * c * (n + m)
        closed += model.reducer.overhead_macs(layer, n)
    counted, unexpected = fvcore_macs(model, clip)
    assert unexpected == {} and counted == closed == model_macs(model).total
    assert model.last_stats.attention_kernel == ["sdpa" if fused else "explicit"] * 4


def _erf_macs(inputs, outputs) -> int:  # a handle for the test below: 7 MACs per call
    return 7


class _Erf(torch.nn.Module):
    def forward(self, x):
        return torch.special.erf(x @ x.transpose(-1, -2))


def test_a_method_declares_its_own_free_ops_and_fvcore_handles(monkeypatch):
    """``register_method(uncounted_ops=..., fvcore_handles=...)`` is what ``fvcore_macs`` accepts beyond the
    common list, for the method the model was built for (``model.method_name``) and for no other."""
    import dataclasses

    import methods

    model, x = _Erf(), torch.randn(1, 3, 4)
    model.method_name = "tome"
    matmul = 3 * 4 * 3
    assert fvcore_macs(model, x) == (matmul, {"aten::erf": 1})  # an op no declaration makes free
    specs = {"free": dataclasses.replace(methods.get_method("tome"), uncounted_ops=frozenset({"aten::erf"})),
             "counted": dataclasses.replace(methods.get_method("tome"),
                                            fvcore_handles={"aten::erf": f"{__name__}:_erf_macs"})}
    monkeypatch.setattr(methods, "get_method", lambda name, get=methods.get_method: specs.get(name) or get(name))
    assert fvcore_macs(model, x, method="free") == (matmul, {})
    assert fvcore_macs(model, x, method="counted") == (matmul + 7, {})
    model.method_name = "free"
    assert fvcore_macs(model, x) == (matmul, {})


@pytest.mark.parametrize("kwargs,message", [
    ({"uncounted_ops": "aten::abs"}, "name ops as fvcore's trace does"),  # a string, not a sequence of names
    ({"uncounted_ops": ("abs",)}, "name ops as fvcore's trace does"),
    ({"fvcore_handles": {"aten::erf": "no_colon"}}, "maps each op to 'module:fn'"),
])
def test_bad_op_declarations_are_refused_at_registration(kwargs, message):
    import methods

    with pytest.raises(ValueError, match=message):
        methods.register_method("never_registered", implementation="x:y", kind="prune", **kwargs)
