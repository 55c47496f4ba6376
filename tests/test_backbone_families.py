"""Backbone families beyond VideoMAE: ViViT and TimeSformer, loaded from Hugging Face model directories.

The reference is transformers' own classifier (a test-only extra) on tiny random weights written by
``save_pretrained``: our logits must equal its logits (fp32 <= 1e-5, float64 <= 1e-10), the dims come from
``config.json``, and the analytic GMACs equal fvcore on our dense model and on transformers' model.
"""
import json

import pytest
import torch

import harness
from harness.measure.flops import fvcore_macs
from harness.models.checkpoint import CheckpointError
from harness.models.presets import resolve_config
from harness.models.video_vit import VideoViT  # noqa: F401  (applies the torchvision fix before transformers)
from tests.hf_models import Logits, assert_same_logits, randomized, saved

transformers = pytest.importorskip("transformers", reason="transformers is a test-only extra (pip install .[test])")

NAMES = ["archery", "bowling", "cartwheel", "diving", "eating"]
COMMON = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
              num_frames=4, id2label=dict(enumerate(NAMES)))
FAMILIES = {
    "vivit": lambda: transformers.VivitForVideoClassification(
        transformers.VivitConfig(**COMMON, tubelet_size=[2, 8, 8])),
    "timesformer": lambda: transformers.TimesformerForVideoClassification(
        transformers.TimesformerConfig(**COMMON, patch_size=8)),
}


def tiny(family: str, seed: int = 0):
    torch.manual_seed(seed)
    return randomized(FAMILIES[family]())


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def reference(request, tmp_path_factory):
    model = tiny(request.param)
    return request.param, model, saved(model, tmp_path_factory, request.param)


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(1)
    return torch.randn(2, 3, 4, 32, 32)


def test_directory_gives_dims_labels_and_transformers_logits(reference, clip):
    family, model, folder = reference
    ours = harness.build_model("video_vit", checkpoint=folder)
    assert ours.cfg.family == family and ours.layout.cls_tokens == 1
    assert (ours.cfg.embed_dim, ours.cfg.depth, ours.cfg.num_frames, ours.cfg.img_size) == (32, 2, 4, 32)
    assert ours.class_names == NAMES
    assert_same_logits(folder, model, clip)


def test_explicit_attention_gives_the_same_logits(reference, clip):
    family, model, folder = reference
    assert_same_logits(folder, model, clip, fp64=None, fused_attention=False)


def test_analytic_gmacs_equal_fvcore_on_ours_and_on_transformers(reference, clip):
    family, model, folder = reference
    ours = harness.build_model("video_vit", checkpoint=folder)
    one = clip[:1]
    with torch.no_grad():
        ours(one)
    analytic = ours.view_macs().total
    counted, unexpected = fvcore_macs(ours, one)
    assert unexpected == {} and counted == analytic
    theirs, _ = fvcore_macs(Logits(model), one.transpose(1, 2))
    assert theirs == analytic


def test_a_preset_of_another_family_is_refused(reference):
    family, _, folder = reference
    with pytest.raises(CheckpointError, match="model_type"):
        harness.build_model("videomae_vit_s16", checkpoint=folder)


def test_unsupported_timesformer_attention_is_refused(tmp_path):
    model = tiny("timesformer")
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["attention_type"] = "joint_space_time"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="attention_type 'joint_space_time'"):
        harness.build_model("video_vit", checkpoint=str(tmp_path))


def test_layouts_state_what_a_method_must_respect():
    vivit = resolve_config("video_vit", family="vivit", embed_dim=8, depth=1, num_heads=1)
    times = resolve_config("video_vit", family="timesformer", embed_dim=8, depth=1, num_heads=1, tubelet_size=1)
    videomae = resolve_config("videomae_vit_b16")
    assert videomae.layout.features == frozenset() and videomae.layout.protected == 0
    assert vivit.layout.features == {"cls_token"} and vivit.layout.protected == 1
    assert times.layout.features == {"cls_token", "divided_attention"} and times.layout.protected == 0
    assert times.layout.order == "hwt" and times.layout.grid == (16, 14, 14)
    with pytest.raises(ValueError, match="Did you mean: 'vivit'"):
        resolve_config("video_vit", family="vivt", embed_dim=8, depth=1, num_heads=1)
