"""STA on Video Swin (re-implementation, methods.sta_swin) and the other methods on Video Swin: the pruner uses
STA's own scoring, counts and GMACs (analytic = fvcore on the running model), the refusals at validate, and a
tiny Video Swin run end to end through ``harness run`` with per-stage token counts in its record."""
import pytest
import torch
import yaml

import harness
import methods
from harness.cli import main
from harness.measure.flops import fvcore_macs
from harness.models.compatibility import method_problems
from harness.models.presets import resolve_config
from harness.models.video_swin import SwinPruner, VideoSwin, kept_counts
from harness.store import ResultStore
from methods.sta.reducer import sta_stage
from methods.sta_swin import STASwinParams, plan
from methods.sta_swin.pruner import window_order
from conftest import FAST_MEASURE

TINY = "synthetic_videoswin_tiny"  # 16x64: stage grids 8x16x16, 8x8x8, 8x4x4, 8x2x2; blocks 2-1-2-1


def _clip(batch=2, seed=1):
    return torch.randn(batch, 3, 16, 64, 64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("args", [{"r": 16}, {"r": 32}, {"r": 8, "placement": "every_stage"},
                                  {"r": 16, "placement": "stage3"},
                                  {"r": 24, "placement": "every_stage", "stages": [1, 2, 3, 4]}])
def test_counts_follow_the_plan_and_gmacs_equal_fvcore(args):
    torch.manual_seed(0)
    model = harness.build_model(TINY, method="sta_swin", method_args=args)
    clip = _clip(1)
    with torch.inference_mode():
        out = model(clip)
    assert torch.isfinite(out).all()
    cfg = resolve_config(TINY)
    assert model.last_stats.tokens_per_stage == kept_counts(cfg, model.pruner)
    for step in plan(methods.get_method("sta_swin").make_params(args), cfg):
        counts = model.last_stats.tokens_per_stage[step["stage"]]
        if step["block"] + 1 < len(counts):  # (a step after a stage's last block acts through the carry)
            assert counts[step["block"] + 1] == model.pruner.prune_after()[(step["stage"], step["block"])]
            assert counts[step["block"] + 1] < step["tokens"]
    counted, unexpected = fvcore_macs(model, clip)
    assert unexpected == {} and counted == model.view_macs().total
    assert model.view_macs().overhead > 0
    record = model.describe()
    assert record["method"] == "STA on Video Swin (re-implementation)"
    assert record["tokens_per_stage"] == model.last_stats.tokens_per_stage
    assert "masked" in record["removal"]


def test_r0_and_keep_all_equal_dense():
    torch.manual_seed(0)
    dense = harness.build_model(TINY)
    sta0 = harness.build_model(TINY, method="sta_swin", method_args={"r": 0})
    sta0.load_state_dict(dense.state_dict())

    class KeepAll(SwinPruner):  # the pruned code path with nothing removed
        def prune_after(self):
            return {(0, 0): 2048, (2, 0): 128}

        def select(self, stage, block, x, keys, kept, keep):
            return kept

    every = VideoSwin(resolve_config(TINY), KeepAll()).eval()
    every.load_state_dict(dense.state_dict())
    clip = _clip()
    with torch.inference_mode():
        want = dense(clip)
        assert torch.equal(sta0(clip), want)
        assert torch.allclose(every(clip), want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("placement", ["windows", "every_stage"])
def test_kept_tokens_are_stas_choice(placement):
    """The pruner hands STA's pure ``sta_stage`` the block output and head-mean keys of the tokens (windows:
    of every window, its temporal slices as the groups; every_stage: of the stage, t-h-w order) and keeps
    exactly the rows it keeps."""
    cfg = resolve_config(TINY)
    params = STASwinParams(r=16, placement=placement)
    model = harness.build_model(TINY, method="sta_swin", method_args={"r": 16, "placement": placement})
    step = plan(params, cfg)[0]
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, step["tokens"], 32, generator=g)
    keys = torch.randn(2, step["tokens"], 32, generator=g)
    kept = torch.arange(step["tokens"]).expand(2, -1)
    keep = model.pruner.prune_after()[(step["stage"], step["block"])]
    chosen = model.pruner.select(step["stage"], step["block"], x, keys, kept, keep)
    got = x.gather(1, chosen.unsqueeze(-1).expand(-1, -1, 32))
    if placement == "every_stage":
        assert torch.equal(got, sta_stage(x, keys, step["r"], step["groups"], step["order"]))
        return
    order = window_order(cfg.stage_grid(0), step["window"])  # window by window, slice by slice
    windows = step["tokens"] // (4 * 2 * 2)
    want = sta_stage(x[:, order].reshape(2 * windows, 16, 32), keys[:, order].reshape(2 * windows, 16, 32),
                     step["r"], step["groups"], step["order"])
    assert torch.equal(got, want.reshape(2, -1, 32))


def test_removed_tokens_skip_the_rest_of_their_stage():
    torch.manual_seed(0)
    model = harness.build_model(TINY, method="sta_swin", method_args={"r": 16, "placement": "every_stage",
                                                                               "stages": [1]})
    seen = {}
    stage0 = model.stages[0]
    stage0.blocks[0].register_forward_hook(lambda m, i, o: seen.__setitem__("after0", o[0].clone()))
    stage0.blocks[1].register_forward_hook(lambda m, i, o: seen.__setitem__("after1", o[0].clone()))
    with torch.inference_mode():
        model(_clip(1))
    a, b = seen["after0"].reshape(2048, -1), seen["after1"].reshape(2048, -1)
    unchanged = (a == b).all(dim=-1)
    assert int(unchanged.sum()) == 8 * 64  # r=16 of a 64-token stage-2 slice = 1/4 of each 256-token group
    assert model.last_stats.tokens_per_stage[0] == [2048, 1536]


def test_random_drop_follows_sta_counts_and_downsample_runs():
    torch.manual_seed(0)
    sta = harness.build_model(TINY, method="sta_swin", method_args={"r": 16})
    rnd = harness.build_model(TINY, method="random_drop", method_args={"match": "sta_swin", "r": 16})
    down = harness.build_model(TINY, method="downsample", method_args={"frames": 8, "size": 48})
    clip = _clip(1)
    with torch.inference_mode():
        sta(clip), rnd(clip), down(clip)
    assert rnd.last_stats.tokens_per_stage == sta.last_stats.tokens_per_stage
    assert rnd.view_macs().total == sta.view_macs().total - sta.view_macs().overhead
    for model in (rnd, down):
        counted, unexpected = fvcore_macs(model, clip)
        assert unexpected == {} and counted == model.view_macs().total
    assert down.last_stats.tokens_per_stage[0][0] == 4 * 12 * 12


def test_sta_swin_refused_on_vits_and_random_drop_needs_a_swin_match():
    problems = method_problems("sta_swin", STASwinParams(r=8), resolve_config("synthetic_vit_tiny"))
    assert problems and "Video Swin only" in problems[0]
    spec = methods.get_method("random_drop")
    assert method_problems("random_drop", spec.make_params({"match": "tome", "r": 2}), resolve_config(TINY))
    assert method_problems("sta_swin", STASwinParams(r=8), resolve_config(TINY))  # not a multiple of 16
    assert method_problems("sta_swin", STASwinParams(r=64), resolve_config(TINY))  # a whole 2x2 window slice


def test_tiny_video_swin_runs_dense_and_sta_end_to_end(tmp_path, capsys):
    torch.manual_seed(0)
    torch.save(harness.build_model(TINY).state_dict(), tmp_path / "swin.pth")
    suite = {"name": "swin_e2e", "backbones": [{"name": TINY, "checkpoint": "swin.pth"}],
             "datasets": [{"name": "synthetic_motion", "root": "data", "num_train": 0, "num_val": 4}],
             "methods": [{"name": "dense"}, {"name": "sta_swin", "r": 16},
                         {"name": "random_drop", "match": "sta_swin", "r": 16}],
             "eval": {"batch_size": 2, "num_workers": 0}, "measure": FAST_MEASURE}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    results = str(tmp_path / "results")
    assert main(["run", str(path), "--executor", "debug", "--results", results]) == 0
    records = {r["label"]: r for r in ResultStore(results).records()}
    assert {r["status"] for r in records.values()} == {"ok"} and len(records) == 3
    dense, sta = records["dense"], records["sta_swin r=16"]
    assert dense["provenance"]["checkpoint_layout"] == "harness"
    stages = sta["provenance"]["reducer"]["tokens_per_stage"]
    assert stages == [[2048, 1536], [384], [96, 80], [24]]  # carried across patch merging
    assert sta["metrics"]["tokens_per_block"] == [n for s in stages for n in s]
    assert sta["metrics"]["gmacs_per_view"] < dense["metrics"]["gmacs_per_view"]
    check = sta["flops_check"]  # fvcore on the running model
    assert check["gmacs_counted"] == check["gmacs_analytic"] == sta["metrics"]["gmacs_per_view"]
    capsys.readouterr()


PUBLISHED = {  # STA paper (arXiv 2308.04549) tables 2-3: "GFLOPs" (fvcore MACs) per view at 32x224, r1 = 192/256/320
    "videoswin_t": (88, 68, 61, 54), "videoswin_s": (166, 121, 106, 91), "videoswin_b": (282, 202, 176, 149),
    "videoswin_b_ssv2": (321, 241, 215, 188)}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_gflops_schedule_reproduced(name):
    """Dense and STA (placement 'windows', the default) within 1 GMAC of the paper, STA's own matmuls included."""
    with torch.device("meta"):
        models = [harness.build_model(name)] + [harness.build_model(name, method="sta_swin", method_args={"r": r})
                                                for r in (192, 256, 320)]
    for model, published in zip(models, PUBLISHED[name]):
        assert abs(model.view_macs().total / 1e9 - published) < 1.0


def test_validate_refuses_other_methods_on_video_swin_with_the_reason(tmp_path):
    from harness.suite import validate_suite

    suite = {"name": "swin_refuse", "backbones": [{"name": TINY}],
             "datasets": [{"name": "synthetic_motion", "root": "data", "num_train": 0, "num_val": 2}],
             "methods": [{"name": "dense"}, {"name": "tome", "r": 2}, {"name": "sta", "r": 2}]}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    problems = [str(p) for p in validate_suite(str(path))]
    assert any("'tome' cannot run on videoswin" in p and "window attention" in p for p in problems), problems
    assert any("'sta' cannot run on videoswin" in p and "use sta_swin" in p for p in problems), problems
    assert not any("'dense'" in p for p in problems)
