"""Token maps: every registered method draws one at each of its examples (registry-wide), source tracking
leaves every output unchanged and is exact (merge methods partition the input patches, prune methods keep
each survivor's own patch), the per-patch states of ``token_map`` (STA's r per group, HaltingVT's Glimpser
and halting), and ``harness viz``."""
import numpy as np
import pytest
import torch

import harness
import methods
from harness.cli import main
from harness.models.compatibility import families_supported, method_problems
from harness.models.presets import resolve_config
from harness.viz import DROPPED, HALTED, KEPT, MERGED, VizError, membership, token_map, tracking_sources
from conftest import TINY

# 16 frames x 64 px, tubelet 2, patch 16: 8 slices of 4 x 4 = 128 tokens (STA needs 8 slices)
CKPT = "checkpoints/synthetic_vit_tiny.pth"

MERGE = [("tome", {"r": 12}), ("random_merge", {"match": "sta", "r": 3}), ("sttm", {}),
         ("sttm", {"num_meta": 0.25, "temporal_r": 0.5, "motion": "learned"})]
PRUNE = [("sta", {"r": 3}), ("random_drop", {"match": "tome", "r": 10})]
SALIENCY = [("vid_tldr", {"r": [20, 0.2, 10]})]


def _model(method, args, seed=0):
    torch.manual_seed(seed)
    model = harness.build_model("video_vit", method=method, method_args=args, **TINY)
    motion = getattr(getattr(model, "reducer", None), "motion_proj", None)
    if motion is not None:  # a "trained" motion embedding, so that it matters
        torch.nn.init.normal_(motion.weight, std=0.5)
    return model


def _clip(batch=2, seed=1):
    return torch.randn(batch, 3, 16, 64, 64, generator=torch.Generator().manual_seed(seed))


ON_VIDEOMAE = [n for n in methods.list_methods() if "videomae" in families_supported(methods.get_method(n))]


@pytest.mark.parametrize("method", ON_VIDEOMAE)
def test_every_method_draws_its_token_map_at_its_examples(method):
    """On the registry's test backbone (``TINY`` = ``methods.registry.EXAMPLE_BACKBONE``), at each example:
    the map's steps never add tokens (HaltingVT: all may halt), every patch is in at most one token (``membership``
    raises otherwise), a pruning method merges nothing, drawing leaves the logits unchanged; some example
    draws a reducing step."""
    spec, cfg = methods.get_method(method), resolve_config("video_vit", **TINY)
    drawn = []
    for args in spec.examples:
        if method_problems(method, spec.make_params(args), cfg):
            continue  # an example for another family (random_drop at sta_swin's counts)
        model, clip = _model(method, args), _clip(batch=1)
        with torch.inference_mode():
            plain = model(clip)[0]
        if spec.kind == "resample":  # a smaller clip: no input patch is kept, merged or dropped
            with pytest.raises(VizError, match="no token map"):
                token_map(model, clip, method)
            continue
        tmap = token_map(model, clip, method)
        assert tmap.method == method and torch.equal(tmap.logits, plain.float()), args
        counts = [s.tokens for s in tmap.steps]
        assert all(0 <= n <= tmap.tokens_in for n in counts) and counts == sorted(counts, reverse=True), counts
        if spec.kind == "prune":
            assert all(s.counts()["merged"] == 0 for s in tmap.steps), args
        if spec.token_map is None and tmap.steps:  # a reducer's map: its last step is what the blocks kept
            cls = int(getattr(model, "cls_token", None) is not None)
            assert counts[-1] == int(model.last_stats.tokens_out) - cls, args
        drawn.append(bool(tmap.steps))
    assert drawn or spec.kind == "resample", f"{method}: none of its examples runs on the test backbone"
    assert any(drawn) == (spec.kind not in ("none", "resample")), f"{method}: steps drawn per example {drawn}"


@pytest.mark.parametrize("method,args", MERGE + PRUNE + SALIENCY, ids=lambda v: str(v))
def test_tracking_leaves_the_forward_bit_identical_and_is_switched_off_again(method, args):
    model, clip = _model(method, args), _clip()
    with torch.inference_mode():
        plain = model(clip)
        with tracking_sources(model.reducer) as records:
            tracked = model(clip)
        again = model(clip)
    assert torch.equal(plain, tracked) and torch.equal(plain, again)
    assert records and all(r.source is not None for r in records)
    assert model.reducer.track_source is False and "after_attention" not in model.reducer.__dict__


def _steps(method, args):
    model, clip = _model(method, args), _clip(batch=1)
    with torch.inference_mode(), tracking_sources(model.reducer) as records:
        model(clip)
    counts = model.last_stats.tokens_in[1:] + [model.last_stats.tokens_out]
    return records, counts


@pytest.mark.parametrize("method,args", MERGE, ids=lambda v: str(v))
def test_merge_methods_partition_the_input_patches(method, args):
    records, _ = _steps(method, args)
    for rec in records:
        member = rec.source > 0
        assert torch.equal(member.sum(0), torch.ones(128, dtype=torch.long))  # each patch in exactly one token
        assert bool((member.sum(1) >= 1).all())  # no empty token
        state, group = membership(rec.source)
        tokens = (state == KEPT).sum() + len(np.unique(group[state == MERGED]))
        assert tokens == rec.source.shape[0] and not (state == DROPPED).any()


@pytest.mark.parametrize("method,args", PRUNE, ids=lambda v: str(v))
def test_pruned_patches_belong_to_no_token_and_survivors_to_themselves(method, args):
    records, _ = _steps(method, args)
    for rec in records:
        member = rec.source > 0
        assert torch.equal(member.sum(1), torch.ones(rec.source.shape[0], dtype=torch.long))
        assert int((member.sum(0) == 0).sum()) == 128 - rec.source.shape[0]
        assert int(member.sum(0).max()) == 1


def test_vid_tldr_deletes_background_sources_and_merges_the_rest():
    records, _ = _steps(*SALIENCY[0])
    for rec in records:
        member = rec.source > 0
        assert int(member.sum(0).max()) == 1 and bool((member.sum(1) >= 1).all())
    # saliency zero (background) sources vanish: some patches belong to no token after the first merge
    assert int((records[0].source.sum(0) == 0).sum()) > 0


def test_membership_on_a_constructed_source():
    source = torch.tensor([[0., 1, 0, 1, 0], [0, 0, 1, 0, 0], [1, 0, 0, 0, 0]])
    state, group = membership(source)
    assert state.tolist() == [KEPT, MERGED, KEPT, MERGED, DROPPED]
    assert group.tolist() == [-1, 1, -1, 1, -1]  # group id = smallest patch index of the token
    with pytest.raises(RuntimeError, match="more than one token"):
        membership(torch.tensor([[1., 1], [0, 1]]))


def test_sta_prunes_exactly_r_per_temporal_group_at_every_stage():
    r = 3
    tmap = token_map(_model("sta", {"r": r}), _clip(batch=1))
    assert [s.layer for s in tmap.steps] == [0, 1, 2] and [s.tokens for s in tmap.steps] == [104, 92, 86]
    for step, (groups, per_group) in zip(tmap.steps, ((8, r), (4, 3 * r), (2, 7 * r))):
        dropped = (step.state == DROPPED).reshape(groups, -1).sum(1)  # slices 8/groups at a time
        assert dropped.tolist() == [per_group] * groups
        assert set(np.unique(step.state)) <= {KEPT, DROPPED}


def test_tome_token_map_counts_follow_the_schedule():
    tmap = token_map(_model("tome", {"r": 12}), _clip(batch=1))
    assert [s.tokens for s in tmap.steps] == [116, 104, 92, 80]
    for step in tmap.steps:
        c = step.counts()
        assert c["kept"] + c["groups"] == step.tokens and c["dropped"] == 0


@pytest.mark.parametrize("mode", ["masked", "packed", "varlen"])
def test_haltingvt_map_glimpser_drops_s_minus_k_per_frame_and_halts_consistently(mode):
    torch.manual_seed(0)
    model = harness.build_model("video_vit", method="haltingvt",
                                method_args={"keep_rate": 0.25, "halt_center": 0.0, "mode": mode}, **TINY)
    tmap = token_map(model, _clip(batch=1), "haltingvt")
    per_frame, keep = 16, 4
    glimpse = tmap.steps[0]
    assert (glimpse.state == DROPPED).reshape(8, -1).sum(1).tolist() == [per_frame - keep] * 8
    masks = model.last_halting["masks"][:, 0]
    assert tmap.halting_blocks == [2, 3] and [s.layer for s in tmap.steps] == [1, 2, 3]
    for i, step in enumerate(tmap.steps[1:]):
        assert np.array_equal(step.state == DROPPED, glimpse.state == DROPPED)
        halted_patches = int((~masks[i][1:]).sum())  # CLS excluded
        assert int((step.state == HALTED).sum()) == halted_patches and step.tokens == int(masks[i].sum())
        assert set(step.halt_block[step.state == HALTED].tolist()) <= {2, 3}
    assert (tmap.steps[1].state == HALTED).any()  # halt_center 0: some tokens halt early
    assert not (tmap.steps[-1].state == KEPT).any()  # the last block halts every token
    assert tmap.note.startswith("CLS halted at block")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from harness.data.synthetic import clip_rng, encode_mp4, render_clip

    path = tmp_path_factory.mktemp("viz") / "move_right.mp4"
    encode_mp4(path, render_clip(0, clip_rng(0, "val", 0)))
    return str(path)


def test_cli_writes_png_and_gif(video, tmp_path, capsys):
    out = tmp_path / "maps" / "sta.png"
    assert main(["viz", "--method", "sta", "--set", "r=2", "--checkpoint", CKPT, "--video", video,
                 "--frame-interval", "1", "--out", str(out), "--gif"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.with_suffix(".gif").read_bytes()[:6] == b"GIF89a"
    assert f"wrote {out}" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["--method", "tomee"], "Did you mean: 'tome'"),
    (["--method", "tome", "--set", "q=1"], "has no parameter(s) ['q']"),
    (["--method", "haltingvt"], "--init-from"),
    (["--suite", "suites/quickstart.yaml", "--cell", "tome r=15"], "Did you mean: 'tome r=14'"),
    (["--method", "tome", "--set", "r=4", "--video", "missing.mp4"], "cannot decode missing.mp4"),
])
def test_cli_user_errors_are_one_clear_line(argv, message, tmp_path, capsys):
    assert main(["viz", *argv, "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()


def test_cli_names_the_command_that_trains_a_missing_finetune(tmp_path, capsys):
    cell = "haltingvt halt_center=5 mode=packed ft=haltingvt_p5e-4"
    # another recipe than the shipped run's: another key, so nothing to adopt
    assert main(["viz", "--suite", "suites/quickstart.yaml", "--cell", cell, "--results", str(tmp_path),
                 "--set", "finetunes.0.recipe.epochs=9", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "has not been trained yet" in err
    assert f"python -m harness finetune suites/quickstart.yaml --results {tmp_path}" in err
