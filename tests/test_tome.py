"""ToMe: hand-checked matching, schedules, size bookkeeping, identity at r=0, batch invariance."""
import pytest
import torch

import harness
from methods.tome.merge import bipartite_soft_matching, merge_source, merge_wavg, parse_r
from conftest import tiny

TINY = tiny(num_frames=4)  # 2 x 4 x 4 = 32 tokens


def test_parse_r_forms():
    assert parse_r(4, 8) == [8, 8, 8, 8]
    assert parse_r(4, [3, 2]) == [3, 2, 0, 0]
    # ToMe's (r, inflection): min = int(r(1-i)), max = 2r - min, int() of the linear ramp
    assert parse_r(5, (10, -1.0)) == [20, 15, 10, 5, 0]
    assert parse_r(3, 7, inflection=0.5) == [3, 7, 11]
    with pytest.raises(ValueError):
        parse_r(2, [1, 2, 3])


def test_hand_checked_matching_merges_the_most_similar_pair():
    # 5 tokens: A = {0, 2, 4}, B = {1, 3}. Token 2 is identical in direction to token 3,
    # token 0 is close to token 1, token 4 is orthogonal to both B tokens.
    metric = torch.tensor([[[1.0, 0.1, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 2.0, 0.0],
                            [0.0, 0.0, 1.0]]])
    x = torch.arange(5, dtype=torch.float).view(1, 5, 1) * 10
    merge = bipartite_soft_matching(metric, r=1)
    merged, size = merge_wavg(merge, x)
    # unmerged A tokens in descending similarity order (0 then 4), then B tokens (1, 3<-2)
    assert merged.flatten().tolist() == [0.0, 40.0, 10.0, 25.0]
    assert size.flatten().tolist() == [1.0, 1.0, 1.0, 2.0]


def test_r_is_capped_at_half_the_tokens():
    metric = torch.randn(2, 9, 4)
    merge = bipartite_soft_matching(metric, r=100)
    assert merge(torch.randn(2, 9, 3)).shape == (2, 5, 3)  # 9 - 9 // 2


def test_sizes_are_conserved_and_sources_partition_the_input():
    torch.manual_seed(0)
    x, size, source = torch.randn(3, 65, 8), None, None
    for r in (20, 13):
        merge = bipartite_soft_matching(torch.randn(3, x.shape[1], 4), r)
        source = merge_source(merge, x, source)
        x, size = merge_wavg(merge, x, size)
    assert x.shape[1] == 65 - 20 - 13
    assert torch.equal(size.sum(dim=1), torch.full((3, 1), 65.0))
    assert torch.equal(source.sum(dim=1), torch.ones(3, 65))  # every patch in exactly one token
    assert torch.equal(source.sum(dim=2, keepdim=True), size)


def _pair(method_args):
    torch.manual_seed(0)
    dense = harness.build_model("video_vit", **TINY)
    tome = harness.build_model("video_vit", method="tome", method_args=method_args, **TINY)
    tome.load_state_dict(dense.state_dict())
    return dense, tome


def test_r_zero_is_exactly_dense():
    dense, tome = _pair({"r": 0})
    clip = torch.randn(2, 3, 4, 64, 64)
    with torch.inference_mode():
        assert torch.equal(dense(clip), tome(clip))


def test_token_schedule_and_merge_placement():
    _, tome = _pair({"r": 6})
    with torch.inference_mode():
        tome(torch.randn(1, 3, 4, 64, 64))
    assert tome.token_counts == [32, 26, 20, 14]
    assert tome.last_stats.tokens_mlp == [26, 20, 14, 8]  # merged between attention and MLP


def test_batch_does_not_change_any_sample():
    _, tome = _pair({"r": 5, "prop_attn": True})
    clips = torch.randn(4, 3, 4, 64, 64)
    with torch.inference_mode():
        batched = tome(clips)
        single = torch.cat([tome(clips[i:i + 1]) for i in range(4)])
    assert torch.allclose(batched, single, atol=1e-5)


def test_prop_attn_changes_the_output_only_after_a_merge():
    _, plain = _pair({"r": 5})
    _, prop = _pair({"r": 5, "prop_attn": True})
    _, prop_no_merge = _pair({"r": [0, 0, 0, 0], "prop_attn": True})
    dense, _ = _pair({"r": 0})
    clip = torch.randn(1, 3, 4, 64, 64)
    with torch.inference_mode():
        assert not torch.allclose(plain(clip), prop(clip))
        assert torch.equal(prop_no_merge(clip), dense(clip))


def test_pool_is_size_weighted():
    from harness.models.reduction import TokenState
    from methods.tome.reducer import ToMeReducer
    from methods.tome import ToMeParams

    reducer = ToMeReducer(ToMeParams(r=1), depth=1, num_heads=1, embed_dim=2)
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    pooled = reducer.pool(x, TokenState(size=torch.tensor([[[3.0], [1.0]]])))
    assert torch.allclose(pooled, torch.tensor([[0.75, 0.25]]))


def test_bad_params_are_rejected_with_the_valid_names():
    with pytest.raises(ValueError, match="no parameter"):
        harness.build_model("video_vit", method="tome", method_args={"rr": 3}, **TINY)
    with pytest.raises(ValueError, match="non-negative"):
        harness.build_model("video_vit", method="tome", method_args={"r": -1}, **TINY)
