"""HaltingVT: official numerics (golden from the official code), ACT bookkeeping, masked vs packed,
MACs (hand formula, fvcore, the spec's DeiT-S figures), checkpoints, initialisation, motion batch."""
import dataclasses
import math
import os

import pytest
import torch

import harness
import methods
from harness.run.plan import meta_gmacs
from harness.models.checkpoint import CheckpointError
from harness.models.presets import resolve_config
from harness.models.video_vit import sinusoid_table
from methods.haltingvt import costs, glimpser_keep
from methods.haltingvt.motion import add_static_clips
from conftest import tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "tests", "reference", "haltingvt_golden.pt")
DENSE_CKPT = os.path.join(ROOT, "checkpoints", "synthetic_vit_tiny.pth")
# the golden's shape: 4 frames of 2 x 2 patches, 2 Glimpser + 3 halting blocks
TINY = tiny(depth=5, tubelet_size=1, num_frames=4, img_size=32)


def build(method_args=None, backbone="video_vit", **dims):
    dims = {**TINY, **dims} if backbone == "video_vit" else dims
    return harness.build_model(backbone, method="haltingvt", method_args=method_args, **dims)


@pytest.fixture(scope="module")
def golden():
    return torch.load(GOLDEN, weights_only=True)


@pytest.fixture(scope="module")
def official_file(golden, tmp_path_factory):
    path = tmp_path_factory.mktemp("hvt") / "official.pth"
    torch.save({"state_dict": golden["state_dict"]}, path)  # mmengine wraps the recogniser this way
    return str(path)


def golden_model(golden, official_file, fused=True, **extra):
    c = golden["config"]
    params = {"keep_rate": c["keep_rate"][1], "halt_scale": c["halt_scale"], "halt_center": c["halt_center"],
              "eps": c["eps"], **extra}
    model = build(params, fused_attention=fused)
    assert model.load_checkpoint(official_file) == "haltingvt_official"
    return model


def run(model, clip):
    with torch.no_grad():
        return model(clip)


# --- registration ---

def test_registered_as_a_trained_halting_method_with_its_own_network():
    spec = methods.get_method("haltingvt")
    assert spec.capabilities() == {"kind": "halt", "training_free": False, "needs_attention_probs": True,
                                   "adaptive_token_count": True, "own_architecture": True}
    assert spec.inference_only == ("mode", "halted_keys")
    assert spec.train_recipe["optimizer"] == "adam" and spec.train_recipe["lr"] == 1e-5
    assert spec.train_recipe["no_decay"] == ["cls_token", "pos_embed", "time_embed"]
    assert spec.load_implementation().__name__ == "HaltingVTModel"
    with pytest.raises(ValueError, match="keep_rate must be in"):
        spec.make_params({"keep_rate": 0.0})
    with pytest.raises(ValueError, match="mode must be one of"):
        spec.make_params({"mode": "dense"})
    for gamma in (0.0, -10.0):  # sigmoid(gamma * x0 - beta) would ignore or invert the halting feature
        with pytest.raises(ValueError, match=r"halt_scale \(gamma\) must be > 0"):
            spec.make_params({"halt_scale": gamma})
    with pytest.raises(ValueError, match="depth >= 3"):
        build(depth=2)


def test_glimpser_keep_counts_follow_the_official_ceil():
    assert [glimpser_keep(196, r) for r in (0.3, 0.5, 0.7, 1.0)] == [59, 98, 138, 196]


# --- official numerics ---

@pytest.mark.parametrize("fused", [False, True])
def test_masked_mode_matches_the_official_model(golden, official_file, fused):
    model = golden_model(golden, official_file, fused=fused)
    clip = golden["input"].float()
    with torch.no_grad():
        feature = model.forward_features(clip)
        logits, motion = model.head(feature), model.motion_head(feature)
    h = model.last_halting
    assert torch.allclose(feature, golden["feature"], atol=1e-4)
    assert torch.allclose(logits, golden["logits"], atol=1e-4)
    assert torch.allclose(motion, golden["motion_logits"], atol=1e-4)
    assert torch.allclose(h["rho"], golden["rho_token"], atol=1e-4)
    assert torch.equal(h["token_nums"], golden["token_nums"])
    assert torch.equal(h["counter"], golden["counter_token"])
    assert torch.equal(h["masks"], golden["mask_record"])
    assert torch.equal(h["glimpser_idx"].flatten(0, 1), golden["glimpser_idx"])
    assert model.last_stats.tokens_in == [17, 17, 9, 9, 9]
    assert model.last_stats.tokens_mlp == [17, 9, 9, 9, 9]
    per_sample = [[17, 17] + row for row in golden["token_nums"].int().tolist()]
    assert model.last_stats.tokens_per_sample == per_sample
    assert len({tuple(r) for r in model.last_stats.tokens_per_sample}) == 3  # the counts differ per clip
    assert not golden["mask_record"][0, :, 0].all()  # and some CLS halted in the first halting block


# --- ACT bookkeeping ---

def test_act_weights_of_every_token_sum_to_one(golden, official_file):
    model = golden_model(golden, official_file)
    run(model, golden["input"].float())
    weights = model.last_halting["weights"]  # [L, B, n]
    assert torch.allclose(weights.sum(dim=0), torch.ones(weights.shape[1:]), atol=1e-5)
    assert (weights >= 0).all() and (weights[:, ~model.last_halting["masks"][0]][1:] == 0).all()


def test_a_halted_token_stops_contributing(golden, official_file):
    model = golden_model(golden, official_file)
    clip = golden["input"].float()
    reference = run(model, clip)
    reference_states = model.last_halting["output"]
    halted = ~model.last_halting["masks"][0]  # halted in the first halting block, [B, n]
    assert halted.any() and model.last_halting["masks"][1].any()  # others still run in block 4

    def perturb(where):
        def hook(module, inputs, output):
            y, h = output
            return y + 100.0 * where.unsqueeze(-1), h
        return hook

    block = model.blocks[3]  # the second halting block
    handle = block.register_forward_hook(perturb(halted.float()))
    assert torch.equal(run(model, clip), reference)
    assert torch.equal(model.last_halting["output"], reference_states)  # no token's state moved
    handle.remove()
    handle = block.register_forward_hook(perturb((~halted).float()))  # the check can fail
    assert not torch.allclose(run(model, clip), reference)
    handle.remove()


def test_every_token_halts_at_the_last_block():
    model = build({"halt_center": 1e4})  # h = 0: nothing halts by itself
    clip = torch.randn(2, 3, 4, 32, 32)
    run(model, clip)
    h = model.last_halting
    n, layers = 9, 3
    assert h["token_nums"].tolist() == [[n] * layers] * 2
    assert not h["masks"][-1].any() and h["masks"][:-1].all()
    assert torch.equal(h["weights"][-1], torch.ones(2, n))
    assert torch.equal(h["rho"], torch.full((2, n), layers + 1.0))
    assert torch.equal(h["counter"], torch.full((2, n), float(layers)))


def test_the_cls_token_can_halt_and_later_blocks_then_see_nothing():
    model = build({"halt_center": -1e4})  # h = 1: every token, the CLS included, halts at once
    clip = torch.randn(2, 3, 4, 32, 32)
    masked = run(model, clip)
    h = model.last_halting
    assert h["token_nums"].tolist() == [[9, 0, 0]] * 2
    assert not h["masks"][0][:, 0].any()
    assert torch.equal(h["rho"], torch.full((2, 9), 2.0))  # one layer + remainder 1
    model.set_mode("packed")
    assert torch.allclose(run(model, clip), masked, atol=1e-6)  # packed runs no token after block 2
    assert model.last_stats.tokens_in[2:] == [9, 0, 0]


# --- masked vs packed ---

def test_masked_and_packed_agree_when_nothing_halts_before_the_last_block():
    model = build({"halt_center": 1e4})
    clip = torch.randn(3, 3, 4, 32, 32)
    masked = run(model, clip)
    macs_masked = model.view_macs().total
    model.set_mode("packed")
    packed = run(model, clip)
    assert torch.allclose(packed, masked, atol=1e-5)
    assert model.view_macs().total == macs_masked


def test_packed_mode_really_runs_fewer_tokens(golden, official_file):
    model = golden_model(golden, official_file)
    clip = golden["input"].float()
    masked = run(model, clip)
    masked_macs, masked_nums = model.view_macs(), model.last_halting["token_nums"]
    model.set_mode("packed")
    packed = run(model, clip)
    assert torch.equal(model.last_halting["token_nums"], masked_nums)  # halting decisions unchanged here
    # what ran: each block over the batch's largest active count (the padded batch)
    assert model.last_stats.tokens_in[2:] == masked_nums.max(dim=0).values.int().tolist() == [9, 6, 4]
    assert model.view_macs().total < masked_macs.total
    dims = model.cfg.embed_dim
    halted_keys = model.view_macs().overhead + 2 * 5 * dims // 3  # attending to the removed halted tokens
    assert 0 < halted_keys < 0.01 * model.view_macs().total  # (2 blocks removed some: LayerNorm of a zero token)
    assert max(model.sample_macs()) == model.view_macs().total - halted_keys  # the largest clip sets the size
    assert sum(model.sample_macs()) / 3 < model.view_macs().total  # padding costs something
    # the removed halted tokens still count as the official batch's zero vectors (halted_keys "zeros"):
    # one shared key per clip weighted by their count gives masked's, i.e. the official, numbers
    assert torch.allclose(packed, masked, atol=1e-5)
    explicit = golden_model(golden, official_file, fused=False)
    for mode in ("varlen", "packed"):
        model.set_mode(mode)
        explicit.set_mode(mode)
        assert torch.allclose(run(model, clip), masked, atol=1e-5), mode
        assert torch.allclose(run(explicit, clip), masked, atol=1e-5), mode
    # "drop": halted tokens leave attention as well; the features differ from what the model was trained on
    dropped = golden_model(golden, official_file, halted_keys="drop").set_mode("packed")
    assert not torch.allclose(run(dropped, clip), masked, atol=1e-4)
    assert torch.equal(dropped.last_halting["token_nums"], masked_nums)


def test_packed_batch_equals_each_clip_run_alone(golden, official_file):
    model = golden_model(golden, official_file).set_mode("packed")
    clip = golden["input"].float()
    batched = run(model, clip)
    nums = model.last_halting["token_nums"]
    alone = torch.cat([run(model, clip[i:i + 1]) for i in range(len(clip))])
    assert torch.allclose(batched, alone, atol=1e-5)  # padding is invisible to the real tokens
    assert torch.equal(torch.cat([model.last_halting["token_nums"]]), nums[-1:])


def test_varlen_equals_packed_without_the_padding(golden, official_file):
    model = golden_model(golden, official_file).set_mode("packed")
    clip = golden["input"].float()
    packed, packed_record = run(model, clip), dict(model.last_halting)
    padded_macs = model.view_macs().total
    model.set_mode("varlen")
    varlen = run(model, clip)
    assert torch.allclose(varlen, packed, atol=1e-5)
    for name in ("token_nums", "masks", "counter"):
        assert torch.equal(model.last_halting[name], packed_record[name]), name
    for name in ("weights", "rho", "output"):
        assert torch.allclose(model.last_halting[name], packed_record[name], atol=1e-5), name
    nums = model.last_halting["token_nums"]
    assert model.last_stats.tokens_in[2:] == [round(v, 2) for v in nums.mean(dim=0).tolist()]
    # each clip ran its own count: the batch executed the mean of the clips' theoretical MACs
    macs = model.view_macs()
    halted_keys = macs.overhead + 2 * 5 * model.cfg.embed_dim / len(clip)  # + LayerNorm of a zero token, 2 blocks
    assert macs.total - halted_keys == pytest.approx(sum(model.sample_macs()) / len(clip), abs=10)
    assert model.view_macs().total < padded_macs
    alone = torch.cat([run(model, clip[i:i + 1]) for i in range(len(clip))])
    assert torch.allclose(varlen, alone, atol=1e-5)  # no clip sees another's tokens


def test_varlen_when_nothing_or_everything_halts():
    clip = torch.randn(2, 3, 4, 32, 32)
    for center in (1e4, -1e4):  # nobody halts before the last block / every token halts at once
        model = build({"halt_center": center})
        masked = run(model, clip)
        model.set_mode("varlen")
        assert torch.allclose(run(model, clip), masked, atol=1e-5)


# --- MACs ---

def test_sample_macs_follow_the_spec_formula_by_hand(golden, official_file):
    model = golden_model(golden, official_file)
    run(model, golden["input"].float())
    C, n_full, layers = 32, 9, 3

    def f(n):  # qkv + proj + MLP, q k^T and A v, two LayerNorms (methods.md 5.6)
        return 12 * n * C * C + 2 * n * n * C + 10 * n * C

    fixed = model.view_macs().total - layers * f(n_full)  # masked = fixed + every token everywhere
    expected = [fixed + sum(f(int(n)) for n in row) for row in golden["token_nums"].tolist()]
    assert model.sample_macs() == expected
    patch = 4 * 4 * C * 3 * 16 * 16
    head = 5 * C + C * 5
    glimpser = [5 * 16 * C * C + 4 * 20 * C * C + 8 * 17 * C * C + 2 * 4 * 16 * C + 2 * 4 * 25 * C
                + 5 * C * (16 + 20 + 17),
                5 * 16 * C * C + 4 * 20 * C * C + 8 * 9 * C * C + 2 * 4 * 16 * C + 2 * 4 * 25 * C
                + 5 * C * (16 + 20 + 9)]
    assert fixed == patch + sum(glimpser) + head


@pytest.mark.parametrize("rho,gmacs", [(0.3, 17.66), (0.5, 26.58), (0.7, 37.28), (1.0, 55.58)])
def test_deit_s_upper_bounds_match_fvcore_on_the_official_model(rho, gmacs):
    cfg = resolve_config("haltingvt_deit_s8")  # methods.md 5.6: measured there, no halting savings
    keep = glimpser_keep(196, rho)
    macs = costs.view_macs(cfg, [196, keep], [1 + 8 * keep] * 10)
    assert macs.total / 1e9 == pytest.approx(gmacs, abs=0.01)


@pytest.mark.parametrize("mode", ["packed", "varlen"])
def test_removing_modes_execute_fewer_tokens_once_tokens_halt(mode):
    # (analytic == fvcore == FlopCounterMode for every mode: tests/test_method_gmacs.py)
    model = build({"halt_center": -1.0, "mode": mode}, backbone="synthetic_vit_tiny")
    run(model, torch.randn(1, 3, 16, 64, 64))
    assert model.last_stats.tokens_in[-1] < model.last_stats.tokens_in[-2]  # something halted


def test_build_model_describe_and_no_static_gmacs():
    model = build({"keep_rate": 0.5}, backbone="synthetic_vit_tiny")
    assert model.describe()["glimpser_keep_per_frame"] == [16, 8]
    assert model.describe()["tokens_entering_halting"] == 1 + 8 * 8
    assert run(model, torch.randn(2, 3, 16, 64, 64)).shape == (2, 12)
    assert len(model.sample_macs()) == 2
    assert meta_gmacs({"name": "synthetic_vit_tiny"}, {"name": "haltingvt", "params": {}}) is None


# --- checkpoints and initialisation ---

def test_own_layout_round_trip_and_readable_errors(golden, official_file, tmp_path):
    model = golden_model(golden, official_file)
    path = tmp_path / "ours.pth"
    torch.save({"module": model.state_dict()}, path)
    other = build({"halt_center": golden["config"]["halt_center"]})
    assert other.load_checkpoint(str(path)) == "haltingvt"
    clip = golden["input"].float()
    assert torch.equal(run(other, clip), run(model, clip))
    with pytest.raises(CheckpointError, match="init_from"):
        other.load_checkpoint(DENSE_CKPT)
    with pytest.raises(CheckpointError, match="missing in checkpoint"):
        torch.save({"module": {k: v for k, v in model.state_dict().items() if k != "norm.bias"}}, path)
        other.load_checkpoint(str(path))
    with pytest.raises(CheckpointError, match="tubelet_size=1"):
        build(num_frames=8, tubelet_size=2).load_checkpoint(official_file)


def test_init_from_a_deit_image_vit(tmp_path):
    from harness.models.timm_import import import_timm

    import_timm()
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    deit = VisionTransformer(img_size=224, patch_size=16, embed_dim=32, depth=6, num_heads=2, num_classes=7)
    state = deit.state_dict()
    path = tmp_path / "deit.pth"
    torch.save({"model": state}, path)
    model = build()
    report = model.init_from(str(path))
    sd = model.state_dict()
    assert report["layout"] == "deit"
    assert sorted(report["new"]) == ["head.bias", "head.weight", "motion_head.bias", "motion_head.weight",
                                     "time_embed"]
    assert "head.weight" in report["unused"] and "blocks.5.attn.qkv.weight" in report["unused"]
    assert torch.equal(sd["patch_embed.proj.weight"][:, :, 0], state["patch_embed.proj.weight"])
    assert torch.equal(sd["blocks.4.mlp.fc2.weight"], state["blocks.4.mlp.fc2.weight"])
    for i in (0, 1):
        assert torch.equal(sd[f"blocks.{i}.temporal_attn.qkv.bias"], state[f"blocks.{i}.attn.qkv.bias"])
        assert torch.equal(sd[f"blocks.{i}.temporal_norm1.weight"], state[f"blocks.{i}.norm1.weight"])
        assert not sd[f"blocks.{i}.temporal_fc.weight"].any()
    grid = state["pos_embed"][0, 1:].reshape(14, 14, 32)
    expected = torch.stack([grid[0, 0], grid[0, 7], grid[7, 0], grid[7, 7]])  # 2-D nearest, 14 -> 2
    assert torch.equal(sd["pos_embed"][0, 1:], expected)
    assert torch.equal(sd["pos_embed"][0, 0], state["pos_embed"][0, 0])
    assert not sd["time_embed"].any()
    assert torch.isfinite(run(model, torch.randn(1, 3, 4, 32, 32))).all()


def test_init_from_our_dense_checkpoint():
    dense = torch.load(DENSE_CKPT, weights_only=True)["module"]
    model = build(backbone="synthetic_vit_tiny")
    report = model.init_from(DENSE_CKPT)
    sd = model.state_dict()
    assert report["layout"] == "dense:videomae"
    assert report["new"] == ["motion_head.bias", "motion_head.weight"]
    assert torch.equal(sd["patch_embed.proj.weight"], dense["patch_embed.proj.weight"])
    for i in range(4):
        bias = sd[f"blocks.{i}.attn.qkv.bias"].reshape(3, 128)
        assert torch.equal(bias[0], dense[f"blocks.{i}.attn.q_bias"]) and not bias[1].any()
        assert torch.equal(bias[2], dense[f"blocks.{i}.attn.v_bias"])
        assert torch.equal(sd[f"blocks.{i}.mlp.fc1.weight"], dense[f"blocks.{i}.mlp.fc1.weight"])
    assert torch.equal(sd["blocks.1.temporal_attn.proj.weight"], dense["blocks.1.attn.proj.weight"])
    assert not sd["blocks.0.temporal_fc.weight"].any() and not sd["cls_token"].any()
    assert torch.equal(sd["norm.weight"], dense["fc_norm.weight"])
    assert torch.equal(sd["head.bias"], dense["head.bias"])
    # least-squares additive fit of the time-major table: residuals sum to 0 along time and space
    table = sinusoid_table(8 * 16, 128)[0].reshape(8, 16, 128)
    residual = table - sd["pos_embed"][0, 1:].unsqueeze(0) - sd["time_embed"][0].unsqueeze(1)
    assert residual.sum(dim=0).abs().max() < 1e-5 and residual.sum(dim=1).abs().max() < 1e-5
    assert not sd["pos_embed"][0, 0].any()
    assert torch.isfinite(run(model, torch.randn(2, 3, 16, 64, 64))).all()


# --- training ---

def test_motion_batch_interleaves_real_and_static_clips():
    clips = torch.arange(3 * 4 * 2 * 2 * 3, dtype=torch.uint8).reshape(3, 4, 2, 2, 3)
    labels = torch.tensor([5, 6, 7])
    out, out_labels, extras = add_static_clips(clips, labels, torch.Generator().manual_seed(0))
    assert out.shape == (6, 4, 2, 2, 3) and out.dtype == torch.uint8
    assert torch.equal(out[0::2], clips)
    for i in range(3):
        static = out[2 * i + 1]
        assert (static == static[0]).all()  # one frame repeated ...
        assert any(torch.equal(static[0], frame) for frame in clips[i])  # ... taken from that clip
    assert out_labels.tolist() == [5, 5, 6, 6, 7, 7]
    assert extras["motion_labels"].tolist() == [1, 0, 1, 0, 1, 0]
    again = add_static_clips(clips, labels, torch.Generator().manual_seed(0))[0]
    assert torch.equal(again, out)


def test_training_loss_backpropagates_through_the_ponder_cost():
    torch.manual_seed(0)
    model = build({"halt_center": 0.0, "drop_path": 0.0}).train()
    raw = torch.randint(0, 255, (2, 4, 32, 32, 3), dtype=torch.uint8)
    clips, labels, extras = add_static_clips(raw, torch.tensor([1, 3]), torch.Generator().manual_seed(1))
    batch = {"clips": clips.permute(0, 4, 1, 2, 3).float() / 127.5 - 1, "labels": labels, **extras}
    loss, logs = model.training_loss(batch)
    loss.backward()
    assert set(logs) >= {"ce", "ponder", "motion", "tokens", "top1"} and math.isfinite(loss.item())
    assert model.motion_head.weight.grad.abs().sum() > 0
    assert model.blocks[0].temporal_fc.weight.grad.abs().sum() > 0
    model.zero_grad()
    model(batch["clips"])
    model.last_halting["rho"].mean().backward()  # the ponder term alone
    grad = model.blocks[2].mlp.fc2.bias.grad  # the halting score is channel 0 of a block's output
    assert grad is not None and grad[0] != 0
    no_motion = dataclasses.replace(model.params, motion_weight=0.0)
    model.params = no_motion
    assert "motion" not in model.training_loss({k: v for k, v in batch.items() if k != "motion_labels"})[1]
    model.params = dataclasses.replace(no_motion, motion_weight=1.0)
    with pytest.raises(KeyError, match="motion_labels"):
        model.training_loss({"clips": batch["clips"], "labels": labels})


def test_dry_run_upper_bound_on_the_meta_device_is_the_masked_cost():
    from harness.run.plan import meta_gmacs, meta_gmacs_upper_bound

    cell = ({"name": "haltingvt_deit_s8"}, {"name": "haltingvt", "params": {"keep_rate": 0.5}})
    assert meta_gmacs(*cell) is None  # adaptive: no single count
    assert meta_gmacs_upper_bound(*cell) == pytest.approx(26.58, abs=0.01)  # methods.md 5.6, rho = 0.5
