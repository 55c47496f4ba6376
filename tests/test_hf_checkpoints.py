"""Hugging Face VideoMAE checkpoints: directories, safetensors, ``hf:`` names; refusals of wrong weights.

The reference is transformers' own ``VideoMAEForVideoClassification`` (a test-only extra) on tiny random
weights written by ``save_pretrained``; its input layout is [B, T, C, H, W], ours [B, C, T, H, W].
"""
import json
import os
import shutil

import pytest
import torch
import yaml

import harness
from harness.models import hf
from harness.models.checkpoint import CheckpointError
from harness.models.video_vit import VideoViT  # noqa: F401  (applies the torchvision fix before transformers)
from tests.hf_models import hf_logits, saved

transformers = pytest.importorskip("transformers", reason="transformers is a test-only extra (pip install .[test])")

TINY = dict(image_size=32, patch_size=16, num_frames=4, tubelet_size=2, hidden_size=64, num_hidden_layers=2,
            num_attention_heads=4, intermediate_size=128, num_labels=5)
NAMES = ["archery", "bowling", "cartwheel", "diving", "eating"]


def tiny_hf(seed=0, **overrides):
    """A random VideoMAE classifier whose biases and norms are non-trivial (zeros would hide key mix-ups)."""
    torch.manual_seed(seed)
    kwargs = {**TINY, **overrides}
    n = kwargs.pop("num_labels")
    names = NAMES if n == len(NAMES) else [f"class{i}" for i in range(n)]
    config = transformers.VideoMAEConfig(**kwargs, id2label=dict(enumerate(names)))
    model = transformers.VideoMAEForVideoClassification(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(torch.randn_like(p) * 0.2)
    return model


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    model = tiny_hf()
    return model, saved(model, tmp_path_factory, "videomae-tiny")


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(1)
    return torch.randn(2, 3, 4, 32, 32)


def test_directory_gives_dims_and_transformers_logits_fp32_and_fp64(reference, clip):
    model_hf, folder = reference
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors"]
    ours = harness.build_model("video_vit", checkpoint=folder)
    cfg = ours.cfg
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.mlp_ratio, cfg.num_frames, cfg.img_size,
            cfg.num_classes) == (64, 2, 4, 2.0, 4, 32, 5)
    assert cfg.norm_eps == 1e-12 and cfg.fc_norm_eps == 1e-5  # config.json's, and transformers' fc_norm
    assert ours.checkpoint_layout == "hf" and ours.class_names == NAMES
    with torch.no_grad():
        got = ours(clip)
    expected = hf_logits(model_hf, clip)
    assert (got - expected).abs().max() <= 1e-4
    ours64, ref64 = ours.double(), tiny_hf().double()  # same seed: the same weights
    ref64.load_state_dict(model_hf.state_dict())
    with torch.no_grad():
        diff = (ours64(clip.double()) - hf_logits(ref64, clip.double())).abs().max()
    assert diff <= 1e-6, diff


def test_layer_norm_eps_is_honoured(reference, clip):
    _, folder = reference
    official_eps = harness.build_model("video_vit", checkpoint=folder, norm_eps=1e-6, fc_norm_eps=1e-6)
    from_config = harness.build_model("video_vit", checkpoint=folder)
    with torch.no_grad():
        a, b = official_eps.double()(clip.double()), from_config.double()(clip.double())
    assert (a - b).abs().max() > 1e-9  # the epsilons change the logits measurably in float64


def test_preset_must_agree_with_config_in_one_error(reference):
    _, folder = reference
    with pytest.raises(CheckpointError) as err:
        harness.build_model("videomae_vit_s16", checkpoint=folder)
    message = str(err.value)
    assert "\n" not in message and "config.json" in message
    for part in ("hidden_size=64 vs preset 'videomae_vit_s16' embed_dim=384", "num_hidden_layers=2",
                 "num_attention_heads=4", "num_frames=4", "image_size=32", "num_labels=5"):
        assert part in message, message
    with pytest.raises(CheckpointError, match=r"num_hidden_layers=2 vs given depth=3"):
        harness.build_model("video_vit", checkpoint=folder, depth=3)


def test_preset_that_agrees_takes_the_checkpoint_epsilons(tmp_path):
    model = tiny_hf(hidden_size=128, num_hidden_layers=4, num_attention_heads=2, intermediate_size=512,
                    image_size=64, num_frames=16, num_labels=12)
    model.save_pretrained(tmp_path)
    ours = harness.build_model("synthetic_vit_tiny", checkpoint=str(tmp_path))
    assert ours.cfg.norm_eps == 1e-12 and ours.class_names[3] == "class3"
    torch.manual_seed(2)
    clip = torch.randn(1, 3, 16, 64, 64)
    with torch.no_grad():
        assert (ours(clip) - hf_logits(model, clip)).abs().max() <= 1e-4


DIMS = dict(embed_dim=64, depth=2, num_heads=4, mlp_ratio=2.0, num_frames=4, img_size=32, num_classes=5,
            norm_eps=1e-12, fc_norm_eps=1e-5)


def test_single_safetensors_file_and_resaved_query_bias_spelling(reference, clip, tmp_path):
    from safetensors.torch import save_file

    model_hf, folder = reference
    expected = hf_logits(model_hf, clip)
    # the hub's q_bias/v_bias spelling, as one .safetensors file (dims from the caller)
    ours = harness.build_model("video_vit", checkpoint=os.path.join(folder, "model.safetensors"), **DIMS)
    with torch.no_grad():
        assert (ours(clip) - expected).abs().max() <= 1e-4
    # transformers 5 holds query.bias/value.bias in memory: a torch.save'd state_dict has that spelling
    state = {k.replace(".q_bias", ".query.bias").replace(".v_bias", ".value.bias"): v
             for k, v in model_hf.state_dict().items()}  # (a no-op on transformers 5)
    torch.save(state, tmp_path / "resaved.pth")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "resaved.safetensors"))
    for name in ("resaved.pth", "resaved.safetensors"):
        ours = harness.build_model("video_vit", checkpoint=str(tmp_path / name), **DIMS)
        assert ours.checkpoint_layout == "hf"
        with torch.no_grad():
            assert (ours(clip) - expected).abs().max() <= 1e-4, name


def hub_cache(root, repo, folder, commit="0123456789abcdef0123456789abcdef01234567"):
    """The HF cache layout huggingface_hub writes: models--ORG--NAME/{refs/main, snapshots/<commit>/...}."""
    base = root / "hub" / ("models--" + repo.replace("/", "--"))
    snapshot = base / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in os.listdir(folder):
        shutil.copy(os.path.join(folder, name), snapshot / name)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(commit)
    return commit


def test_hf_name_resolves_from_an_offline_cache(reference, clip, tmp_path, monkeypatch):
    model_hf, folder = reference
    commit = hub_cache(tmp_path, "tiny-org/videomae-tiny", folder)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    expected = hf_logits(model_hf, clip)
    for name in ("hf:tiny-org/videomae-tiny", f"hf:tiny-org/videomae-tiny@{commit}"):
        ours = harness.build_model("video_vit", checkpoint=name)
        assert ours.class_names == NAMES
        with torch.no_grad():
            assert (ours(clip) - expected).abs().max() <= 1e-4
    assert hf.content_key("hf:tiny-org/videomae-tiny") == hf.content_key(folder)
    # one file of a hub repository (how the official VideoMAE V2 .pth files are published)
    one_file = "hf:tiny-org/videomae-tiny/model.safetensors"
    ours = harness.build_model("video_vit", checkpoint=one_file, **DIMS)
    with torch.no_grad():
        assert (ours(clip) - expected).abs().max() <= 1e-4
    assert hf.content_key(one_file) == hf.content_key(os.path.join(folder, "model.safetensors"))
    assert hf.content_key("hf:tiny-org/videomae-tiny/absent.pth").startswith("missing:")
    with pytest.raises(CheckpointError) as err:
        harness.build_model("video_vit", checkpoint="hf:tiny-org/not-there")
    message = str(err.value)
    assert "HF_HUB_OFFLINE=1" in message and str(tmp_path / "hub" / "models--tiny-org--not-there") in message
    # the dims need config.json only (what validate reads); building needs the weights
    only_config = tmp_path / "only_config"
    only_config.mkdir()
    shutil.copy(os.path.join(folder, "config.json"), only_config)
    hub_cache(tmp_path, "tiny-org/config-only", str(only_config))
    assert hf.reconcile_dims("video_vit", {}, "hf:tiny-org/config-only")["embed_dim"] == 64
    with pytest.raises(CheckpointError, match="no weights"):
        harness.build_model("video_vit", checkpoint="hf:tiny-org/config-only")
    with pytest.raises(CheckpointError, match="expected hf:ORG/NAME"):
        harness.build_model("video_vit", checkpoint="hf:just-a-name")


def test_content_key_follows_the_weights(reference, tmp_path):
    _, folder = reference
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    assert hf.content_key(str(copy)) == hf.content_key(folder)
    model = tiny_hf(seed=5)
    model.save_pretrained(copy)
    assert hf.content_key(str(copy)) != hf.content_key(folder)
    assert hf.content_key(str(tmp_path / "nothing")).startswith("missing:")
    # a fine-tune starting from a directory is keyed by its content too
    from harness.training import FineTuneConfig

    def ft_key(path):
        return FineTuneConfig(backbone={"name": "video_vit", "checkpoint": path},
                              method={"name": "dense", "params": {}}, dataset={"name": "synthetic_motion"}).key()

    assert ft_key(folder) != ft_key(str(copy))


def _rewrite_weights(folder, edit):
    from safetensors.torch import load_file, save_file

    path = os.path.join(folder, "model.safetensors")
    state = load_file(path)
    edit(state)
    save_file(state, path)


def test_zero_or_absent_qv_biases_are_refused(reference, tmp_path):
    _, folder = reference
    zeroed, absent = tmp_path / "zeroed", tmp_path / "absent"
    shutil.copytree(folder, zeroed)
    shutil.copytree(folder, absent)

    def zero(state):
        for k in state:
            if k.endswith(("q_bias", "v_bias")):
                state[k] = torch.zeros_like(state[k])

    _rewrite_weights(zeroed, zero)
    _rewrite_weights(absent, lambda state: [state.pop(k) for k in list(state) if k.endswith(("q_bias", "v_bias"))])
    with pytest.raises(CheckpointError) as err:
        harness.build_model("video_vit", checkpoint=str(zeroed))
    assert "\n" not in str(err.value) and "all zero in 4 of 4" in str(err.value) and "48675" in str(err.value)
    with pytest.raises(CheckpointError) as err:
        harness.build_model("video_vit", checkpoint=str(absent))
    assert "\n" not in str(err.value) and "biases absent (4 of 4" in str(err.value)


def test_pretraining_checkpoint_is_refused(tmp_path):
    torch.manual_seed(0)
    model = transformers.VideoMAEForPreTraining(transformers.VideoMAEConfig(**TINY))
    model.save_pretrained(tmp_path / "pre")
    with pytest.raises(CheckpointError) as err:
        harness.build_model("video_vit", checkpoint=str(tmp_path / "pre"))
    assert "VideoMAEForPreTraining" in str(err.value) and "\n" not in str(err.value)
    # the weights alone, without their config.json: recognised by the decoder keys
    with pytest.raises(CheckpointError, match="VideoMAEForPreTraining checkpoint .*decoder"):
        harness.build_model("video_vit", checkpoint=str(tmp_path / "pre" / "model.safetensors"), **DIMS)


def test_other_model_types_are_refused_naming_them(tmp_path):
    config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=64, image_size=32, patch_size=16)
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path / "vit")
    with pytest.raises(CheckpointError) as err:
        harness.build_model("video_vit", checkpoint=str(tmp_path / "vit"))
    assert "model_type 'vit'" in str(err.value) and "ViTForImageClassification" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="has no config.json"):
        harness.build_model("video_vit", checkpoint=str(tmp_path / "empty"))


def test_unsupported_variant_is_refused(tmp_path):
    tiny_hf(use_mean_pooling=False).save_pretrained(tmp_path / "cls")
    with pytest.raises(CheckpointError, match="use_mean_pooling=false"):
        harness.build_model("video_vit", checkpoint=str(tmp_path / "cls"))


@pytest.mark.parametrize("layout", ["safetensors_file", "directory", "hf_name"])
def test_suite_with_an_hf_checkpoint_runs_end_to_end(layout, tmp_path, monkeypatch, capsys, restore_threads):
    from harness.cli import main
    from harness.store import ResultStore
    from harness.suite import load_suite, validate_suite

    model = tiny_hf(hidden_size=128, num_hidden_layers=4, num_attention_heads=2, intermediate_size=512,
                    image_size=64, num_frames=16, num_labels=12)
    model.save_pretrained(tmp_path / "hf_tiny")
    backbone = {"name": "video_vit", "checkpoint": "hf_tiny"}
    if layout == "safetensors_file":  # no config.json: the preset gives the dims, the suite transformers' epsilons
        backbone = {"name": "synthetic_vit_tiny", "checkpoint": "hf_tiny/model.safetensors",
                    "norm_eps": 1e-12, "fc_norm_eps": 1e-5}
    elif layout == "hf_name":
        hub_cache(tmp_path, "tiny-org/e2e", str(tmp_path / "hf_tiny"))
        monkeypatch.setenv("HF_HOME", str(tmp_path))
        monkeypatch.delenv("HF_HUB_CACHE", raising=False)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        backbone["checkpoint"] = "hf:tiny-org/e2e"
    suite = {"name": "hf_e2e", "backbones": [backbone],
             "datasets": [{"name": "synthetic_motion", "root": "data", "num_train": 0, "num_val": 4}],
             "methods": [{"name": "dense"}, {"name": "tome", "r": 8}],
             "eval": {"batch_size": 4, "num_workers": 0},
             "measure": {"batch_size": 2, "warmup_iters": 1, "warmup_s": 0.0, "timed_iters": 1,
                         "min_timed_s": 0.0, "repeats": 1, "threads": 1}}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    assert validate_suite(str(path)) == []
    cells = load_suite(str(path)).cells()
    assert cells[0].key != cells[1].key and not any("missing:" in json.dumps(c.key) for c in cells)
    results = str(tmp_path / "results")
    assert main(["run", str(path), "--executor", "debug", "--results", results]) == 0
    records = ResultStore(results).records()
    assert len(records) == 2 and {r["status"] for r in records} == {"ok"}, [r.get("error") for r in records]
    assert {r["provenance"]["checkpoint_layout"] for r in records} == {"hf"}
    assert {r["key"] for r in records} == {c.key for c in cells}
    dense = next(r for r in records if r["label"] == "dense")
    assert dense["metrics"]["tokens_per_block"] == [128] * 4
    capsys.readouterr()


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # the debug executor runs cells in this process


def test_validate_reports_a_disagreeing_hf_checkpoint(reference, tmp_path):
    from harness.suite import validate_suite

    _, folder = reference
    suite = {"name": "bad", "backbones": [{"name": "videomae_vit_b16", "checkpoint": folder}],
             "datasets": [{"name": "synthetic_motion", "root": "data", "num_train": 0, "num_val": 4}],
             "methods": [{"name": "dense"}]}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    problems = [str(p) for p in validate_suite(str(path))]
    assert any("hidden_size=64 vs preset 'videomae_vit_b16' embed_dim=768" in p for p in problems), problems
