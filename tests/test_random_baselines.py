"""Chance baselines: the matched method's token counts, seeded positions, size bookkeeping."""
import pytest
import torch

import harness
from methods.random_baselines.reducer import random_keep, random_merge_fn, random_merge_indices
from methods.tome.merge import merge_wavg
from conftest import tiny

TINY = tiny(num_frames=4)  # 2 x 4 x 4 = 32 tokens


def _run(method, args, clip):
    torch.manual_seed(0)
    model = harness.build_model("video_vit", method=method, method_args=args, **TINY)
    with torch.inference_mode():
        out = model(clip)
    return model, out


@pytest.mark.parametrize("method", ["random_drop", "random_merge"])
def test_follows_the_matched_schedule_and_is_seeded(method):
    clip = torch.randn(2, 3, 4, 64, 64)
    tome, _ = _run("tome", {"r": 6}, clip)
    model, out = _run(method, {"match": "tome", "r": 6}, clip)
    assert model.token_counts == tome.token_counts == [32, 26, 20, 14]
    assert model.last_stats.tokens_mlp == tome.last_stats.tokens_mlp
    _, again = _run(method, {"match": "tome", "r": 6}, clip)
    _, other_seed = _run(method, {"match": "tome", "r": 6, "seed": 1}, clip)
    assert torch.equal(out, again) and not torch.allclose(out, other_seed)
    _, dense = _run("dense", None, clip)
    _, zero = _run(method, {"match": "tome", "r": 0}, clip)
    assert torch.equal(zero, dense)


def test_random_keep_is_a_sorted_subset():
    keep = random_keep(20, 7, torch.Generator().manual_seed(3))
    assert len(set(keep.tolist())) == 7 and keep.tolist() == sorted(keep.tolist()) and keep.max() < 20


def test_random_merge_conserves_sizes_and_averages():
    merge = random_merge_fn(*random_merge_indices(10, 4, torch.Generator().manual_seed(0)))
    x = torch.randn(2, 10, 3)
    merged, size = merge_wavg(merge, x)
    assert merged.shape == (2, 6, 3) and torch.equal(size.sum(1), torch.full((2, 1), 10.0))
    # the size-weighted mean of the whole sequence is unchanged by merging
    assert torch.allclose((merged * size).sum(1) / 10, x.mean(1), atol=1e-6)


def test_bad_match_is_rejected():
    with pytest.raises(ValueError, match="non-random"):
        harness.build_model("video_vit", method="random_drop", method_args={"match": "random_merge"}, **TINY)
    with pytest.raises(ValueError, match="unknown method 'tomee'"):
        harness.build_model("video_vit", method="random_drop", method_args={"match": "tomee"}, **TINY)
