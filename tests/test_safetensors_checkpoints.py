"""``.safetensors`` files in the layouts the harness reads (no transformers needed)."""
import pytest
import torch
from safetensors.torch import save_file

import harness
from harness.models.checkpoint import CheckpointError

DIMS = dict(embed_dim=64, depth=2, num_heads=4, num_frames=4, img_size=32, num_classes=5)


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(1)
    return torch.randn(2, 3, 4, 32, 32)


def test_official_and_mmaction2_layouts_in_safetensors(tmp_path, clip):
    from tests.reference.videomae_official import to_mmaction2

    torch.manual_seed(3)
    source = harness.build_model("video_vit", **DIMS)
    for p in source.parameters():  # non-zero q/v biases
        torch.nn.init.normal_(p, std=0.02)
    save_file(source.state_dict(), str(tmp_path / "official.safetensors"))
    save_file(to_mmaction2(source.state_dict()), str(tmp_path / "mmaction2.safetensors"))
    for name, layout in (("official", "videomae"), ("mmaction2", "mmaction2")):
        ours = harness.build_model("video_vit", checkpoint=str(tmp_path / f"{name}.safetensors"), **DIMS)
        assert ours.checkpoint_layout == layout
        with torch.no_grad():
            assert torch.equal(ours(clip), source(clip)), name


def test_a_pickle_named_safetensors_is_not_unpickled(tmp_path):
    torch.save({"module": {}}, tmp_path / "fake.safetensors")
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*fake.safetensors"):
        harness.build_model("video_vit", checkpoint=str(tmp_path / "fake.safetensors"), **DIMS)


def test_haltingvt_weights_in_safetensors(tmp_path):
    dims = dict(embed_dim=32, depth=5, num_heads=2, tubelet_size=1, num_frames=4, img_size=32, num_classes=5)
    torch.manual_seed(0)
    source = harness.build_model("video_vit", method="haltingvt", **dims)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "halting.safetensors"))
    model = harness.build_model("video_vit", method="haltingvt", checkpoint=str(tmp_path / "halting.safetensors"),
                                **dims)
    assert model.checkpoint_layout == "haltingvt"
    for (k, a), b in zip(source.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k
