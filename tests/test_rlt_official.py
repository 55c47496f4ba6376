"""RLT's token selection against the OFFICIAL code (rccchoudhury/rlt@69ec8b4): the golden was produced
by running ``src/models/static_token_utils.py`` (``tests/reference/make_rlt_golden.py``).

(1) random float clips (background + per-patch noise spread around the thresholds), official patch 16 /
tubelet 2 and patch 8 / tubelet 1, three thresholds: our ``static_keep_mask`` equals the official
``batched_find_idxs_to_keep`` bit for bit; (2) decoded synthetic_motion videos (H.264 noise on a static
background) plus a near-still clip, normalised by the official torchvision transform there and by the
harness's ``normalize`` here: same kept mask, and our per-token run lengths are the official
``batched_get_token_lengths`` values (which the official code lists in (h, w, t) order); (3) the
whole model keeps those tokens and lets exactly that many into every block.
"""
import os

import pytest
import torch

import harness
from harness.data.transforms import normalize
from methods.rlt.tokens import run_lengths, static_keep_mask

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference", "rlt_golden.pt")


@pytest.fixture(scope="module")
def golden():
    return torch.load(GOLDEN, weights_only=True)


@pytest.mark.parametrize("case", ["t2_p16", "t1_p8"])
def test_keep_mask_equals_the_official_one_on_random_clips(golden, case):
    g = golden["random"][case]
    clip = g["clip"].float()
    assert len(g["keep"]) == 3
    for threshold, expected in g["keep"].items():
        ours = static_keep_mask(clip, float(threshold), g["tubelet_size"], g["patch_size"])
        assert ours.dtype == torch.bool and ours.shape == expected.shape
        assert torch.equal(ours, expected), (case, threshold)
    fractions = {float(t): float(k.float().mean()) for t, k in g["keep"].items()}
    assert fractions[0.05] > 0.8 and fractions[0.2] < 0.3  # the thresholds really cut through the clips


def real_clips(golden):
    frames = golden["real"]["frames"]
    return torch.stack([normalize(f, golden["mean"], golden["std"]) for f in frames])  # harness pipeline


def test_keep_mask_and_run_lengths_equal_the_official_ones_on_decoded_videos(golden):
    g = golden["real"]
    clips = real_clips(golden)
    b, _, t, h, w = clips.shape
    grid = (t // 2, h // 16, w // 16)
    for threshold, expected in g["keep"].items():
        keep = static_keep_mask(clips, float(threshold), g["tubelet_size"], g["patch_size"])
        assert torch.equal(keep, expected), threshold
        lengths = run_lengths(keep, grid)
        official_order = lengths.view(b, *grid).permute(0, 2, 3, 1)[keep.view(b, *grid).permute(0, 2, 3, 1)]
        assert torch.equal(official_order, g["lengths"][threshold]), threshold
        assert int(lengths.sum()) == b * grid[0] * grid[1] * grid[2]  # runs tile the clip exactly
    kept = g["keep"]["0.1"].sum(1)
    assert kept[2] == grid[1] * grid[2] < kept[0] < keep.shape[1]  # still clip: only the first tubelet


@pytest.mark.parametrize("mode", ["varlen", "padded"])
def test_model_keeps_the_official_tokens(golden, mode):
    g = golden["random"]["t2_p16"]
    clip = g["clip"].float()
    for threshold, expected in g["keep"].items():
        model = harness.build_model("video_vit", embed_dim=32, depth=2, num_heads=2, patch_size=16,
                                    tubelet_size=2, num_frames=16, img_size=32, num_classes=5, method="rlt",
                                    method_args={"threshold": float(threshold), "mode": mode})
        with torch.no_grad():
            model(clip)
        assert torch.equal(model.last_keep, expected)
        assert model.last_stats.tokens_per_sample == [[int(n)] * 2 for n in expected.sum(1)]
