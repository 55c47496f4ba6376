"""STTM (re-implementation): the §6.2 verification checks (size conservation, identity at K = N_f and
r = 0, permutation equivariance within a frame), hand-checked merge steps, token counts, fvcore
agreement, the zero-initialised motion projection, checkpoints and parameter validation."""
import math

import pytest
import torch

import harness
import methods
from harness.run.plan import meta_gmacs
from harness.models.presets import resolve_config
from harness.models.reduction import TokenState
from methods.sttm import STTMParams, budget
from methods.sttm.merge import (assign_to_meta, cosine_matrix, dpc_knn, motion_features, position_moments,
                                spatial_merge, temporal_merge)

CKPT = "checkpoints/synthetic_vit_tiny.pth"
TINY_CLIP = (3, 16, 64, 64)  # synthetic_vit_tiny: 8 frames x 16 tokens, 128-d, 4 blocks


def _build(**args):
    return harness.build_model("synthetic_vit_tiny", method="sttm", method_args=args)


def _unit(deg):
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


# --- registration and parameters ---------------------------------------------------------------

def test_registered_as_a_labelled_trained_merge_method():
    spec = methods.get_method("sttm")
    assert spec.capabilities() == {"kind": "merge", "training_free": False, "needs_attention_probs": False,
                                   "adaptive_token_count": False, "own_architecture": False}
    assert spec.title == "STTM (re-implementation)"
    assert "training-free" in spec.summary and "RE-IMPLEMENTATION" in spec.summary
    assert spec.train_recipe["optimizer"] == "adamw" and spec.train_recipe["epochs"] == 5
    assert spec.make_params({}) == STTMParams()


@pytest.mark.parametrize("args,match", [
    ({"num_meta": 0}, "num_meta must be a number > 0"),
    ({"num_meta": 2.5}, "must be whole"),
    ({"temporal_r": -1}, "temporal_r must be a number >= 0"),
    ({"tau": 0.0}, "tau must be"),
    ({"knn_k": 0}, "knn_k must be"),
    ({"layer": -1}, "layer must be"),
    ({"meta_selection": "queries"}, "meta_selection must be one of"),
    ({"motion": "on"}, "motion must be one of"),
    ({"prop_attn": 1}, "prop_attn must be"),
    ({"K": 4}, "no parameter"),
])
def test_bad_params_are_rejected(args, match):
    with pytest.raises(ValueError, match=match):
        _build(**args)


def test_backbone_checks():
    tiny = resolve_config("synthetic_vit_tiny")
    assert STTMParams().check_backbone(tiny) == []
    assert "out of range" in STTMParams(layer=4).check_backbone(tiny)[0]
    assert STTMParams(layer=3).check_backbone(tiny) == []
    assert "a frame has 16 tokens" in STTMParams(num_meta=17).check_backbone(tiny)[0]
    assert "only K=8 tokens" in STTMParams(num_meta=8, temporal_r=9).check_backbone(tiny)[0]
    with pytest.raises(ValueError, match="out of range"):
        _build(layer=4)
    assert budget(STTMParams(), resolve_config("videomae_vit_b16")).layer == 3  # depth // 4


# --- hand-checked merge steps --------------------------------------------------------------------

def test_dpc_knn_picks_one_peak_per_cluster():
    # unit vectors at 0, 4, 10 degrees (cluster 1) and 90, 97 degrees (cluster 2); k = 3 (self included).
    # d2 = 2 - 2 cos; rho = exp(-(d2 to the 2 nearest others) / 3): .9883, .9947, .9863, .5736, .5290
    # (order 1 > 0 > 2 > 3 > 4); delta = distance to the nearest denser token: 4, 6 and 80 degrees for
    # tokens 0, 2, 3, 7 degrees for token 4, the largest distance (97 degrees) for token 1.
    # rho * delta: .0690, 1.490, .1032, .7374, .0646 -> peaks 1, 3, then 2, 0, 4.
    cos = cosine_matrix(torch.tensor([[[_unit(a) for a in (0, 4, 10, 90, 97)]]]))
    assert dpc_knn(cos, 2, 3).tolist() == [[[1, 3]]]
    assert dpc_knn(cos, 5, 3).tolist() == [[[1, 3, 2, 0, 4]]]


def test_assignment_weights_and_spatial_merge_by_hand():
    angles = (0, 4, 10, 90, 97)
    x = torch.tensor([[[_unit(a) for a in angles]]])
    cos = cosine_matrix(x)
    meta = torch.tensor([[[1, 3]]])
    assign, weight = assign_to_meta(cos, meta, tau=0.1)
    assert assign.tolist() == [[[0, 0, 0, 1, 1]]]
    soft = [math.exp(math.cos(math.radians(a - 4)) / 0.1) /
            (math.exp(math.cos(math.radians(a - 4)) / 0.1) + math.exp(math.cos(math.radians(a - 90)) / 0.1))
            for a in angles]
    expected_w = [soft[0], soft[1], soft[2], 1 - soft[3], 1 - soft[4]]
    assert weight.flatten().tolist() == pytest.approx(expected_w, abs=1e-6)

    size = torch.tensor([1.0, 2.0, 1.0, 1.0, 3.0]).view(1, 1, 5, 1)
    merged, merged_size = spatial_merge(x, size, assign, weight, 2)
    assert merged_size.flatten().tolist() == [4.0, 4.0]
    for k, members in enumerate(([0, 1, 2], [3, 4])):
        om = [expected_w[i] * size.flatten()[i].item() for i in members]
        want = [sum(o * _unit(angles[i])[d] for o, i in zip(om, members)) / sum(om) for d in (0, 1)]
        assert merged[0, 0, k].tolist() == pytest.approx(want, abs=1e-6)


def test_meta_tokens_always_keep_their_own_cluster():
    # token 0 and 1 are identical: whichever is the second meta token must still be its own cluster
    x = torch.tensor([[[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]]])
    assign, _ = assign_to_meta(cosine_matrix(x), torch.tensor([[[2, 1, 0]]]), tau=0.1)
    assert assign.tolist() == [[[2, 1, 0]]]


def test_temporal_merge_chains_across_frames_by_hand():
    # 3 frames x 2 tokens, r = 1. Frame 0 -> 1: a merges into c (c' = (a + c) / 2, size 2), b stays.
    # Frame 1 -> 2: c' merges into e (e' = (2 c' + e) / 3, size 3), d stays. Output [b, d, e', f].
    a, b, c, d, e, f = [1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [-1.0, 0.0], [1.0, 0.2], [0.0, -1.0]
    x = torch.tensor([[[a, b], [c, d], [e, f]]])
    out, size = temporal_merge(x, torch.ones(1, 3, 2, 1), r=1)
    assert size.flatten().tolist() == [1.0, 1.0, 3.0, 1.0]
    assert out.flatten().tolist() == pytest.approx(b + d + [1.0, 0.1] + f, abs=1e-6)
    same, same_size = temporal_merge(x, torch.ones(1, 3, 2, 1), r=0)
    assert torch.equal(same, x.flatten(1, 2)) and same_size.sum() == 6


def test_motion_features_of_a_chained_token_by_hand():
    # the chain above with positions: a at (y, x) = (0, 0), c at (.5, .5), e at (1, 1); b at (0, 1).
    def moment(t, y, x):
        m = torch.zeros(3, 3)
        m[t] = torch.tensor([1.0, y, x])
        return m.flatten().tolist()

    feats = [[1.0, 0.0] + moment(0, 0, 0), [0.0, 1.0] + moment(0, 0, 1)], \
            [[1.0, 0.1] + moment(1, .5, .5), [-1.0, 0.0] + moment(1, 1, 0)], \
            [[1.0, 0.2] + moment(2, 1, 1), [0.0, -1.0] + moment(2, 0, 0)]
    out, _ = temporal_merge(torch.tensor([feats]), torch.ones(1, 3, 2, 1), r=1, metric_dims=2)
    motion = motion_features(out[..., 2:], frames=3)
    # P = mean (t, y, x) = (.5, .5, .5); centroid steps (.5, .5), (.5, .5), then the zero pad
    assert motion[0, 2].tolist() == pytest.approx([.5, .5, .5, .5, .5, .5, .5, 0, 0], abs=1e-6)
    assert motion[0, 0].tolist() == pytest.approx([0, 0, 1, 0, 0, 0, 0, 0, 0], abs=1e-6)  # b alone


def test_position_moments_grid():
    m = position_moments(2, 2, 3).view(12, 2, 3)
    assert m[0].tolist() == [[1, 0, 0], [0, 0, 0]]
    assert m[11].tolist() == [[0, 0, 0], [1, 1, 1]]  # frame 1, last row and column
    assert m[4].tolist() == [[1, 1, 0.5], [0, 0, 0]]  # frame 0, y = 1 of 1, x = 1 of 2


# --- the module in a model -------------------------------------------------------------------------

@pytest.mark.parametrize("args,k,r", [({}, 8, 2), ({"num_meta": 4, "temporal_r": 2}, 4, 2),
                                      ({"num_meta": 0.75, "temporal_r": 0.25, "motion": "learned"}, 12, 3),
                                      ({"num_meta": 1, "temporal_r": 1}, 1, 1)])
def test_sizes_are_conserved(args, k, r):
    torch.manual_seed(0)
    model = _build(**args)
    x = torch.randn(3, 128, 128)
    out, state = model.reducer.after_block(1, x, TokenState(), None)
    assert out.shape == (3, 8 * k - 7 * r, 128)
    assert torch.allclose(state.size.sum(dim=1), torch.full((3, 1), 128.0))
    assert torch.equal(state.size, state.size.round()) and state.size.min() >= 1


@pytest.mark.parametrize("args,counts,describe", [
    ({}, [128, 128, 50, 50],
     {"layer": 1, "num_meta_per_frame": 8, "temporal_r": 2, "tokens_after_module": 50}),
    ({"num_meta": 0.75, "temporal_r": 0.25}, [128, 128, 75, 75], {"tokens_after_spatial": 96}),
    ({"num_meta": 0.25, "temporal_r": 0.5}, [128, 128, 18, 18], {"num_meta_per_frame": 4, "temporal_r": 2}),
    ({"num_meta": 4, "temporal_r": 0, "layer": 0}, [128, 32, 32, 32], {"tokens_after_module": 32}),
])
def test_token_counts_per_block(args, counts, describe):
    model = _build(**args)
    with torch.inference_mode():
        model(torch.randn(2, *TINY_CLIP))
    assert model.token_counts == counts
    assert model.last_stats.tokens_mlp == counts  # STTM acts after whole blocks
    assert model.last_stats.tokens_out == counts[-1]
    assert describe.items() <= model.describe().items()


@pytest.mark.parametrize("motion", ["off", "learned"])
def test_k_equal_tokens_per_frame_and_no_temporal_merge_is_dense(motion):
    dense = harness.build_model("synthetic_vit_tiny", checkpoint=CKPT)
    model = _build(num_meta=16, temporal_r=0, motion=motion)
    if motion == "off":
        model.load_checkpoint(CKPT)
    else:
        model.init_from(CKPT)
    clip = torch.randn(3, *TINY_CLIP)
    with torch.inference_mode():
        assert torch.allclose(model(clip), dense(clip), atol=1e-5)
    assert model.token_counts == [128] * 4


@pytest.mark.parametrize("motion", ["off", "learned"])
def test_permuting_a_frames_tokens_gives_the_same_merged_set(motion):
    torch.manual_seed(0)
    model = _build(num_meta=5, temporal_r=2, motion=motion)
    reducer = model.reducer
    if motion == "learned":
        torch.nn.init.normal_(reducer.motion_proj.weight)  # a fine-tuned projection: positions matter
    x = torch.randn(2, 128, 128)
    perm = torch.cat([t * 16 + torch.randperm(16) for t in range(8)])
    out, state = reducer.after_block(1, x, TokenState(), None)
    if motion == "learned":  # the tokens keep their positions when they are permuted
        reducer.moments = reducer.moments[perm]
    out_p, state_p = reducer.after_block(1, x[:, perm], TokenState(), None)
    assert torch.allclose(reducer.pool(out, state), reducer.pool(out_p, state_p), atol=1e-5)
    a, b = torch.cat([out, state.size], -1), torch.cat([out_p, state_p.size], -1)
    gap = (a[:, :, None] - b[:, None]).abs().amax(dim=-1)  # [B, n, n]: row i of a vs row j of b
    assert gap.amin(dim=2).max() < 1e-5 and gap.amin(dim=1).max() < 1e-5  # the same set of tokens


def test_batch_does_not_change_any_sample():
    model = _build(motion="learned")
    torch.nn.init.normal_(model.reducer.motion_proj.weight, std=0.1)
    clips = torch.randn(3, *TINY_CLIP)
    with torch.inference_mode():
        batched = model(clips)
        single = torch.cat([model(clips[i:i + 1]) for i in range(3)])
    assert torch.allclose(batched, single, atol=1e-5)


def test_motion_projection_is_zero_initialised_and_learns():
    model = _build(motion="learned")
    proj = model.reducer.motion_proj
    assert proj.weight.shape == (128, 3 + 2 * 8)
    assert not proj.weight.any() and not proj.bias.any()  # survives VideoViT's weight init
    model.train()
    loss, logs = model.training_loss({"clips": torch.randn(2, *TINY_CLIP), "labels": torch.tensor([1, 5])})
    loss.backward()
    assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0
    assert proj.bias.grad.abs().sum() > 0
    assert math.isfinite(logs["ce"])


def test_checkpoints():
    off = harness.build_model("synthetic_vit_tiny", method="sttm", method_args={"motion": "off"},
                              checkpoint=CKPT)  # strict: no reducer parameters exist
    assert not any(k.startswith("reducer.") for k in off.state_dict())
    learned = _build(motion="learned")
    with pytest.raises(ValueError):
        learned.load_checkpoint(CKPT)  # a dense file lacks the motion projection
    info = learned.init_from(CKPT)
    assert info["new"] == ["reducer.motion_proj.bias", "reducer.motion_proj.weight"]
    assert not learned.reducer.motion_proj.weight.any()
    assert "reducer.moments" not in learned.state_dict()  # a fixed grid, not saved


def test_vit_b_gmacs_on_the_meta_device():
    vit_b = {"name": "videomae_vit_b16"}
    dense = meta_gmacs(vit_b, {"name": "dense", "params": {}})
    default = meta_gmacs(vit_b, {"name": "sttm", "params": {}})
    assert dense == pytest.approx(180.49, abs=0.01)
    assert default == pytest.approx(101.26, abs=0.01)  # K = 98, r = 24 after block 3: 616 tokens
