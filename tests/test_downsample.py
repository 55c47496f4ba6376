"""The input-downsampling baseline: identity at the backbone's own input, frame choice, antialiased
resize, positional resampling as VideoMAE V2, GMACs = the reduced grid's (analytic, fvcore and torch's
FlopCounterMode agree), validation."""
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import harness
from harness.measure.flops import NORM_MACS_PER_ELEMENT, count_macs, fvcore_macs
from harness.models.video_vit import sinusoid_table
from methods.downsample.resample import downsample_clip, frame_indices, resample_pos_table

TINY = dict(embed_dim=32, depth=2, num_heads=2, num_classes=5)  # synthetic_vit_tiny geometry: 16 x 64, patch 16


def tiny(method="dense", **args):
    torch.manual_seed(0)
    return harness.build_model("synthetic_vit_tiny", method=method, method_args=args, **TINY)


@pytest.mark.parametrize("args", [{}, {"frames": 16, "size": 64}, {"frames": 16}, {"size": 64}])
def test_own_frames_and_size_are_bit_identical_to_dense(args):
    dense, down = tiny(), tiny("downsample", **args)
    down.load_state_dict(dense.state_dict())
    clip = torch.randn(2, 3, 16, 64, 64)
    with torch.no_grad():
        assert torch.equal(dense(clip), down(clip))
    assert down.token_counts == dense.token_counts == [128, 128]
    assert down.view_macs() == dense.view_macs()


def test_frame_indices_are_segment_centres_rounded_down():
    assert frame_indices(16, 8) == [1, 3, 5, 7, 9, 11, 13, 15]
    assert frame_indices(16, 12) == [0, 2, 3, 4, 6, 7, 8, 10, 11, 12, 14, 15]
    assert frame_indices(16, 16) == list(range(16))
    assert frame_indices(16, 2) == [4, 12]


def test_downsample_clip_picks_those_frames_and_resizes_with_antialiasing():
    clip = torch.arange(16.0).view(1, 1, 16, 1, 1).expand(2, 3, 16, 64, 64)
    out = downsample_clip(clip, torch.tensor(frame_indices(16, 8)), 32)
    assert out.shape == (2, 3, 8, 32, 32)
    assert torch.equal(out[0, 0, :, 5, 7], torch.arange(1.0, 16.0, 2.0))  # constant frames stay constant
    checker = (torch.arange(64)[:, None] + torch.arange(64)[None]) % 2  # 1-pixel checkerboard
    frame = checker.float().view(1, 1, 1, 64, 64)
    small = downsample_clip(frame, None, 32)[0, 0, 0]
    assert torch.allclose(small[1:-1, 1:-1], torch.full((30, 30), 0.5), atol=1e-6)  # the local mean
    assert torch.equal(small, F.interpolate(frame[:, :, 0], size=(32, 32), mode="bilinear",
                                            antialias=True, align_corners=False)[0, 0])


def videomae_v2_resample(table, t, p, new_t, new_p):
    """OpenGVLab/VideoMAEv2 run_class_finetuning.py (input_size != 224, then num_frames != 16), restated."""
    c = table.shape[-1]
    x = table.reshape(-1, t, p, p, c).reshape(-1, p, p, c).permute(0, 3, 1, 2)
    x = F.interpolate(x, size=(new_p, new_p), mode="bicubic", align_corners=False)
    x = x.permute(0, 2, 3, 1).reshape(-1, t, new_p, new_p, c).flatten(1, 3)
    x = x.reshape(-1, t, new_p, new_p, c).permute(0, 2, 3, 4, 1).reshape(-1, c, t)
    x = F.interpolate(x, size=new_t, mode="linear")
    return x.reshape(1, new_p, new_p, c, new_t).permute(0, 4, 1, 2, 3).flatten(1, 3)


def test_positional_table_is_resampled_as_videomae_v2():
    table = sinusoid_table(8 * 14 * 14, 64)
    ours = resample_pos_table(table, (8, 14, 14), (4, 10, 10))
    assert ours.shape == (1, 400, 64)
    assert torch.allclose(ours, videomae_v2_resample(table, 8, 14, 4, 10), atol=1e-6, rtol=0)
    assert torch.equal(resample_pos_table(table, (8, 14, 14), (8, 14, 14)), table)
    halved = resample_pos_table(table, (8, 14, 14), (4, 14, 14)).view(4, 196, 64)
    pairs = table.view(4, 2, 196, 64)  # linear, align_corners=False, x2: the mean of each pair of slices
    assert torch.allclose(halved, (pairs[:, 0] + pairs[:, 1]) / 2, atol=1e-6)


def test_model_uses_the_resampled_or_regenerated_table():
    down = tiny("downsample", frames=8, size=32)
    assert torch.equal(down.pos_embed, resample_pos_table(sinusoid_table(128, 32), (8, 4, 4), (4, 2, 2)))
    regen = tiny("downsample", frames=8, size=32, pos_embed="regenerate")
    assert torch.equal(regen.pos_embed, sinusoid_table(16, 32))


def test_reduced_model_equals_the_dense_network_on_the_reduced_clip():
    down = tiny("downsample", frames=8, size=32)
    small = harness.build_model("synthetic_vit_tiny", num_frames=8, img_size=32, **TINY)
    small.load_state_dict(down.state_dict())
    small.pos_embed = down.pos_embed.clone()
    clip = torch.randn(2, 3, 16, 64, 64)
    with torch.no_grad():
        reduced = downsample_clip(clip, torch.tensor(frame_indices(16, 8)), 32)
        assert torch.equal(down(clip), small(reduced))
    assert down.token_counts == [16, 16]
    assert down.view_macs() == small.view_macs()


def test_acceptance_videomae_b16_frames8_size160_gmacs_equal_independent_counts():
    with torch.device("meta"):
        model = harness.build_model("videomae_vit_b16", num_classes=400, method="downsample",
                                    method_args={"frames": 8, "size": 160}, depth=2)
        clip = torch.empty(2, 3, 16, 224, 224)
        with FlopCounterMode(display=False) as counter:
            out = model(clip)
    assert out.shape == (2, 400)
    assert model.token_counts == [4 * 10 * 10] * 2
    macs = model.view_macs()
    assert macs == count_macs(model.reduced_cfg, [400, 400], [400, 400])
    c = model.cfg.embed_dim
    expected = (400 * c * 3 * 2 * 16 * 16  # patch embedding of 400 tubelets
                + 2 * (400 * c * 4 * c + 2 * 400 * c * 4 * c + 2 * 400 * 400 * c)  # qkv+proj, MLP, attention
                + NORM_MACS_PER_ELEMENT * c * (2 * 2 * 400 + 1) + c * 400)  # LayerNorms, head
    assert macs.total == expected
    matmuls = macs.total - macs.norm - NORM_MACS_PER_ELEMENT * c  # FlopCounterMode counts no LayerNorm
    assert counter.get_total_flops() == 2 * 2 * matmuls  # 2 FLOPs per MAC, batch 2


def test_fvcore_agrees_with_the_analytic_count():
    model = tiny("downsample", frames=12, size=48)
    clip = torch.randn(1, 3, 16, 64, 64)
    with torch.no_grad():
        model(clip)
    counted, unexpected = fvcore_macs(model, clip)
    assert unexpected == {}
    assert counted == model.view_macs().total
    assert model.token_counts == [6 * 3 * 3] * 2


def test_dry_run_cost_before_any_forward():
    from harness.run.plan import meta_gmacs

    gmacs = meta_gmacs({"name": "videomae_vit_b16", "num_classes": 400}, {"name": "downsample",
                                                                          "params": {"frames": 8, "size": 112}})
    with torch.device("meta"):
        small = harness.build_model("videomae_vit_b16", num_classes=400, num_frames=8, img_size=112)
        small(torch.empty(1, 3, 8, 112, 112))
    assert gmacs == small.view_macs().total / 1e9


@pytest.mark.parametrize("args, message", [
    ({"size": 150}, "not a multiple of patch_size 16 (did you mean 144?)"),
    ({"size": 256}, "only downsamples"),
    ({"frames": 7}, "not a multiple of tubelet_size 2"),
    ({"frames": 32}, "only downsamples"),
    ({"frames": 0}, "positive int"),
    ({"pos_embed": "nearest"}, "pos_embed must be one of"),
])
def test_bad_settings_are_named(args, message):
    with pytest.raises(ValueError, match="downsample") as err:
        harness.build_model("videomae_vit_b16", method="downsample", method_args=args, depth=1)
    assert message in str(err.value)


def test_capabilities():
    import methods

    assert methods.get_method("downsample").capabilities() == {
        "kind": "resample", "training_free": True, "needs_attention_probs": False,
        "adaptive_token_count": False, "own_architecture": True}


def test_wrong_clip_shape_is_named():
    with pytest.raises(ValueError, match="backbone's input shape"):
        tiny("downsample", frames=8)(torch.randn(1, 3, 8, 64, 64))
