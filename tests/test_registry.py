"""Registries: strict names, did-you-mean, and every registered method on a tiny random model."""
import dataclasses

import pytest
import torch

import harness
import methods
from harness.measure.flops import model_macs
from harness.registry import Registry, UnknownNameError
from conftest import tiny

TINY = tiny(depth=3, img_size=32)  # 8 temporal slices of 2x2 tokens: every method accepts it


def test_duplicate_names_raise():
    reg = Registry("thing")
    reg.register("a")(object())
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(object())


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownNameError) as err:
        harness.build_model("videomae_vit_b61")
    assert "Did you mean: 'videomae_vit_b16'" in str(err.value)
    with pytest.raises(UnknownNameError, match="Did you mean: 'tome'"):
        harness.build_model("synthetic_vit_tiny", method="tomme")


def test_method_registration_requires_a_dataclass():
    with pytest.raises(TypeError):
        methods.register_method("not_a_dataclass", implementation="x:y", kind="merge")(object)


def test_generic_backbone_needs_its_dims():
    with pytest.raises(ValueError, match="embed_dim, depth, num_heads"):
        harness.build_model("video_vit")
    with pytest.raises(ValueError, match="not divisible"):
        harness.build_model("video_vit", embed_dim=30, depth=1, num_heads=4)


# settings that make each method reduce on TINY (default: r=2 where a method has r); downsample and
# rlt act on the input, before block 0 (rlt: random noise moves everywhere, so a threshold above it)
REDUCING_ARGS = {"downsample": {"frames": 8}, "rlt": {"threshold": 2.0}}
INPUT_LEVEL = {"downsample", "rlt"}


VIDEO_SWIN_ONLY = {"sta_swin"}  # runs on Video Swin only: tests/test_sta_swin.py does the same checks there


@pytest.mark.parametrize("name", [n for n in methods.list_methods() if n not in VIDEO_SWIN_ONLY])
def test_every_method_runs_and_never_adds_tokens(name):
    from harness.models.video_vit import VideoViT

    spec = methods.get_method(name)
    args = {"r": 2} if any(f.name == "r" for f in dataclasses.fields(spec.params)) else None
    args = REDUCING_ARGS.get(name, args)
    torch.manual_seed(0)
    dense = harness.build_model("video_vit", **TINY)
    model = harness.build_model("video_vit", method=name, method_args=args, **TINY)
    if isinstance(model, VideoViT):  # the backbone's layers (HaltingVT: its own, CLS token included)
        model.load_state_dict(dense.state_dict())
    cls = int(getattr(model, "cls_token", None) is not None)
    clip = torch.randn(2, 3, 16, 32, 32)
    with torch.inference_mode():
        out = model(clip)
        dense(clip)
    assert out.shape == (2, 5) and torch.isfinite(out).all()
    counts = model.last_stats.tokens_in + [model.last_stats.tokens_out]
    if model.last_stats.tokens_per_sample is not None:
        counts = [max(c) for c in zip(*model.last_stats.tokens_per_sample)]
    if name in INPUT_LEVEL:
        assert counts[0] < 32
    else:
        assert counts[0] == 32 + cls
    assert all(a >= b for a, b in zip(counts, counts[1:]))
    if name != "dense":
        assert counts[-1] < 32 + cls, f"{name} removed no token"
    assert model_macs(model).total <= model_macs(dense).total + model_macs(model).overhead
