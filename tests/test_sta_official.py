"""STA against the OFFICIAL code (Mark12Ding/STA@faf10be model_vit.py): a golden produced by running it
(tests/reference/make_sta_golden.py) -- a whole tiny official VideoMAE+STA model loaded from its own
checkpoint layout (logits, tokens per block, kept tokens of every stage, r = 0/3/8/14) and the official
``merge`` called on fixed inputs for the three stages."""
import os

import pytest
import torch

import harness
from harness.models.reduction import AttentionOutput, TokenState
from methods.sta import STAParams
from methods.sta.reducer import STAGES, STAReducer, sta_stage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "tests", "reference", "sta_golden.pt")
DIMS = ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads", "num_frames", "tubelet_size",
        "num_classes")
ATOL = 1e-5


@pytest.fixture(scope="module")
def golden():
    return torch.load(GOLDEN, weights_only=True)


@pytest.fixture(scope="module")
def official_file(golden, tmp_path_factory):
    path = tmp_path_factory.mktemp("sta") / "official.pth"
    torch.save({"module": golden["state_dict"]}, path)  # VideoMAE/STA fine-tuned checkpoints: checkpoint['module']
    return str(path)


def build(golden, official_file, r, fused):
    dims = {k: golden["config"][k] for k in DIMS}
    model = harness.build_model("video_vit", method="sta", method_args={"r": r}, checkpoint=official_file,
                                fused_attention=fused, **dims)
    assert model.checkpoint_layout == "videomae"
    return model


def run_recording(model, clip):
    """Logits and {layer: [B, M] rows of the stage input that the stage output holds, in order}."""
    reducer, kept = model.reducer, {}
    inner = type(reducer).after_block

    def after_block(layer, x, state, attn):
        out, state = inner(reducer, layer, x, state, attn)
        if out is not x:
            same = (out[:, :, None, :] == x[:, None, :, :]).all(-1)  # pruning copies rows exactly
            assert (same.sum(-1) == 1).all()
            kept[layer] = same.float().argmax(-1)
        return out, state

    reducer.after_block = after_block
    try:
        with torch.no_grad():
            feature = model.forward_features(clip)
            logits = model.head(feature)
    finally:
        del reducer.after_block
    return feature, logits, kept


def test_golden_is_from_the_official_commit(golden):
    assert golden["source"] == "Mark12Ding/STA@faf10be5af889afed737e13517c4904c8572c3d7"
    assert set(golden["runs"]) == {0, 3, 8, 14}


@pytest.mark.parametrize("fused", [False, True], ids=["explicit", "sdpa"])
@pytest.mark.parametrize("r", [0, 3, 8, 14])
def test_whole_model_matches_the_official_model(golden, official_file, r, fused):
    ref = golden["runs"][r]
    model = build(golden, official_file, r, fused)
    feature, logits, kept = run_recording(model, golden["input"].float())
    # token counts: exact, block by block (STA prunes after the whole block: the MLP sees the block's input count)
    assert model.last_stats.tokens_in == ref["tokens_in"]
    assert model.last_stats.tokens_mlp == ref["tokens_in"]
    assert model.last_stats.tokens_out == ref["tokens_in"][-1]  # no stage after the last block (depth 6)
    # the same tokens survive every stage, in the same order (order matters: the next stage's first group
    # is split by alternation)
    assert sorted(kept) == sorted(ref["kept"])
    for layer, rows in ref["kept"].items():
        assert torch.equal(kept[layer], rows.long()), f"stage after block {layer}"
    assert (logits - ref["logits"]).abs().max() <= ATOL
    assert (feature - ref["feature"]).abs().max() <= ATOL
    # With explicit attention our ops run in the official order: bit-identical on the machine that made the
    # golden; on another CPU the BLAS kernels (vector width, summation order) differ by float32 ulps, so the
    # stored values are compared to ATOL everywhere and only the discrete decisions above must be exact.


def test_pruning_matters_in_the_golden(golden):
    dense = golden["runs"][0]["logits"]
    for r in (3, 8, 14):
        assert (golden["runs"][r]["logits"] - dense).abs().max() > 1e-2
    kept = golden["runs"][3]["kept"]
    assert not torch.equal(kept[0][0], kept[0][1])  # the two clips keep different tokens


@pytest.mark.parametrize("case", range(3), ids=["stage1", "stage2", "stage3"])
def test_stage_matches_the_official_merge(golden, case):
    c = golden["stages"][case]
    x, metric = c["x"].float(), c["metric"].float()
    expected = x.gather(1, c["kept"].long()[..., None].expand(-1, -1, x.shape[-1]))
    stage = {0: 0, 4: 1, 8: 2}[c["index"]]
    groups, order = STAGES[stage]
    assert groups == c["groups"]
    assert torch.equal(sta_stage(x, metric, c["r"], groups, order), expected)
    # through the reducer hook, depth 12: the layer -> stage mapping as well
    reducer = STAReducer(STAParams(r=c["r"]), depth=12, num_heads=1, embed_dim=metric.shape[-1])
    out, _ = reducer.after_block(c["index"], x, TokenState(), AttentionOutput(out=x, keys=metric))
    assert torch.equal(out, expected)
