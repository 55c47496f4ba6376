"""RLT (Run-Length Tokenization): token counts per clip, padded == varlen == per-clip execution ==
the dense network on the kept tokens, per-video GMACs, the run-length embedding, pixel scale, errors."""
import pytest
import torch

import harness
from harness.data.transforms import normalize
from harness.measure.flops import count_macs, fvcore_macs
from methods.rlt.tokens import run_lengths, static_keep_mask

TINY = dict(embed_dim=32, depth=2, num_heads=2, num_classes=5)  # 16 x 64 x 64, patch 16: 8 x 4 x 4 tokens


def tiny(**args):
    torch.manual_seed(0)
    return harness.build_model("synthetic_vit_tiny", method="rlt", method_args=args, **TINY)


def still(batch=1, size=64, frames=16):
    return torch.randn(batch, 3, 1, size, size).expand(batch, 3, frames, size, size).contiguous()


def mixed_batch():
    """Clip 0 still, clip 1 noise, clip 2 still except one moving patch in the 2nd half."""
    clips = torch.cat([still(), torch.randn(1, 3, 16, 64, 64), still()])
    clips[2, :, 9:, 16:32, 32:48] += 1.0
    return clips


@pytest.mark.parametrize("mode", ["varlen", "padded"])
def test_acceptance_still_clip_keeps_the_first_tubelet_and_noise_keeps_all(mode):
    model = harness.build_model("videomae_vit_b16", num_classes=400, method="rlt",
                                method_args={"threshold": 0.1, "mode": mode}, depth=1)
    with torch.no_grad():
        model(still(size=224))
        assert model.token_counts[0] == 196
        model(torch.randn(1, 3, 16, 224, 224))
        assert model.token_counts[0] == 1568


def test_keep_rule_and_run_lengths_on_a_constructed_clip():
    clips = mixed_batch()
    keep = static_keep_mask(clips, 0.1, 2, 16).view(3, 8, 4, 4)
    assert keep[0, 0].all() and not keep[0, 1:].any()
    assert keep[1].all()
    # the patch changes between frame 8 and 9: tubelet 4 (frames 8, 9) differs from tubelet 3, and
    # tubelet 5 (frames 10, 11) from tubelet 4 in the official front/back comparison (frame 11 vs 8)
    moved = torch.zeros(8, 4, 4, dtype=torch.bool)
    moved[0] = True
    moved[4:6, 1, 2] = True
    assert torch.equal(keep[2], moved)
    lengths = run_lengths(keep.flatten(1), (8, 4, 4)).view(3, 8, 4, 4)
    assert (lengths[0, 0] == 8).all() and (lengths[1] == 1).all()
    assert lengths[2, 0, 1, 2] == 4 and lengths[2, 4, 1, 2] == 1 and lengths[2, 5, 1, 2] == 3
    assert lengths[2, 0, 0, 0] == 8 and (lengths[2][~moved] == 0).all()


def test_threshold_edges():
    clip = still()
    assert static_keep_mask(clip, 0.0, 2, 16).sum() == 16  # |diff| = 0 is not > 0: dropped
    assert static_keep_mask(torch.randn(1, 3, 16, 64, 64), 1e9, 2, 16).sum() == 16  # first tubelet always kept


def test_padded_varlen_and_one_clip_at_a_time_agree():
    clips = mixed_batch()
    outs = {}
    for mode in ("varlen", "padded"):
        model = tiny(mode=mode)
        with torch.no_grad():
            outs[mode] = model(clips)
            singles = torch.cat([model(c[None]) for c in clips])
        assert model.last_stats.tokens_per_sample is not None
        assert torch.allclose(outs[mode], singles, atol=1e-5)
    assert torch.allclose(outs["varlen"], outs["padded"], atol=1e-5)


@pytest.mark.parametrize("mode", ["varlen", "padded"])
def test_output_equals_the_dense_network_on_the_kept_tokens(mode):
    dense = harness.build_model("synthetic_vit_tiny", **TINY)
    model = tiny(mode=mode)
    dense.load_state_dict(model.state_dict())
    clips = mixed_batch()
    with torch.no_grad():
        out = model(clips)
        keep = model.last_keep
        x = dense.patch_embed(clips) + dense.pos_embed
        for i in range(3):
            tokens = x[i:i + 1, keep[i]]
            state = dense.reducer.init_state(tokens)
            stats = type(dense.last_stats)()
            for layer, block in enumerate(dense.blocks):
                tokens, state = block(tokens, layer, dense.reducer, state, stats)
            expected = dense.head(dense.fc_norm(tokens.mean(dim=1)))
            assert torch.allclose(out[i], expected[0], atol=1e-5), i


def test_per_video_and_executed_gmacs():
    clips = mixed_batch()
    cfg = None
    for mode in ("varlen", "padded"):
        model = tiny(mode=mode)
        cfg = model.cfg
        with torch.no_grad():
            model(clips)
        counts = [n[0] for n in model.last_stats.tokens_per_sample]
        assert counts == [16, 128, 18]
        per_video = model.sample_macs()
        for n, macs in zip(counts, per_video):
            dense_part = count_macs(cfg, [n, n], [n, n])  # blocks + head, then n embedded tubelets
            assert macs == dense_part.total - dense_part.patch_embed + n * 32 * 3 * 2 * 16 * 16
        executed = model.view_macs().total
        if mode == "varlen":
            assert executed == pytest.approx(sum(per_video) / 3, abs=8)
            assert model.token_counts == [pytest.approx(162 / 3)] * 2
        else:
            assert executed == max(per_video) and model.token_counts == [128, 128]


@pytest.mark.parametrize("mode, length_encoding", [("varlen", False), ("padded", False), ("varlen", True)])
def test_fvcore_agrees_on_a_still_and_a_moving_clip(mode, length_encoding):
    model = tiny(mode=mode, length_encoding=length_encoding)
    for clip in (still(), mixed_batch()[2:]):
        with torch.no_grad():
            model(clip)
        counted, unexpected = fvcore_macs(model, clip)
        assert unexpected == {}
        assert counted == model.view_macs().total == model.sample_macs()[0]


def test_upper_bound_before_any_forward():
    from harness.run.plan import meta_gmacs, meta_gmacs_upper_bound

    backbone, method = {"name": "videomae_vit_b16", "num_classes": 400}, {"name": "rlt", "params": {}}
    assert meta_gmacs(backbone, method) is None  # adaptive: only data can say
    dense = meta_gmacs(backbone, {"name": "dense", "params": {}})
    assert meta_gmacs_upper_bound(backbone, method) == pytest.approx(dense, rel=1e-12)


def test_length_encoding_is_a_trainable_embedding_of_each_tokens_run():
    plain, coded = tiny(), tiny(length_encoding=True)
    assert tuple(coded.reducer.length_embed.shape) == (1, 8, 32)
    assert "reducer.length_embed" in coded.state_dict() and "reducer.length_embed" not in plain.state_dict()
    coded.load_state_dict({**plain.state_dict(), "reducer.length_embed": torch.zeros(1, 8, 32)})
    clips = mixed_batch()
    with torch.no_grad():
        assert torch.equal(plain(clips), coded(clips))  # a zero embedding changes nothing
        coded.reducer.length_embed[0, 7] = torch.linspace(-1, 1, 32)  # tokens whose run is 8 tubelets long
        moved = coded(clips)
    assert not torch.allclose(moved[0], plain(clips)[0]) and torch.allclose(moved[1], plain(clips)[1])
    coded.train()
    loss, _ = coded.training_loss({"clips": clips, "labels": torch.tensor([0, 1, 2])})
    loss.backward()
    grad = coded.reducer.length_embed.grad[0]
    used = [0, 2, 3, 7]  # runs of 1 (noise), 3 and 4 (the moved patch of clip 2) and 8 tubelets (still)
    assert all(grad[i].abs().sum() > 0 for i in used)
    assert all(grad[i].abs().sum() == 0 for i in range(8) if i not in used)


def test_init_from_a_dense_checkpoint_leaves_the_length_embedding_new(tmp_path):
    dense = harness.build_model("synthetic_vit_tiny", **TINY)
    path = tmp_path / "dense.pth"
    torch.save({"module": dense.state_dict()}, path)
    coded = tiny(length_encoding=True)
    assert coded.init_from(str(path))["new"] == ["reducer.length_embed"]
    tiny().load_checkpoint(str(path))  # training-free RLT loads a dense checkpoint strictly


def test_input_std_rescales_differences_to_the_official_scale():
    frames = torch.randint(0, 200, (1, 64, 64, 3), dtype=torch.uint8).repeat(16, 1, 1, 1)  # a still clip
    frames[8:, :16, :16] += 10  # one patch brightens: 10/255/0.229 = 0.17 ImageNet-normalised, 0.08 at std 0.5
    imagenet = normalize(frames, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))[None]
    halves = normalize(frames, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))[None]
    official = static_keep_mask(imagenet, 0.1, 2, 16)
    model = tiny(input_std=[0.5, 0.5, 0.5], threshold=0.1)
    assert torch.equal(model.keep_mask(halves), official)
    assert int(official.sum()) == 17  # the first tubelet and the brightened patch at tubelet 4
    assert not torch.equal(tiny(threshold=0.1).keep_mask(halves), official)  # unscaled: another rule


@pytest.mark.parametrize("args, message", [
    ({"threshold": -1}, "threshold must be a finite number >= 0"),
    ({"mode": "packed"}, "mode must be one of"),
    ({"input_std": [0.2, 0.2]}, "input_std must be 3 positive numbers"),
    ({"thresh": 0.1}, "no parameter"),
])
def test_bad_settings_are_named(args, message):
    with pytest.raises(ValueError, match="rlt") as err:
        tiny(**args)
    assert message in str(err.value)


def test_capabilities():
    import methods

    spec = methods.get_method("rlt")
    assert spec.capabilities() == {"kind": "prune", "training_free": True, "needs_attention_probs": False,
                                   "adaptive_token_count": True, "own_architecture": True}
    assert spec.inference_only == ("mode",) and spec.title == "RLT"


def test_too_few_frames_and_wrong_clip_shape_are_named():
    with pytest.raises(ValueError, match="num_frames >= 4"):
        harness.build_model("synthetic_vit_tiny", method="rlt", num_frames=2, **TINY)
    with pytest.raises(ValueError, match="backbone's input shape"):
        tiny()(torch.randn(1, 3, 8, 64, 64))


def test_token_map_shows_the_dropped_input_patches():
    from harness.viz.inputs import VizError
    from harness.viz.tokens import DROPPED, KEPT, token_map

    model = tiny(threshold=0.1)
    clip = mixed_batch()[2]
    tmap = token_map(model, clip, "rlt")
    (step,) = tmap.steps
    assert step.tokens == 18 and (step.state == DROPPED).sum() == 110 and (step.state[0] == KEPT).all()
    with pytest.raises(VizError, match="no token map"):
        token_map(harness.build_model("synthetic_vit_tiny", method="downsample", method_args={"frames": 8}, **TINY),
                  clip, "downsample")
