"""vid-TLDR against the OFFICIAL code (mlvlab/vid-TLDR @ a25051d): a golden produced by running the
official ``vid_TLDR.py`` functions and UMT encoder (tests/reference/make_vid_tldr_golden.py; the
official code is not in this repository, the test only loads the .pt).

* functions: saliency, matching indices (kept A tokens ascending, sources, destinations), source
  saliency weights, merged x, sizes and patch membership along chains of merges (count, fraction,
  N // 2 cap; fp32 and fp16);
* block stack: the tiny official encoder's weights and clip in our VideoViT with method vid_tldr:
  embedded tokens, tokens per block and per MLP, final tokens, sizes, sources, pooled feature;
* the NaN guards, a documented deliberate difference (spec §3.8), as a strict xfail.
"""
import os

import pytest
import torch

import harness
import methods.vid_tldr  # noqa: F401  (registration)
from harness.models.reduction import initial_source
from methods.vid_tldr.merge import bipartite_match, merge_count, parse_r, saliency, saliency_merge, \
    saliency_merge_source

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference", "vid_tldr_golden.pt")
DTYPES = {"torch.float32": torch.float32, "torch.float16": torch.float16}
# functions: bit-identical here; the slack only absorbs libm/SIMD differences between machines
FN_TOL = {torch.float32: 1e-6, torch.float16: 2e-3}
# block stack: the explicit-softmax path (the official numerics) is bit-identical here (max error 0);
# the fused SDPA kernel in the non-merging blocks rounds differently (~1e-7), which the saliency's
# min-max normalisation amplifies to 3.7e-5 on tokens of magnitude ~7 (run 1, block 0 dense)
# values ~7; explicit attention is bit-identical on the golden's machine, but float32 BLAS kernels differ
# between CPUs (3.3e-5 seen on another Xeon), so both paths get 1e-4 against the stored golden
MODEL_TOL = {False: 1e-4, True: 1e-4}


@pytest.fixture(scope="module")
def golden():
    return torch.load(GOLDEN, weights_only=True)


def test_golden_provenance(golden):
    assert golden["source"] == "mlvlab/vid-TLDR@a25051d4a4808ce2b480bd1a80a96f68c21aa5cb"
    assert os.path.getsize(GOLDEN) < 300 * 1024


# ----------------------------------------------------------------------------- function level

@pytest.mark.parametrize("name", ["fp32", "fp16"])
def test_merge_chain_matches_the_official_functions(golden, name):
    chain = golden["functions"][name]
    dtype = DTYPES[chain["dtype"]]
    tol = FN_TOL[dtype]
    schedule = parse_r(len(chain["r"]), chain["r"])
    x, size, source = chain["x0"].to(dtype), None, None
    for layer, step in enumerate(chain["steps"]):
        probs = step["probs"].to(dtype)
        r = merge_count(x.shape[1], schedule[layer])
        assert r == step["r_merge"], f"step {layer}: merge count"

        sal = saliency(probs)
        assert sal.dtype == step["saliency"].dtype
        assert torch.equal(sal == 0, step["saliency"] == 0), f"step {layer}: background mask"
        assert torch.allclose(sal, step["saliency"], atol=tol, rtol=0), f"step {layer}: saliency"

        keep, src, dst = bipartite_match(x, r)
        assert torch.equal(keep, step["unm_idx"]), f"step {layer}: kept A tokens (ascending)"
        assert torch.equal(src, step["src_idx"]), f"step {layer}: sources"
        assert torch.equal(dst, step["dst_idx"]), f"step {layer}: destinations"
        weight = sal[:, ::2].gather(dim=1, index=src)
        assert torch.allclose(weight, step["src_so"], atol=tol, rtol=0), f"step {layer}: source saliency"
        assert (step["src_so"] == 0).any() and (step["src_so"] > 0).any()  # deleted and merged sources

        source = saliency_merge_source(x, sal, initial_source(x, source), r)
        x, size = saliency_merge(x, sal, size, r)
        assert x.dtype == step["x"].dtype and size.dtype == step["size"].dtype
        assert x.shape == step["x"].shape and size.shape == step["size"].shape
        assert torch.allclose(x.float(), step["x"].float(), atol=tol, rtol=tol), f"step {layer}: x"
        assert torch.allclose(size.float(), step["size"].float(), atol=tol, rtol=tol), f"step {layer}: size"
        assert torch.equal(source > 0, step["source"]), f"step {layer}: patch membership"
    assert (size != size.round()).any()  # non-integer sizes were carried through the chain


# ----------------------------------------------------------------------------- block stack

def _our_model(golden, r, fused):
    g = golden["model"]
    c = g["config"]
    model = harness.build_model(
        "video_vit", method="vid_tldr", method_args={"r": list(r)}, embed_dim=c["embed_dim"],
        depth=c["depth"], num_heads=c["num_heads"], patch_size=c["patch_size"],
        tubelet_size=c["tubelet_size"], num_frames=c["num_frames"], img_size=c["img_size"], num_classes=0,
        fused_attention=fused)
    state = {k: v.float() for k, v in g["state_dict"].items() if not k.startswith("norm.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    # the official encoder's final ``norm`` (applied per token before UMT's mean + pool_norm) has no
    # counterpart in our VideoMAE-style head (mean + fc_norm): compared at the block-stack output
    assert sorted(missing) == ["fc_norm.bias", "fc_norm.weight"] and unexpected == []
    return model.eval()


@pytest.mark.parametrize("fused", [False, True], ids=["explicit", "sdpa"])
@pytest.mark.parametrize("index", range(4))
def test_block_stack_matches_the_official_encoder(golden, index, fused):
    g = golden["model"]
    run = g["runs"][index]
    model = _our_model(golden, run["r"], fused)
    model.reducer.track_source = True
    captured = {}
    pool = model.reducer.pool
    model.reducer.pool = lambda x, state: (captured.update(x=x, state=state), pool(x, state))[1]
    model.blocks[0].register_forward_pre_hook(lambda m, a: captured.update(x0=a[0]))
    clip = g["input"].float()
    with torch.no_grad():
        feature = model.forward_features(clip)

    assert torch.allclose(captured["x0"], g["x0"], atol=1e-6, rtol=0)  # tubelet embedding + positions
    assert model.token_counts == run["tokens_in"]  # where merges happen and how many (r list rules)
    assert model.last_stats.tokens_mlp == run["tokens_mlp"]  # the merge sits before the MLP
    x, state = captured["x"], captured["state"]
    assert x.shape == run["x"].shape
    err = (x - run["x"]).abs().max().item()
    tol = MODEL_TOL[fused]
    assert err <= tol, f"final tokens differ by {err:.3g}"
    assert torch.allclose(state.size, run["size"], atol=tol, rtol=tol)
    assert torch.equal(state.source > 0, run["source"])  # same patches kept, merged and deleted
    # pooling: the official plain (unweighted) mean over the remaining tokens, then the head's norm
    with torch.no_grad():
        expected = model.fc_norm(run["x"].mean(dim=1))
    assert torch.allclose(feature, expected, atol=tol, rtol=0)


def test_golden_model_runs_exercise_the_method(golden):
    runs = golden["model"]["runs"]
    assert [r["tokens_in"] for r in runs] == [[64, 52, 39, 39], [64, 64, 44, 22], [64, 32, 23, 19],
                                              [64, 32, 16, 8]]
    for r in runs:
        assert (r["size"] != r["size"].round()).any()  # fractional sizes reach proportional attention
        assert (r["source"].sum(dim=(1, 2)) < 64).all()  # background patches were deleted


# ----------------------------------------------------------------------------- NaN guards (deliberate)

def test_degenerate_inputs_stay_finite_where_the_official_saliency_is_nan(golden):
    for case in golden["degenerate"]:
        assert torch.isnan(case["saliency"]).any()
        assert torch.isfinite(saliency(case["probs"])).all()


@pytest.mark.xfail(strict=True, reason="documented deliberate difference (spec §3.8, merge.saliency): "
                                       "0 log 0 = 0 and no 0/0 for equally sharp tokens; official -> NaN")
@pytest.mark.parametrize("index", range(2), ids=["zero_probability", "uniform"])
def test_degenerate_saliency_equals_the_official(golden, index):
    case = golden["degenerate"][index]
    assert torch.equal(saliency(case["probs"]), case["saliency"])  # NaN != NaN: fails by design
