"""GMACs of every real suite's cells: equal to the figures measured on the official code where one is
published, and equal to what docs/reference.md lists for every cell."""
import os
import re

import pytest

from harness.run.plan import meta_gmacs, meta_gmacs_upper_bound
from harness.suite import load_suite

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUITES = ("k400_vit_b", "k400_vit_s", "ssv2_vit_b", "ucf101_vit_b", "minik_haltingvt", "k400_vivit_b",
          "k400_timesformer_b", "ssv2_timesformer_b", "ssv2_vjepa2_l", "k400_videoswin", "ssv2_videoswin_b")
VARS = ("VIDEOMAE_B_K400", "VIDEOMAE_S_K400", "K400_VIDEOS", "K400_VAL_LIST", "VIDEOMAE_B_SSV2", "SSV2_VIDEOS",
        "SSV2_VAL_JSON", "SSV2_LABELS_JSON", "VIDEOMAE_B_UCF101", "UCF101_ROOT", "UCF101_TESTLIST", "UCF101_CLASSIND",
        "MINIK_FRAMES", "MINIK_VAL_LIST", "MINIK_TRAIN_LIST", "MINIK_VIT_S", "HALTINGVT_G03_BETA5",
        "HALTINGVT_G03_BETA10", "HALTINGVT_G05_BETA20", "HALTINGVT_G07_BETA20", "VIVIT_B_K400", "TIMESFORMER_B_K400",
        "TIMESFORMER_B_SSV2", "VJEPA2_L_SSV2", "VIDEOSWIN_T_K400", "VIDEOSWIN_S_K400", "VIDEOSWIN_B_K400",
        "VIDEOSWIN_B_SSV2")
VIT_B = {"dense": 180.49, "sta r=16": 157.90, "sta r=32": 136.32, "sta r=48": 115.86, "sta r=64": 96.53}
PUBLISHED = {  # methods.md §1, §4.4, §5.6 (fvcore on the official VideoMAE / STA / HaltingVT code, per view)
    "k400_vit_b": VIT_B,
    "k400_vit_s": {"dense": 56.95, "sta r=16": 49.15, "sta r=32": 41.81, "sta r=48": 35.03, "sta r=64": 28.80},
    "ssv2_vit_b": VIT_B,  # the 174-class head changes the count by < 0.001
    "ucf101_vit_b": VIT_B,
}
# fvcore (SDPA handle) on transformers' own dense model at the card's shape, measured once (docs/reference.md)
FAMILY_DENSE = {"k400_vivit_b": 451.826, "k400_timesformer_b": 196.053, "ssv2_timesformer_b": 196.053}
# HaltingVT is adaptive (per-video GMACs need data); published here is the no-halting upper bound of the
# official model, fvcore, DeiT-S 8 x 224 (methods.md §5.6), by keep rate rho
HALTINGVT_UPPER_BOUND = {0.3: 17.66, 0.5: 26.58, 0.7: 37.28}


@pytest.fixture
def suites(monkeypatch, tmp_path):
    for var in VARS:
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    return {name: load_suite(os.path.join(REPO, "suites", f"{name}.yaml")) for name in SUITES}


def haltingvt_upper_bound(cell) -> float:
    """GMACs per view with no token halting before the last block: what ``masked`` mode executes."""
    import methods
    from harness.models.presets import resolve_config
    from methods.haltingvt import GLIMPSER_BLOCKS, glimpser_keep
    from methods.haltingvt.costs import view_macs

    cfg = resolve_config(cell.backbone["name"], **{k: v for k, v in cell.backbone.items()
                                                   if k not in ("name", "checkpoint")})
    params = methods.get_method("haltingvt").params(**cell.method.params)
    t, h, w = cfg.grid
    keep = glimpser_keep(h * w, params.keep_rate)
    return view_macs(cfg, [h * w, keep], [1 + keep * t] * (cfg.depth - GLIMPSER_BLOCKS)).total / 1e9


_CACHE: dict = {}


def cell_gmacs(cell) -> float:
    """GMACs per view (HaltingVT: its no-halting upper bound; RLT: its no-drop bound), cached across tests."""
    import json

    dims = {k: v for k, v in cell.backbone.items() if k != "checkpoint"}  # the weights do not count
    key = json.dumps([dims, cell.method.as_dict()], sort_keys=True, default=str)
    if key not in _CACHE:
        if cell.method.name == "haltingvt":
            _CACHE[key] = haltingvt_upper_bound(cell)
        elif cell.method.name == "rlt":  # per video from the data; the reference lists the no-drop bound
            _CACHE[key] = meta_gmacs_upper_bound(cell.backbone, cell.method.as_dict())
        else:
            _CACHE[key] = meta_gmacs(cell.backbone, cell.method.as_dict())
    return _CACHE[key]


@pytest.mark.parametrize("suite_name", sorted(PUBLISHED))
def test_suite_cells_match_published_gmacs(suite_name, suites):
    measured = {c.label: cell_gmacs(c) for c in suites[suite_name].cells()}
    for label, gmacs in PUBLISHED[suite_name].items():
        assert measured[label] == pytest.approx(gmacs, abs=0.01), label
    assert measured["rlt"] == pytest.approx(measured["dense"], rel=1e-12)  # bound: every token kept
    assert measured["downsample frames=8 size=112"] < measured["downsample frames=8 size=160"] < measured["dense"] / 4
    matched = measured["random_drop match=sta r=32"]
    assert matched == pytest.approx(measured["sta r=32"] - 0.07, abs=0.06)  # same counts, no scoring matmuls


@pytest.mark.parametrize("suite_name", sorted(FAMILY_DENSE))
def test_family_suites_dense_equals_fvcore_on_transformers(suite_name, suites):
    measured = {c.label: cell_gmacs(c) for c in suites[suite_name].cells()}
    assert measured["dense"] == pytest.approx(FAMILY_DENSE[suite_name], abs=0.001)
    tome = sorted(v for k, v in measured.items() if k.startswith("tome"))
    assert len(tome) == 2 and tome[0] < tome[1] < measured["dense"]


SWIN_PUBLISHED = {  # STA paper tables 2-3 (fvcore GMACs per view, 32x224, integers): label -> published
    "k400_videoswin": {("videoswin_t", "dense"): 88, ("videoswin_t", "sta_swin r=192"): 68,
                       ("videoswin_t", "sta_swin r=256"): 61, ("videoswin_t", "sta_swin r=320"): 54,
                       ("videoswin_s", "dense"): 166, ("videoswin_s", "sta_swin r=192"): 121,
                       ("videoswin_s", "sta_swin r=256"): 106, ("videoswin_s", "sta_swin r=320"): 91,
                       ("videoswin_b", "dense"): 282, ("videoswin_b", "sta_swin r=192"): 202,
                       ("videoswin_b", "sta_swin r=256"): 176, ("videoswin_b", "sta_swin r=320"): 149},
    "ssv2_videoswin_b": {("videoswin_b_ssv2", "dense"): 321, ("videoswin_b_ssv2", "sta_swin r=192"): 241,
                         ("videoswin_b_ssv2", "sta_swin r=256"): 215, ("videoswin_b_ssv2", "sta_swin r=320"): 188},
}


@pytest.mark.parametrize("suite_name", sorted(SWIN_PUBLISHED))
def test_video_swin_cells_match_the_papers_gflops(suite_name, suites):
    measured = {(c.backbone["name"], c.label): cell_gmacs(c) for c in suites[suite_name].cells()}
    for key, gmacs in SWIN_PUBLISHED[suite_name].items():
        assert abs(measured[key] - gmacs) < 1.0, key  # the paper prints whole GFLOPs


def test_haltingvt_cells_match_the_published_upper_bounds(suites):
    cells = [c for c in suites["minik_haltingvt"].cells() if c.method.name == "haltingvt"]
    assert len(cells) == 12  # 4 official configs x masked, packed, varlen
    configs = set()
    for cell in cells:
        p = cell.method.params
        configs.add((p["keep_rate"], p["halt_center"]))
        assert (p["halt_scale"], p["eps"]) == (10.0, 0.01)  # the official gamma and epsilon
        assert cell.backbone["name"] == "haltingvt_deit_s8" and cell.method.weights.endswith(
            f"haltingvt_g0{int(p['keep_rate'] * 10)}_beta{int(p['halt_center'])}")
        assert haltingvt_upper_bound(cell) == pytest.approx(HALTINGVT_UPPER_BOUND[p["keep_rate"]], abs=0.01)
    assert configs == {(0.3, 5), (0.3, 10), (0.5, 20), (0.7, 20)}  # G03_Beta5, G03_Beta10, G05_Beta20, G07_Beta20


def reference_section(suite_name: str) -> str:
    with open(os.path.join(REPO, "docs", "reference.md"), encoding="utf-8") as f:
        text = f.read()
    start = text.index(f"## `{suite_name}.yaml`")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else len(text)]


@pytest.mark.parametrize("suite_name", SUITES)
def test_reference_table_lists_every_cell(suite_name, suites):
    """docs/reference.md gives each cell's GMACs per view (4 significant digits) in the suite's section."""
    section = reference_section(suite_name)
    numbers = set(re.findall(r"\d+\.\d+", section))
    for cell in suites[suite_name].cells():
        shown = f"{cell_gmacs(cell):#.4g}"
        assert shown in numbers, f"{suite_name}: {cell.label} = {shown} GMACs is not in docs/reference.md"
