"""V-JEPA 2 (transformers ``VJEPA2ForVideoClassification``): 3-D rotary positions and the attentive probe.

The reference is transformers' own classifier on tiny random weights written by ``save_pretrained``: our
logits must equal its logits (fp32 <= 1e-5, float64 <= 1e-10) and the analytic GMACs equal fvcore on our
model and on transformers'. Under token reduction each remaining token keeps its own (t, h, w) (the mean
position of the patches it stands for, from ``TokenState.source``): a kept token's rotation is checked
against transformers' attention given that token's original index.
"""
import json

import pytest
import torch

import harness
from harness.measure.flops import fvcore_macs
from harness.models.checkpoint import CheckpointError
from harness.models.presets import resolve_config
from harness.models.video_vit import VideoViT  # noqa: F401  (applies the torchvision fix before transformers)
from tests import hf_models

transformers = pytest.importorskip("transformers", reason="transformers is a test-only extra (pip install .[test])")

NAMES = ["archery", "bowling", "cartwheel"]
# head_dim 32: three rotary chunks of 10 channels and 2 channels left unrotated (as ViT-L's 64 = 3 x 20 + 4)
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=3.0, patch_size=8, crop_size=32,
            frames_per_clip=4, num_pooler_layers=2, id2label=dict(enumerate(NAMES)), pred_hidden_size=16,
            pred_num_attention_heads=2, pred_num_hidden_layers=1)


def tiny(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    model = transformers.VJEPA2ForVideoClassification(transformers.VJEPA2Config(**{**TINY, **overrides}))
    return hf_models.randomized(model)


def hf_logits(model, clip):
    return hf_models.hf_logits(model, clip, key="pixel_values_videos")


def reduced(folder: str, method: str, args: dict) -> VideoViT:
    """Our model of ``folder`` with ``method``'s reducer plugged in directly (whichever layout features the
    method registry declares for it: this file tests the model's side of the position rule)."""
    import methods
    from harness.models import hf

    spec = methods.get_method(method)
    cfg = resolve_config("video_vit", **hf.reconcile_dims("video_vit", {}, folder))
    reducer = spec.load_implementation()(spec.make_params(args), depth=cfg.depth, num_heads=cfg.num_heads,
                                         embed_dim=cfg.embed_dim)
    model = VideoViT(cfg, reducer)
    model.load_checkpoint(folder)
    return model.eval()


def Logits(model):  # noqa: N802 -- stands for the class
    return hf_models.Logits(model, key="pixel_values_videos")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    model = tiny()
    return model, hf_models.saved(model, tmp_path_factory, "vjepa2")


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(1)
    return torch.randn(2, 3, 4, 32, 32)


def test_directory_gives_dims_labels_and_transformers_logits(reference, clip):
    model, folder = reference
    ours = harness.build_model("video_vit", checkpoint=folder)
    cfg = ours.cfg
    assert cfg.family == "vjepa2" and ours.layout.features == {"rope3d", "attentive_pool"}
    assert (cfg.embed_dim, cfg.depth, cfg.num_frames, cfg.img_size, cfg.probe_layers) == (64, 2, 4, 32, 2)
    assert ours.class_names == NAMES
    hf_models.assert_same_logits(folder, model, clip, key="pixel_values_videos")


def test_explicit_attention_gives_the_same_logits(reference, clip):
    model, folder = reference
    hf_models.assert_same_logits(folder, model, clip, key="pixel_values_videos", fp64=None, fused_attention=False)


def test_safetensors_file_loads_and_the_predictor_is_the_only_tensor_left_out(reference, clip):
    from safetensors.torch import load_file

    from harness.models.checkpoint import read_checkpoint

    model, folder = reference
    state, layout = read_checkpoint(folder + "/model.safetensors")
    raw = load_file(folder + "/model.safetensors")
    ours = harness.build_model("video_vit", checkpoint=folder)
    assert layout == "hf" and set(state) == set(ours.state_dict())
    qkv = sum(1 for k in raw if k.endswith(("key.weight", "key.bias", "k_proj.weight", "k_proj.bias"))
              and "predictor" not in k and "cross_attn" not in k)
    dropped = {k for k in raw if k.startswith("vjepa2.predictor.")}
    assert dropped and len(raw) - len(dropped) == len(state) + 2 * qkv  # q/k/v stacked: 3 tensors -> 1


def test_analytic_gmacs_equal_fvcore_on_ours_and_on_transformers(reference, clip):
    model, folder = reference
    ours = harness.build_model("video_vit", checkpoint=folder)
    one = clip[:1]
    with torch.no_grad():
        ours(one)
    analytic = ours.view_macs().total
    counted, unexpected = fvcore_macs(ours, one)
    assert unexpected == {} and counted == analytic
    theirs, _ = fvcore_macs(Logits(model), one.transpose(1, 2))
    assert theirs == analytic


@pytest.mark.parametrize("method,args", [("tome", {"r": 5}), ("random_drop", {"match": "tome", "r": 5}),
                                         ("random_merge", {"match": "tome", "r": 5})])
def test_analytic_gmacs_equal_fvcore_with_reduction(reference, clip, method, args):
    _, folder = reference
    ours = reduced(folder, method, args)
    assert ours.reducer.track_source
    one = clip[:1]
    with torch.no_grad():
        ours(one)
    assert ours.last_stats.tokens_in[-1] < ours.cfg.num_tokens
    macs = ours.view_macs()
    counted, unexpected = fvcore_macs(ours, one)
    assert unexpected == {} and counted == macs.total
    n0 = ours.cfg.num_tokens
    positions = sum(n * n0 * 3 for n in ours.last_stats.tokens_in if n != n0)
    assert positions > 0 and macs.overhead >= positions


def second_block(ours: VideoViT, clip: torch.Tensor) -> dict:
    """One forward of ``ours``; the second block's attention input ``x`` and output ``out``, and the patch
    membership ``source`` of the tokens it attends over."""
    seen = {}
    ours.blocks[1].attn.register_forward_hook(lambda mod, args, out: seen.update(x=args[0], out=out.out))
    bias = ours.reducer.attention_bias

    def spy(layer, state):
        if layer == 1:
            seen["source"] = state.source
        return bias(layer, state)

    ours.reducer.attention_bias = spy
    with torch.no_grad():
        ours(clip)
    return seen


def test_a_pruned_token_keeps_its_own_rotation(reference, clip):
    """random_drop: the second block's attention over the kept tokens equals transformers' attention of
    that layer given each kept token's original index (``position_mask``), i.e. its own (t, h, w)."""
    model, folder = reference
    ours = reduced(folder, "random_drop", {"match": "tome", "r": 6}).double()
    seen = second_block(ours, clip.double())
    source = seen["source"]
    assert source.shape[1] < source.shape[2] and bool((source.sum(-1) == 1).all())
    kept = source.argmax(-1)  # [B, N]: each kept token's index in the input grid
    theirs = model.double().vjepa2.encoder.layer[1].attention
    with torch.no_grad():
        out, _ = theirs(seen["x"], position_mask=kept)
    model.float()
    assert (out - seen["out"]).abs().max().item() <= 1e-10


def test_a_merged_token_rotates_at_the_centroid_of_its_patches(reference, clip):
    """ToMe: the second block's attention over merged tokens equals transformers' attention of that layer
    with each token's (t, h, w) set to the mean position of the patches it stands for (fractional)."""
    model, folder = reference
    ours = reduced(folder, "tome", {"r": 6}).double()
    seen = second_block(ours, clip.double())
    source = seen["source"]
    assert bool((source.sum(-1) > 1).any())  # some tokens are merges
    t, h, w = ours.cfg.grid
    index = torch.arange(t * h * w, dtype=torch.float64)
    grid = torch.stack([index // (h * w), index % (h * w) // w, index % w], dim=-1)
    centroid = (source @ grid) / source.sum(-1, keepdim=True)  # [B, N, 3]
    theirs = model.double().vjepa2.encoder.layer[1].attention
    heads = theirs.num_attention_heads
    theirs.get_position_ids = lambda x, masks=None: tuple(
        centroid[..., i][:, None].expand(-1, heads, -1) for i in range(3))
    with torch.no_grad():
        out, _ = theirs(seen["x"])
    del theirs.get_position_ids
    model.float()
    assert (out - seen["out"]).abs().max().item() <= 1e-10


def test_a_merged_token_sits_at_the_centroid_of_its_patches():
    from harness.models.reduction import TokenState

    cfg = resolve_config("video_vit", family="vjepa2", embed_dim=12, depth=1, num_heads=1, num_frames=4,
                         img_size=32, patch_size=8, num_classes=3, probe_layers=0)
    model = VideoViT(cfg)

    n0 = cfg.num_tokens
    source = torch.zeros(1, 2, n0)
    source[0, 0, 5] = 1  # a kept patch: (t, h, w) = (0, 1, 1)
    source[0, 1, [0, 3, 16 + 15]] = 1  # merged: (0,0,0), (0,0,3), (1,3,3)
    pos = model.token_positions(torch.zeros(1, 2, 12), TokenState(source=source))
    assert pos[0, 0].tolist() == [0.0, 1.0, 1.0]
    assert torch.allclose(pos[0, 1], torch.tensor([1 / 3, 1.0, 2.0]))


def test_probe_weighs_a_merged_token_as_its_size():
    """log(size) on the probe's key logits: one token of size k == k identical tokens."""
    cfg = resolve_config("video_vit", family="vjepa2", embed_dim=16, depth=1, num_heads=2, num_frames=4,
                         img_size=32, patch_size=8, num_classes=3, probe_layers=2)
    from harness.models.video_vit import AttentiveProbe

    torch.manual_seed(0)
    probe = AttentiveProbe(cfg).double()
    with torch.no_grad():
        for p in probe.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    x = torch.randn(1, 4, 16, dtype=torch.float64)
    repeated = torch.cat([x, x[:, 2:3].expand(-1, 2, -1)], dim=1)  # token 2 three times
    size = torch.tensor([1.0, 1.0, 3.0, 1.0], dtype=torch.float64)[None, :, None]
    with torch.no_grad():
        assert (probe(x, size) - probe(repeated)).abs().max().item() <= 1e-12
        assert (probe(x) - probe(repeated)).abs().max().item() > 1e-6


def test_unsupported_configs_are_refused(tmp_path):
    model = tiny()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    for key, value, message in (("hidden_act", "silu", "hidden_act 'silu'"),
                                ("patch_size", [8, 4], "patch_size \\[8, 4\\] is not square"),
                                ("architectures", ["VJEPA2Model"], "hold no VJEPA2ForVideoClassification")):
        (tmp_path / "config.json").write_text(json.dumps({**config, key: value}))
        with pytest.raises(CheckpointError, match=message):
            harness.build_model("video_vit", checkpoint=str(tmp_path))


def test_a_backbone_without_its_probe_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    model = tiny()
    model.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    save_file({k: v for k, v in state.items() if not k.startswith(("pooler.", "classifier."))},
              tmp_path / "encoder.safetensors")
    with pytest.raises(CheckpointError, match="without its attentive probe"):
        harness.build_model("video_vit", checkpoint=str(tmp_path / "encoder.safetensors"),
                            family="vjepa2", embed_dim=64, depth=2, num_heads=2, mlp_ratio=3.0, patch_size=8,
                            img_size=32, num_frames=4, probe_layers=2, num_classes=3)


def test_a_preset_of_another_family_is_refused(reference):
    _, folder = reference
    with pytest.raises(CheckpointError, match="model_type"):
        harness.build_model("videomae_vit_s16", checkpoint=folder)


@pytest.mark.parametrize("pos_embed", ["interpolate", "regenerate"])
def test_downsample_gives_the_smaller_grid_its_rotary_positions(reference, clip, pos_embed):
    """``regenerate``: the smaller grid's own integer positions, i.e. transformers' model configured at
    the smaller crop size on the resized clip; ``interpolate``: token centres on the backbone's grid.
    Either way analytic GMACs = fvcore."""
    from methods.downsample import DownsampleParams
    from methods.downsample.model import build_downsampled
    from methods.downsample.resample import downsample_clip

    model, folder = reference
    cfg = resolve_config("video_vit", **harness.models.hf.reconcile_dims("video_vit", {}, folder))
    ours = build_downsampled(cfg, DownsampleParams(size=16, pos_embed=pos_embed))
    ours.load_checkpoint(folder)
    ours.eval()
    grid = ours.rope_grid.reshape(2, 2, 2, 3)
    if pos_embed == "regenerate":
        assert grid[1, 1, 0].tolist() == [1.0, 1.0, 0.0]
        small = transformers.VJEPA2ForVideoClassification.from_pretrained(folder, crop_size=16).eval()
        with torch.no_grad():
            diff = (ours(clip) - hf_logits(small, downsample_clip(clip, None, 16))).abs().max().item()
        assert diff <= 1e-5
    else:
        assert grid[1, 1, 0].tolist() == [1.0, 2.5, 0.5]  # cell 1 of 2 over 4 cells: centre 2.5
    one = clip[:1]
    with torch.no_grad():
        ours(one)
    counted, unexpected = fvcore_macs(ours, one, method="downsample")  # built without build_model
    assert unexpected == {} and counted == ours.view_macs().total


CARD_GMACS = 935.830146048  # fvcore on transformers' VJEPA2ForVideoClassification, ViT-L 16x256, 174 classes


def test_card_shape_gmacs_equal_fvcore_on_transformers_with_fewer_layers():
    """At the card's input (16x256: 2048 tokens, 1024-d, 16 heads, 174 classes) with one encoder layer and one
    probe self-attention layer (the count is a sum over layers): analytic = fvcore on transformers' model."""
    from harness.measure.flops import count_macs

    hf_cfg = transformers.VJEPA2Config(num_hidden_layers=1, num_pooler_layers=1, frames_per_clip=16, crop_size=256,
                                       num_labels=174, pred_hidden_size=16, pred_num_attention_heads=2,
                                       pred_num_hidden_layers=1)
    theirs = transformers.VJEPA2ForVideoClassification(hf_cfg).eval()
    cfg = resolve_config("vjepa2_vitl_fpc16_256_ssv2", depth=1, probe_layers=1)
    n = cfg.num_tokens
    counted, _ = fvcore_macs(Logits(theirs), torch.randn(1, 16, 3, 256, 256))
    assert counted == count_macs(cfg, [n], [n]).total
    full = resolve_config("vjepa2_vitl_fpc16_256_ssv2")
    assert count_macs(full, [n] * 24, [n] * 24).total == round(CARD_GMACS * 1e9)


@pytest.fixture
def suite_env(tmp_path, monkeypatch):
    """The suite's variables on fixture files: SSv2 in its official layout, and a model directory whose
    config.json is the released checkpoint's (ViT-L, 16x256, 174 classes; validate reads no weights)."""
    from tests import real_layouts as rl

    env = rl.write_ssv2(str(tmp_path / "ssv2"))
    model = tmp_path / "vjepa2-vitl-fpc16-256-ssv2"
    model.mkdir()
    config = transformers.VJEPA2Config(frames_per_clip=16, crop_size=256,
                                       id2label={i: f"class {i}" for i in range(174)})
    config.architectures = ["VJEPA2ForVideoClassification"]
    config.save_pretrained(model)
    (model / "model.safetensors").write_bytes(b"")
    env["VJEPA2_L_SSV2"] = str(model)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    return env


def test_suite_validates_and_its_dry_run_prints_the_card_gmacs(suite_env, tmp_path, capsys):
    import os

    from harness.cli import main
    from harness.suite import validate_suite

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "suites", "ssv2_vjepa2_l.yaml")
    assert validate_suite(path) == []
    capsys.readouterr()
    assert main(["run", path, "--dry-run", "--results", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    dense = next(line for line in out.splitlines() if " dense " in line)
    assert f"{CARD_GMACS:#.4g}" in dense.split()
    assert "7 cells: 7 to run" in out


def test_suite_runs_end_to_end_on_fixture_data(suite_env, tmp_path, capsys):
    """Every cell of the suite on the SSv2 fixture videos with a 32-d checkpoint of the card's depth, frames,
    size and probe (one view, two videos): each cell ok, the weights loaded from the HF directory."""
    import os

    from harness.cli import main
    from harness.store import ResultStore

    torch.manual_seed(0)
    config = transformers.VJEPA2Config(hidden_size=32, num_attention_heads=2, frames_per_clip=16, crop_size=256,
                                       id2label={i: f"class {i}" for i in range(174)}, pred_hidden_size=16,
                                       pred_num_attention_heads=2, pred_num_hidden_layers=1)
    folder = tmp_path / "narrow"
    transformers.VJEPA2ForVideoClassification(config).save_pretrained(folder)
    os.environ["VJEPA2_L_SSV2"] = str(folder)  # suite_env's monkeypatch restores it
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "suites", "ssv2_vjepa2_l.yaml")
    sets = ["eval.num_workers=0", "eval.batch_size=2", "measure.throughput=false", "measure.flops=false",
            "measure.threads=1", "backbones.0.embed_dim=32", "backbones.0.num_heads=2", "datasets.0.num_clips=1",
            "datasets.0.num_crops=1"]
    args = ["--limit", "2"] + [x for s in sets for x in ("--set", s)]
    results = str(tmp_path / "results")
    assert main(["run", path, "--executor", "debug", "--results", results, *args]) == 0
    records = list(ResultStore(results).records())
    assert len(records) == 7
    for record in records:
        assert record["status"] == "ok", record.get("error")
        assert record["coverage"]["decoded"] == 2
        assert record["provenance"]["checkpoint_layout"] == "hf"
    capsys.readouterr()
