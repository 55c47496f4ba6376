"""Registries: strict names, did-you-mean, and every registered method at each of its declared ``examples``
on the registry's test backbone (``methods.registry.EXAMPLE_BACKBONE``) and on Video Swin."""

import pytest
import torch

import harness
import methods
from harness.measure.flops import model_macs
from harness.registry import Registry, UnknownNameError
from harness.models.presets import FAMILIES
from methods.registry import EXAMPLE_BACKBONE, example_backbone


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


def _never_adds_tokens(model, n0: int) -> list:
    """The token counts of ``model``'s last forward (per block, then the output; the largest over the
    batch for adaptive methods), checked to start at most at ``n0`` and never grow."""
    stats = model.last_stats
    counts = list(stats.tokens_in) + [stats.tokens_out]
    if stats.tokens_per_sample is not None:
        counts = [max(c) for c in zip(*stats.tokens_per_sample)]
    assert counts[0] <= n0 and all(a >= b for a, b in zip(counts, counts[1:])), counts
    return counts


VIT_METHODS = [n for n in methods.list_methods() if methods.get_method(n).vit]


@pytest.mark.parametrize("name", VIT_METHODS)
def test_every_method_runs_at_its_examples_never_adds_tokens_and_reduces(name):
    """On the registry's test backbone (``EXAMPLE_BACKBONE``), at each of the method's ``examples``, with
    the dense model's weights where the method keeps the backbone; at least one example removes tokens."""
    from harness.models.compatibility import method_problems
    from harness.models.presets import resolve_config
    from harness.models.video_vit import VideoViT

    spec, cfg = methods.get_method(name), resolve_config("video_vit", **EXAMPLE_BACKBONE)
    assert spec.examples, f"{name}: register_method(examples=...) is empty"
    torch.manual_seed(0)
    dense = harness.build_model("video_vit", **EXAMPLE_BACKBONE)
    clip = torch.randn(2, 3, EXAMPLE_BACKBONE["num_frames"], EXAMPLE_BACKBONE["img_size"],
                       EXAMPLE_BACKBONE["img_size"], generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        dense(clip)
    n0 = dense.last_stats.tokens_in[0]
    smallest, ran = n0, 0
    for example in spec.examples:
        if method_problems(name, spec.make_params(example), cfg):
            continue  # e.g. random_drop at sta_swin's counts: an example for Video Swin
        ran += 1
        torch.manual_seed(0)
        model = harness.build_model("video_vit", method=name, method_args=example, **EXAMPLE_BACKBONE)
        if isinstance(model, VideoViT):  # the backbone's layers (HaltingVT: its own, CLS token included)
            model.load_state_dict(dense.state_dict(), strict=False)
        cls = int(getattr(model, "cls_token", None) is not None)
        with torch.inference_mode():
            out = model(clip)
        assert out.shape == (2, EXAMPLE_BACKBONE["num_classes"]) and torch.isfinite(out).all(), example
        counts = _never_adds_tokens(model, n0 + cls)
        smallest = min(smallest, counts[-1] - cls)
        assert model_macs(model).total <= model_macs(dense).total + model_macs(model).overhead, example
    assert ran, f"{name}: none of its examples {spec.examples} runs on the test backbone {EXAMPLE_BACKBONE}"
    if spec.kind == "none":
        assert smallest == n0
    else:
        assert smallest < n0, f"{name}: none of its examples {spec.examples} removed a token on the test backbone"


SWIN = "synthetic_videoswin_tiny"


@pytest.mark.parametrize("name", methods.list_methods())
def test_every_method_runs_on_video_swin_at_its_examples_or_is_refused_with_a_reason(name):
    from harness.models.compatibility import method_problems
    from harness.models.presets import resolve_config

    spec, cfg = methods.get_method(name), resolve_config(SWIN)
    ran = 0
    for example in spec.examples:
        problems = method_problems(name, spec.make_params(example), cfg)
        if spec.video_swin is None:
            assert problems and any("window" in p or "hierarchical" in p for p in problems), problems
            continue
        if problems:  # e.g. random_drop at ToMe's counts: ToMe does not run on Video Swin
            continue
        torch.manual_seed(0)
        model = harness.build_model(SWIN, method=name, method_args=example)
        with torch.inference_mode():
            out = model(torch.randn(1, 3, cfg.num_frames, cfg.img_size, cfg.img_size))
        assert out.shape == (1, cfg.num_classes) and torch.isfinite(out).all()
        ran += 1
    assert ran or spec.video_swin is None, f"{name} names a video_swin entry but none of its examples runs there"


@pytest.mark.parametrize("family", FAMILIES)
def test_every_method_runs_on_each_family_or_is_refused_with_its_reason(family):
    """Each family's test backbone (``example_backbone``): a method that does not declare the family's
    layout features is refused at every example, each problem naming the method and what it lacks."""
    from harness.models.compatibility import families_supported, method_problems
    from harness.models.presets import resolve_config

    preset, dims = example_backbone(family)
    cfg = resolve_config(preset, **dims)
    for name in methods.list_methods():
        spec = methods.get_method(name)
        if family in families_supported(spec):
            continue
        for example in spec.examples:
            problems = method_problems(name, spec.make_params(example), cfg)
            assert problems and all(p.startswith(f"method {name!r}") for p in problems), (name, problems)
