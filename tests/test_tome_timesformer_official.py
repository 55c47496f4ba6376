"""ToMe on TimeSformer against Pollard & Wray's code (sjpollard/video-how-do-your-tokens-merge@21261a9).

``tests/reference/tome_timesformer_golden.pt`` and ``tests/reference/timesformer_tiny_hf/`` come from
``tests/reference/make_tome_timesformer_golden.py`` (its docstring states their per-frame rule): a tiny
transformers ``TimesformerForVideoClassification`` saved with ``save_pretrained``, its weights mapped into the
official TimeSformer (dense logits equal), which P&W's ``tome/patch/timesformer.py`` then patched for four
r schedules, with and without proportional attention.

The last group runs the harness's TimeSformer (``build_model("video_vit", checkpoint=HF_DIR, method="tome")``)
on the same weights and input: ``last_stats.tokens_in`` counts the tokens entering each block, CLS included
(the golden also has ``spatial_tokens_in``, patch tokens per frame).
"""
import os

import pytest
import torch

import harness
from harness.models.video_vit import VideoViT  # noqa: F401  (applies the torchvision fix before transformers)

transformers = pytest.importorskip("transformers", reason="transformers is a test-only extra (pip install .[test])")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "tests", "reference", "tome_timesformer_golden.pt")
HF_DIR = os.path.join(ROOT, "tests", "reference", "timesformer_tiny_hf")
CASES = ["constant_r3_prop_attn", "list_capped", "list_capped_prop_attn", "decreasing_r3_prop_attn"]
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
MODEL_TOL64 = 1e-9  # float64 through merges: the golden's merges are 2e-4 from any tie


@pytest.fixture(scope="module")
def golden():
    return torch.load(GOLDEN, weights_only=True)


def clip_of(golden, dtype=torch.float32):
    return golden["input"].to(dtype)  # [B, 3, T, H, W]


# --- the golden itself (no harness TimeSformer needed) ---

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
def test_the_hf_directory_reproduces_the_golden_dense_logits(golden, dtype):
    model = transformers.TimesformerForVideoClassification.from_pretrained(HF_DIR).eval().to(dtype)
    with torch.no_grad():
        logits = model(pixel_values=clip_of(golden, dtype).permute(0, 2, 1, 3, 4)).logits
    expected = golden["dense_logits"] if dtype == torch.float32 else golden["dense_logits_float64"]
    assert (logits - expected.to(dtype)).abs().max() <= TOL[dtype]
    assert (golden["dense_logits_official"] - golden["dense_logits"]).abs().max() <= TOL[torch.float32]


def test_golden_follows_the_per_frame_rule(golden):
    T, p0 = golden["hf_config"]["num_frames"], (golden["hf_config"]["image_size"] // golden["hf_config"]["patch_size"]) ** 2
    for name in CASES:
        case = golden["cases"][name]
        p = p0
        for layer, r in enumerate(case["schedule"]):
            assert case["spatial_tokens_in"][layer] == p and case["tokens_in"][layer] == 1 + T * p
            p -= min(r, p // 2)  # same r in every frame, capped at half the frame's tokens; CLS never merged
        assert case["spatial_tokens_out"] == p and case["tokens_out"] == 1 + T * p
        size = case["size"].long()  # [B, T, p_out]
        assert (size.sum(-1) == p0).all()  # each frame's tokens partition that frame's patches
        if case["trace_source"]:
            counts = torch.stack([torch.bincount(m, minlength=p) for m in case["member"].long().flatten(0, 1)])
            assert torch.equal(counts.view_as(size), size)
    assert golden["margin"] > 1e-4
    lists = golden["cases"]["list_capped"], golden["cases"]["list_capped_prop_attn"]
    assert (lists[0]["logits"] - lists[1]["logits"]).abs().max() > 1e-3  # proportional attention matters
    assert not torch.equal(lists[0]["member"][0], lists[0]["member"][1])  # the two clips merge differently
    assert not torch.equal(lists[0]["member"][0, 0], lists[0]["member"][0, 1])  # and frame by frame


# --- the harness's TimeSformer with its ToMe reducer ---

def build(method="dense", method_args=None):
    return harness.build_model("video_vit", family="timesformer", method=method, method_args=method_args,
                               checkpoint=HF_DIR)


def method_args(case) -> dict:
    args = {"prop_attn": case["prop_attn"]}
    if case["r_form"] == "tuple":
        args.update(r=case["r"][0], inflection=case["r"][1])
    else:
        args["r"] = case["r"]
    return args


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
def test_dense_harness_timesformer_equals_transformers(golden, dtype):
    model = build().to(dtype)
    with torch.no_grad():
        logits = model(clip_of(golden, dtype))
    expected = golden["dense_logits"] if dtype == torch.float32 else golden["dense_logits_float64"]
    assert (logits - expected.to(dtype)).abs().max() <= TOL[dtype]
    assert model.class_names == ["archery", "bowling", "cartwheel", "diving", "eating"]


@pytest.mark.parametrize("name", CASES)
def test_tome_on_timesformer_matches_pollard_wray(golden, name):
    case = golden["cases"][name]
    model = build("tome", method_args(case))
    with torch.no_grad():
        logits = model(clip_of(golden))
    assert model.last_stats.tokens_in == case["tokens_in"]  # 1 + T * p: CLS + equal count per frame
    assert model.last_stats.tokens_out == case["tokens_out"]
    assert (logits - case["logits"]).abs().max() <= TOL[torch.float32]


@pytest.mark.parametrize("name", CASES)
def test_tome_on_timesformer_matches_pollard_wray_in_float64(golden, name):
    case = golden["cases"][name]
    model = build("tome", method_args(case)).double()
    with torch.no_grad():
        logits = model(clip_of(golden, torch.float64))
    assert model.last_stats.tokens_in == case["tokens_in"]
    assert (logits - case["logits_float64"]).abs().max() <= MODEL_TOL64


def test_proportional_attention_is_what_separates_the_list_cases(golden):
    """Sanity of the check itself: the prop_attn golden is missed with prop_attn off."""
    case = golden["cases"]["list_capped_prop_attn"]
    model = build("tome", {**method_args(case), "prop_attn": False})
    with torch.no_grad():
        assert (model(clip_of(golden)) - case["logits"]).abs().max() > 1e-3
