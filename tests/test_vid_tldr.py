"""vid-TLDR: published token counts, hand-checked saliency and merge, size bookkeeping, proportional
attention, GMACs == fvcore, identity at r=[], batch invariance, NaN guards."""
import math

import pytest
import torch

import harness
import methods
import methods.vid_tldr  # noqa: F401  (registration)
from harness.measure.flops import count_macs
from harness.models.presets import resolve_config
from methods.vid_tldr import VidTLDRParams
from methods.vid_tldr.merge import (bipartite_match, merge_count, parse_r, saliency, saliency_merge,
                                    token_schedule)
from methods.vid_tldr.reducer import VidTLDRReducer
from conftest import tiny

TINY = tiny(tubelet_size=1, num_frames=4)  # 4 x 4 x 4 = 64 tokens
UMT_GRID = dict(patch_size=16, tubelet_size=1, num_frames=12, img_size=224)  # 12 x 196 = 2352 tokens

# README ViT-B/16 lists (spec section 3.6) -> tokens after each merging block
PUBLISHED_B = {
    (600, 200, 100): [1752, 1552, 1452], (450, 250, 200): [1902, 1652, 1452], (500,): [1852],
    (250, 150, 150, 150): [2102, 1952, 1802, 1652], (400, 150, 150): [1952, 1802, 1652],
    (200, 200, 200, 100): [2152, 1952, 1752, 1652], (400, 300): [1952, 1652], (600, 200): [1752, 1552],
}


def _pair(method_args, **dims):
    dims = {**TINY, **dims}
    torch.manual_seed(0)
    dense = harness.build_model("video_vit", **dims)
    model = harness.build_model("video_vit", method="vid_tldr", method_args=method_args, **dims)
    model.load_state_dict(dense.state_dict())
    return dense, model


def _official_formula(probs):
    """The official get_objective_score arithmetic, written out without guards."""
    p = probs.mean(dim=1)
    e = (p * torch.log(p)).sum(dim=2).unsqueeze(-1)
    e = e - e.amin(dim=1, keepdim=True)
    e = e / e.amax(dim=1, keepdim=True)
    mask = e < e.mean(dim=1, keepdim=True)
    f = e - e.mean(dim=1, keepdim=True)
    f = f / f.amax(dim=1, keepdim=True)
    f[mask] = 0.0
    return f


# ----------------------------------------------------------------------------- schedules / counts

@pytest.mark.parametrize("r,after", sorted(PUBLISHED_B.items()))
def test_published_vit_b_schedules(r, after):
    counts = token_schedule(2352, parse_r(12, list(r)))
    assert counts[1:len(r) + 1] == after
    assert counts[len(r) + 1:] == [after[-1]] * (12 - len(r))


def test_published_counts_on_the_umt_grid_model():
    model = harness.build_model("video_vit", embed_dim=48, depth=12, num_heads=3, num_classes=10,
                                method="vid_tldr", method_args={"r": [600, 200, 100]}, **UMT_GRID)
    with torch.inference_mode():
        out = model(torch.randn(1, 3, 12, 224, 224))
    assert out.shape == (1, 10) and torch.isfinite(out).all()
    assert model.token_counts == [2352, 1752, 1552] + [1452] * 9
    assert model.last_stats.tokens_mlp == [1752, 1552, 1452] + [1452] * 9  # merge before the MLP
    # probabilities are materialised only where a merge happens
    assert model.last_stats.attention_kernel == ["explicit"] * 3 + ["sdpa"] * 9
    assert model.reducer.describe() == {"r_per_block": [600, 200, 100] + [0] * 9, "pool": "mean"}


def test_fractional_and_capped_r():
    assert merge_count(64, 0.25) == 16 and merge_count(52, 0.25) == 13  # int(N * r)
    assert merge_count(63, 0.3) == 18  # int(18.9)
    assert merge_count(64, 100) == 32 and merge_count(65, 0.9) == 32  # capped at N // 2
    assert merge_count(64, 0) == 0 and merge_count(3, 0.2) == 0
    assert token_schedule(64, [12, 0.25, 0, 5]) == [64, 52, 39, 39, 34]
    _, model = _pair({"r": [0.5, 0.3, 0.2, 0.1]})
    with torch.inference_mode():
        model(torch.randn(1, 3, 4, 64, 64))
    assert model.token_counts == [64, 32, 23, 19]
    assert model.last_stats.tokens_mlp == [32, 23, 19, 18]


def test_params_validation():
    spec = methods.get_method("vid_tldr")
    assert spec.needs_attention_probs and spec.training_free and spec.kind == "merge"
    assert spec.make_params({}).r == []
    assert parse_r(3, 0.5) == [0.5] * 3 and parse_r(3, 4) == [4] * 3  # bare number: every block
    assert parse_r(4, [600.0, 0.25, 0]) == [600, 0.25, 0, 0]  # suites hand in floats
    for bad in ([-1], [2.5], [float("nan")], [True], -2, "4", [[1]]):
        with pytest.raises(ValueError):
            spec.make_params({"r": bad})
    with pytest.raises(ValueError):
        spec.make_params({"pool": "max"})
    with pytest.raises(ValueError, match="blocks"):
        harness.build_model("video_vit", method="vid_tldr", method_args={"r": [1] * 5}, **TINY)
    with pytest.raises(ValueError, match="blocks"):
        VidTLDRReducer(VidTLDRParams(r=[1] * 5), depth=4, num_heads=2, embed_dim=32)


# ----------------------------------------------------------------------------- saliency

def test_hand_checked_saliency():
    rows = [[0.97, 0.01, 0.01, 0.01], [0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1],
            [0.4, 0.3, 0.2, 0.1]]
    e = [sum(p * math.log(p) for p in row) for row in rows]
    lo, hi = min(e), max(e)
    n = [(v - lo) / (hi - lo) for v in e]
    mean = sum(n) / 4
    top = max(n) - mean
    expected = [0.0 if v < mean else (v - mean) / top for v in n]
    got = saliency(torch.tensor([[rows]]))  # B=1, H=1
    assert got.shape == (1, 4, 1)
    assert got.flatten().tolist() == pytest.approx(expected, abs=1e-6)
    # the sharpest token is 1, the flattest and the below-average ones are background (0)
    assert got.flatten().tolist()[0] == 1.0
    assert (got.flatten() == 0).tolist() == [False, True, False, True]


def test_saliency_averages_heads_before_the_entropy():
    # two heads, each one-hot on a different key: per head entropy 0, the head mean is (0.5, 0.5)
    h1 = torch.tensor([[0.999, 0.001], [0.5, 0.5], [0.6, 0.4]])
    h2 = torch.tensor([[0.001, 0.999], [0.5, 0.5], [0.6, 0.4]])
    sal = saliency(torch.stack([h1, h2])[None])
    # token 0's averaged row is uniform like token 1's: both are the flattest -> background
    assert sal.flatten().tolist() == pytest.approx([0.0, 0.0, 1.0])


def test_saliency_is_bit_identical_to_the_official_formula_where_finite():
    g = torch.Generator().manual_seed(0)
    for scale in (0.3, 3.0, 12.0):
        probs = (torch.randn(2, 3, 50, 50, generator=g) * scale).softmax(-1)
        assert torch.equal(saliency(probs), _official_formula(probs))


def test_nan_guards():
    g = torch.Generator().manual_seed(1)
    probs = torch.randn(1, 2, 8, 8, generator=g).softmax(-1)
    probs[:, :, 3] = 0.0
    probs[:, :, 3, 5] = 1.0  # exact zeros: official 0 * log 0 = NaN everywhere downstream
    assert torch.isnan(_official_formula(probs)).any()
    sal = saliency(probs)
    assert torch.isfinite(sal).all() and sal[0, 3, 0] == 1.0  # a one-hot row is the sharpest
    # all tokens equally sharp (uniform attention): official 0/0; here no background, all ones
    uniform = torch.full((2, 3, 6, 6), 1 / 6)
    assert torch.isnan(_official_formula(uniform)).all()
    assert torch.equal(saliency(uniform), torch.ones(2, 6, 1))
    x, size = saliency_merge(torch.randn(2, 6, 4), saliency(uniform), None, 2)
    assert torch.isfinite(x).all() and torch.equal(size.sum(dim=1), torch.full((2, 1), 6.0))
    # a degenerate sample does not affect its batch neighbour
    mixed = torch.cat([uniform[:1], torch.randn(1, 3, 6, 6, generator=g).softmax(-1)])
    assert torch.equal(saliency(mixed)[1:], saliency(mixed[1:]))


# ----------------------------------------------------------------------------- merge

def test_hand_checked_merge_background_source_disappears():
    # A = {0, 2}, B = {1, 3}; token 0 is parallel to token 1 (best cosine); token 2 has the larger
    # dot product with token 3 but a smaller cosine (the metric is L2-normalised)
    x = torch.tensor([[[2.0, 0.0], [1.0, 0.0], [5.0, 10.0], [0.0, 1.0]]])
    keep, src, dst = bipartite_match(x, 1)
    assert (keep.flatten().tolist(), src.flatten().tolist(), dst.flatten().tolist()) == ([1], [0], [0])
    background = torch.tensor([[[0.0], [0.5], [0.2], [1.0]]])  # the source (token 0) has saliency 0
    merged, size = saliency_merge(x, background, None, 1)
    assert merged.tolist() == [[[5.0, 10.0], [1.0, 0.0], [0.0, 1.0]]]  # [kept A, B...]; token 0 gone
    assert size.flatten().tolist() == [1.0, 1.0, 1.0]  # and it added no size
    foreground = torch.tensor([[[0.5], [0.0], [0.0], [0.0]]])
    size_in = torch.tensor([[[2.0], [3.0], [1.0], [1.0]]])
    merged, size = saliency_merge(x, foreground, size_in, 1)
    # s' = 3 + 0.5 * 2 = 4;  x' = (3 * x1 + 0.5 * 2 * x0) / 4 = (3 + 2) / 4 = 1.25
    assert size.flatten().tolist() == [1.0, 4.0, 1.0]
    assert merged[0, 1].tolist() == pytest.approx([1.25, 0.0])
    assert merged[0, 0].tolist() == [5.0, 10.0] and merged[0, 2].tolist() == [0.0, 1.0]


def test_unmerged_tokens_keep_ascending_order():
    # A = {0, 2, 4}: best match 4 (parallel to 5), then 2, then 0 (orthogonal to every B token)
    x = torch.tensor([[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, 1.0, 0.0],
                       [3.0, 1.0, 0.0], [3.0, 1.0, 0.0]]])
    keep, src, dst = bipartite_match(x, 1)
    assert src.flatten().tolist() == [2] and dst.flatten().tolist() == [2]
    assert keep.flatten().tolist() == [0, 1]  # ascending (ToMe would keep [1, 0]: by similarity)
    merged, _ = saliency_merge(x, torch.ones(1, 6, 1), None, 1)
    assert merged[0, :2].tolist() == x[0, [0, 2]].tolist()


def test_size_bookkeeping():
    torch.manual_seed(0)
    x, size = torch.randn(3, 65, 8), None
    for r in (20, 13):
        sal = torch.rand(3, x.shape[1], 1)
        sal[sal < 0.4] = 0
        n = x.shape[1]
        s_in = torch.ones(3, n, 1) if size is None else size
        _, src, _ = bipartite_match(x, r)
        lost = ((1 - sal[:, ::2].gather(1, src)) * s_in[:, ::2].gather(1, src)).sum(dim=1)
        x, size = saliency_merge(x, sal, size, r)
        assert x.shape == (3, n - r, 8) and size.shape == (3, n - r, 1)
        # total size shrinks by exactly the (1 - saliency) share of the sources
        assert torch.allclose(size.sum(dim=1), s_in.sum(dim=1) - lost, atol=1e-4)
        assert (size >= 1).all()
    with_ones, ones_size = saliency_merge(torch.randn(2, 30, 4), torch.ones(2, 30, 1), None, 10)
    assert torch.equal(ones_size.sum(dim=1), torch.full((2, 1), 30.0))  # saliency 1 = plain ToMe sizes


# ----------------------------------------------------------------------------- model wiring

def test_empty_or_zero_r_is_exactly_dense():
    clip = torch.randn(2, 3, 4, 64, 64)
    for r in ([], [0, 0], [0, 0, 0, 0]):
        dense, model = _pair({"r": r})
        with torch.inference_mode():
            assert torch.equal(dense(clip), model(clip))
        assert model.last_stats.attention_kernel == ["sdpa"] * 4
        assert model.token_counts == [64] * 4


def test_proportional_attention_after_the_first_merge():
    _, model = _pair({"r": [0, 12, 0, 5]})
    seen = []
    original = model.reducer.attention_bias

    def spy(layer, state):
        bias = original(layer, state)
        seen.append(None if bias is None else (bias, state.size))
        return bias

    model.reducer.attention_bias = spy
    clip = torch.randn(2, 3, 4, 64, 64)
    with torch.inference_mode():
        out = model(clip)
    assert seen[0] is None and seen[1] is None  # no size before the first merge (block 1)
    for bias, size in seen[2:]:
        assert bias.shape == (2, 1, 1, size.shape[1])
        assert torch.equal(bias, size.log()[:, None, None, :, 0])
    assert (seen[2][1] != 1).any()  # non-integer sizes do reach later blocks
    model.reducer.attention_bias = lambda layer, state: None
    with torch.inference_mode():
        assert not torch.allclose(out, model(clip))  # and change the output


def test_pooling_options():
    _, mean_model = _pair({"r": [20]})
    _, weighted = _pair({"r": [20], "pool": "size_weighted"})
    captured = {}
    pool = mean_model.reducer.pool
    mean_model.reducer.pool = lambda x, s: (captured.update(x=x, s=s), pool(x, s))[1]
    clip = torch.randn(1, 3, 4, 64, 64)
    with torch.inference_mode():
        mean_model(clip)
        assert not torch.allclose(mean_model(clip), weighted(clip))
    x, size = captured["x"], captured["s"].size
    assert torch.equal(pool(x, captured["s"]), x.mean(dim=1))  # official: plain mean
    assert torch.allclose(weighted.reducer.pool(x, captured["s"]),
                          (x * size).sum(dim=1) / size.sum(dim=1))


def test_batch_does_not_change_any_sample():
    _, model = _pair({"r": [12, 0.25, 0, 5]})
    clips = torch.randn(3, 3, 4, 64, 64)
    with torch.inference_mode():
        batched = model(clips)
        alone = torch.cat([model(clips[i:i + 1]) for i in range(3)])
    assert model.token_counts == [64, 52, 39, 39]
    assert torch.allclose(batched, alone, atol=1e-5, rtol=1e-5)


def test_umt_b_gmacs_match_the_official_encoder():
    # spec section 3.7, fvcore on the official UMT-B encoder: 303.34 dense, 177.98 for MSRVTT;
    # the official encoder also applies its final LayerNorm to every remaining token
    cfg = resolve_config("video_vit", embed_dim=768, depth=12, num_heads=12, num_classes=0, **UMT_GRID)
    for r, official in (([], 303.34), ([600, 200, 100], 177.98), ([250, 150, 150, 150], 212.81)):
        reducer = VidTLDRReducer(VidTLDRParams(r=r), depth=12, num_heads=12, embed_dim=768)
        counts = token_schedule(cfg.num_tokens, reducer.schedule)
        total = count_macs(cfg, counts[:-1], counts[1:], reducer.overhead_macs).total
        assert (total + 5 * 768 * counts[-1]) / 1e9 == pytest.approx(official, abs=0.006)
