"""STA: stage placement and token counts, published GMACs, fvcore agreement, hand-checked drop and
accumulation steps, identity at r=0, batch invariance, backbone checks."""
import math

import pytest
import torch

import harness
import methods
import methods.sta  # noqa: F401  (registration, until methods/__init__ imports it)
from harness.measure.flops import count_macs, fvcore_macs, model_macs
from harness.models.presets import resolve_config
from methods.sta import STAParams, stage_token_counts
from methods.sta.reducer import STAReducer, accumulate, sta_stage, tome_drop
from conftest import tiny

# 16 x 224 grid (8 slices x 196 tokens) at a width that keeps a forward to about a second
GRID_224 = dict(embed_dim=16, depth=12, num_heads=1, patch_size=16, tubelet_size=2, num_frames=16,
                img_size=224, num_classes=10)
TINY = tiny(depth=6)  # 8 x 4 x 4 = 128 tokens, stages after blocks 0, 2, 4


def _counts(r, **dims):
    model = harness.build_model("video_vit", method="sta", method_args={"r": r}, **{**GRID_224, **dims})
    with torch.inference_mode():
        model(torch.randn(1, 3, 16, 224, 224))
    return model


@pytest.fixture(scope="module")
def counts_224():
    return {r: _counts(r) for r in (16, 32, 48, 64)}


def test_registered_as_training_free_pruning():
    spec = methods.get_method("sta")
    assert spec.capabilities() == {"kind": "prune", "training_free": True, "needs_attention_probs": False,
                                   "adaptive_token_count": False, "own_architecture": False}
    assert spec.make_params({"r": 32}).r == 32
    with pytest.raises(ValueError, match="non-negative"):
        spec.make_params({"r": -1})


def test_token_counts_16x224_r32(counts_224):
    model = counts_224[32]
    n = model.token_counts
    # prunes after whole blocks 0, 4, 8: the next block sees the reduced set
    assert n == [1568] + [1312] * 4 + [1184] * 4 + [1120] * 3
    assert model.last_stats.tokens_mlp == n  # nothing happens between attention and MLP
    assert model.last_stats.tokens_out == 1120
    assert stage_token_counts(196, 32) == [1312, 1184, 1120]
    assert model.reducer.describe() == {
        "r": 32, "stage_layers": [0, 4, 8], "groups_per_stage": [8, 4, 2],
        "visit_order_per_stage": [list(range(8)), [3, 2, 1, 0], [0, 1]],
        "tokens_in": 1568, "tokens_after_stage": [1312, 1184, 1120]}


def test_stage_layers_of_a_24_block_model():
    reducer = STAReducer(STAParams(r=64), depth=24, num_heads=16, embed_dim=1024)
    assert sorted(reducer.stages) == [0, 8, 16]
    assert [layer for layer in range(24) if reducer.attention_needs(layer)] == [0, 8, 16]


@pytest.mark.parametrize("r,gmacs", [(16, 157.90), (32, 136.32), (48, 115.86), (64, 96.53)])
def test_vit_b_gmacs_match_the_official_fvcore_figures(counts_224, r, gmacs):
    cfg = resolve_config("videomae_vit_b16")
    model = counts_224[r]  # token counts do not depend on the width
    reducer = STAReducer(STAParams(r=r), depth=cfg.depth, num_heads=cfg.num_heads, embed_dim=cfg.embed_dim)
    macs = count_macs(cfg, model.token_counts, model.last_stats.tokens_mlp, reducer.overhead_macs)
    assert macs.total / 1e9 == pytest.approx(gmacs, abs=0.05)
    assert macs.overhead > 0


@pytest.mark.parametrize("backbone,dims,r", [("synthetic_vit_tiny", {}, 5),
                                             ("video_vit", TINY, 3),
                                             ("video_vit", {**TINY, "img_size": 48}, 2)])  # odd groups
def test_analytic_count_equals_fvcore(backbone, dims, r):
    model = harness.build_model(backbone, method="sta", method_args={"r": r}, **dims)
    clip = torch.randn(1, 3, 16, model.cfg.img_size, model.cfg.img_size)
    with torch.inference_mode():
        model(clip)
    analytic = model_macs(model)
    counted, unexpected = fvcore_macs(model, clip)
    assert unexpected == {}
    assert analytic.overhead > 0
    assert counted == analytic.total


def _pair(r, **dims):
    torch.manual_seed(0)
    dense = harness.build_model("video_vit", **{**TINY, **dims})
    sta = harness.build_model("video_vit", method="sta", method_args={"r": r}, **{**TINY, **dims})
    sta.load_state_dict(dense.state_dict())
    return dense, sta


def test_r_zero_is_exactly_dense():
    dense, sta = _pair(0)
    clip = torch.randn(2, 3, 16, 64, 64)
    with torch.inference_mode():
        assert torch.equal(dense(clip), sta(clip))
    assert sta.token_counts == [128] * 6
    assert not any(sta.reducer.attention_needs(layer) for layer in range(6))


def test_pruning_changes_the_output():
    dense, sta = _pair(3)
    clip = torch.randn(1, 3, 16, 64, 64)
    with torch.inference_mode():
        assert not torch.allclose(dense(clip), sta(clip))
    assert sta.token_counts == [128, 104, 104, 92, 92, 86]


def test_batch_does_not_change_any_sample():
    _, sta = _pair(3)
    clips = torch.randn(4, 3, 16, 64, 64)
    with torch.inference_mode():
        batched = sta(clips)
        single = torch.cat([sta(clips[i:i + 1]) for i in range(4)])
    assert torch.allclose(batched, single, atol=1e-5)


def test_stage_batch_invariance_is_exact():
    torch.manual_seed(0)
    x, keys = torch.randn(3, 4 * 10, 6), torch.randn(3, 4 * 10, 5)
    batched = sta_stage(x, keys, 3, 4, (3, 2, 1, 0))
    for i in range(3):
        assert torch.equal(batched[i:i + 1], sta_stage(x[i:i + 1], keys[i:i + 1], 3, 4, (3, 2, 1, 0)))


def test_tome_drop_hand_checked():
    # A = {0, 2, 4}, B = {1, 3, 5}. best(0) = 1 (same as token 1), best(2) = 0.8 (token 3),
    # best(4) = 0 (token 5). Order: B tokens, then A by ascending best: [1, 3, 5, 4, 2, 0].
    keys = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [-1.0, 0.0], [0.0, -1.0]]])
    ids = torch.arange(6, dtype=torch.float).view(1, 6, 1)
    x, k = tome_drop(ids, keys)
    assert x.flatten().tolist() == [1, 3, 5, 4, 2, 0]  # r = 2 keeps [1, 3, 5, 4]: drops 2 and 0
    assert torch.equal(k, keys[:, [1, 3, 5, 4, 2, 0]])


def test_two_group_accumulation_hand_checked():
    # group 0: keys k0 = (1, 0), k1 = (.6, .8), k2 = (0, 1); A = {0, 2}, B = {1}; best(0) = .6 < best(2) = .8
    # -> reference order [1, 0, 2]; r = 1 keeps tokens 1, 0 of group 0 (2 is dropped but stays a reference).
    # group 1: keys c0 = (1, 0), c1 = (0, 1), c2 = (-1, 0); logits c_i . ref_j, softmax over i per column j.
    ref = [(0.6, 0.8), (1.0, 0.0), (0.0, 1.0)]
    cur = [(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0)]
    s = [0.0, 0.0, 0.0]
    for rj in ref:
        logits = [ci[0] * rj[0] + ci[1] * rj[1] for ci in cur]
        z = sum(math.exp(v) for v in logits)
        for i, v in enumerate(logits):
            s[i] += math.exp(v) / z
    assert s == pytest.approx([1.2735, 1.3050, 0.4214], abs=1e-3)
    got = accumulate(torch.tensor([cur]), torch.tensor([ref]))
    assert got.flatten().tolist() == pytest.approx(s, abs=1e-6)

    # group-1 L1 magnitudes 1, 3, 2 -> normalised 0, 1, .5 -> score s * (1 - a) = [1.27, 0, 0.21]:
    # keep the 2 smallest in ascending order: tokens 1, 2.
    keys = torch.tensor([[(1.0, 0.0), (0.6, 0.8), (0.0, 1.0)] + cur])
    x = torch.tensor([[[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [1.0, 0.0], [0.0, 3.0], [-2.0, 0.0]]])
    out = sta_stage(x, keys * 2.0, r=1, num_groups=2, order=(0, 1))  # key norms do not matter
    assert out.tolist() == [[[2.0, 2.0], [1.0, 1.0], [0.0, 3.0], [-2.0, 0.0]]]


def _reference_stage(x, keys, r, groups, order):
    """Per-sample loop, written from the spec (§4.2), for a many-group check of the renormalised transport."""
    out = []
    for xb, kb in zip(x, keys):
        n = xb.shape[0] // groups
        xg, kg = xb.view(groups, n, -1), kb.view(groups, n, -1)
        kg = kg / kg.norm(dim=-1, keepdim=True)
        mag = xg.abs().sum(-1)
        act = (mag - mag.min(-1, keepdim=True).values) / (mag.max(-1, keepdim=True).values
                                                         - mag.min(-1, keepdim=True).values)
        kept = {}
        g0 = order[0]
        best = (kg[g0, 0::2] @ kg[g0, 1::2].T).max(-1).values
        perm = list(range(1, n, 2)) + [2 * int(i) for i in best.argsort()]
        kept[g0] = xg[g0, perm[:n - r]]
        ref_k, ref_s = kg[g0, perm], torch.ones(n, dtype=kg.dtype)
        for g in order[1:]:
            p = (kg[g] @ ref_k.T).softmax(dim=0)
            s = p @ ref_s
            idx = (s * (1 - act[g])).argsort()[:n - r]
            kept[g] = xg[g, idx]
            ref_k, ref_s = kg[g, idx], s[idx] / s[idx].sum()
        out.append(torch.cat([kept[g] for g in range(groups)]))
    return torch.stack(out)


@pytest.mark.parametrize("groups,order", [(8, tuple(range(8))), (4, (3, 2, 1, 0)), (2, (0, 1))])
def test_stage_matches_a_per_sample_reference(groups, order):
    torch.manual_seed(1)
    x, keys = torch.randn(2, groups * 11, 7, dtype=torch.float64), torch.randn(2, groups * 11, 4,
                                                                               dtype=torch.float64)
    assert torch.allclose(sta_stage(x, keys, 4, groups, order), _reference_stage(x, keys, 4, groups, order))


def test_overhead_macs_per_stage():
    reducer = STAReducer(STAParams(r=32), depth=12, num_heads=12, embed_dim=768)
    d = 64
    assert reducer.overhead_macs(1, 1312) == 0
    # stage 1: 8 groups of 196; drop scores 98 x 98, first transport 196 x 196, 6 later ones 196 x 164 (+ P s)
    assert reducer.overhead_macs(0, 1568) == 98 * 98 * d + 196 * 196 * d + 6 * (196 * 164 * d + 196 * 164)
    # stage 3: 2 groups of 592; no later groups
    assert reducer.overhead_macs(8, 1184) == 296 * 296 * d + 592 * 592 * d


def test_backbone_checks():
    with pytest.raises(ValueError, match="8 temporal token slices"):
        harness.build_model("video_vit", method="sta", method_args={"r": 4}, **{**TINY, "num_frames": 8})
    cfg = resolve_config("videomae_vit_b16")
    assert STAParams(r=111).check_backbone(cfg) == []
    problems = STAParams(r=112).check_backbone(cfg)
    assert len(problems) == 1 and "largest valid r is 111" in problems[0] and "stage 3" in problems[0]
    assert "stage 1" in STAParams(r=16).check_backbone(resolve_config("video_vit", **TINY))[0]
    assert STAParams(r=0).check_backbone(resolve_config("video_vit", **{**TINY, "num_frames": 8}))
