import pytest
import torch

import harness
from harness.models.checkpoint import CheckpointError
from tests.reference.videomae_official import RefVideoMAE, official_sinusoid, to_mmaction2

DIMS = dict(embed_dim=64, depth=2, num_heads=4, patch_size=16, tubelet_size=2, num_frames=4,
            img_size=32, num_classes=7)


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    ref = RefVideoMAE(img_size=32, patch=16, tubelet=2, frames=4, dim=64, depth=2, heads=4, num_classes=7)
    return ref.eval()


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(1)
    return torch.randn(3, 3, 4, 32, 32)


def test_official_layout_loads_strictly_and_matches_reference_logits(reference, clip, tmp_path):
    path = tmp_path / "official.pth"
    torch.save({"module": reference.state_dict()}, path)
    model = harness.build_model("video_vit", checkpoint=str(path), **DIMS)
    assert model.checkpoint_layout == "videomae"
    with torch.no_grad():
        expected = reference(clip)
        got = model(clip)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5), (got - expected).abs().max()


def test_mmaction2_layout_matches_reference_logits(reference, clip, tmp_path):
    state = to_mmaction2(reference.state_dict())
    state["backbone.pos_embed"] = official_sinusoid(4, 64)
    path = tmp_path / "mmaction.pth"
    torch.save({"state_dict": state, "meta": {"epoch": 3}}, path)
    model = harness.build_model("video_vit", checkpoint=str(path), **DIMS)
    assert model.checkpoint_layout == "mmaction2"
    with torch.no_grad():
        assert torch.allclose(model(clip), reference(clip), atol=1e-5, rtol=1e-5)


def test_our_sinusoid_equals_official_table():
    from harness.models.video_vit import sinusoid_table

    assert torch.allclose(sinusoid_table(1568, 768), official_sinusoid(1568, 768), atol=1e-6)


def test_fp16_checkpoint_is_cast_to_fp32(reference, clip, tmp_path):
    path = tmp_path / "half.pth"
    torch.save({"module": {k: v.half() for k, v in reference.state_dict().items()}}, path)
    model = harness.build_model("video_vit", checkpoint=str(path), **DIMS)
    assert next(model.parameters()).dtype == torch.float32


def test_pretraining_checkpoint_is_refused_with_explanation(reference, tmp_path):
    state = {"encoder." + k: v for k, v in reference.state_dict().items() if not k.startswith("head.")}
    state["decoder.norm.weight"] = torch.ones(64)
    path = tmp_path / "pretrain.pth"
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError, match="pre-training checkpoint"):
        harness.build_model("video_vit", checkpoint=str(path), **DIMS)


def test_key_mismatch_lists_missing_unexpected_and_shapes(reference, tmp_path):
    state = dict(reference.state_dict())
    del state["blocks.1.attn.q_bias"]
    state["blocks.0.extra"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save({"module": state}, path)
    with pytest.raises(CheckpointError) as err:
        harness.build_model("video_vit", checkpoint=str(path), **{**DIMS, "num_classes": 5})
    text = str(err.value)
    assert "missing in checkpoint (1): blocks.1.attn.q_bias" in text
    assert "unexpected in checkpoint (1): blocks.0.extra" in text
    assert "head.weight: checkpoint (7, 64) vs model (5, 64)" in text
    assert "num_classes" in text


def test_pickled_code_is_not_executed(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"module": {"x": torch.zeros(1)}, "hook": print}, path)  # a function: not weights-only
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        harness.build_model("video_vit", checkpoint=str(path), **DIMS)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        harness.build_model("video_vit", checkpoint=str(tmp_path / "nope.pth"), **DIMS)


def test_unfused_attention_reproduces_the_reference_bit_for_bit(reference, clip, tmp_path):
    path = tmp_path / "official_exact.pth"
    torch.save({"module": reference.state_dict()}, path)
    model = harness.build_model("video_vit", checkpoint=str(path), fused_attention=False, **DIMS)
    with torch.no_grad():
        assert torch.equal(model(clip), reference(clip))


@pytest.mark.parametrize("poison", ["nan", "inf", "all_nan"])
def test_non_finite_checkpoint_is_refused_at_load(reference, tmp_path, poison):
    state = {k: v.clone() for k, v in reference.state_dict().items()}
    if poison == "all_nan":
        state = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()}
    else:
        state["blocks.1.mlp.fc2.weight"][0, 0] = float(poison)
    path = tmp_path / f"{poison}.pth"
    torch.save({"module": state}, path)
    with pytest.raises(CheckpointError, match="NaN or infinite values") as err:
        harness.build_model("video_vit", checkpoint=str(path), **DIMS)
    if poison != "all_nan":
        assert "blocks.1.mlp.fc2.weight" in str(err.value)


def test_directory_or_fifo_as_checkpoint_is_refused_without_blocking(tmp_path):
    import os

    fifo = tmp_path / "fifo.pth"
    os.mkfifo(fifo)
    for path in (tmp_path, fifo):
        with pytest.raises(CheckpointError, match="not a regular file|must be a Hugging Face model directory"):
            harness.build_model("video_vit", checkpoint=str(path), **DIMS)
