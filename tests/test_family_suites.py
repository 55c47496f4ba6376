"""The ViViT and TimeSformer suites on fixture data in the real layouts, end to end on CPU.

Each suite's checkpoint variable points to a Hugging Face model directory written by transformers'
``save_pretrained`` at the card's depth, frames and input size but 32 channels wide (``--set`` narrows the
preset to match, as tests/test_real_suites.py does for VideoMAE); `validate` must pass on the real dims,
then `run` evaluates 2 videos with one view per cell (every method of the suite: dense, ToMe, downsampling,
random drop and merge) and every record is `ok` with the HF layout.
"""
import pytest

from harness.cli import main
from harness.store import ResultStore
from harness.suite import load_suite, validate_suite
from harness.models.video_vit import VideoViT  # noqa: F401  (applies the torchvision fix before transformers)
from tests import real_layouts as rl
from tests.test_real_suites import FAST, ONE_VIEW, suite_path

transformers = pytest.importorskip("transformers", reason="transformers is a test-only extra (pip install .[test])")

NARROW = dict(hidden_size=32, num_attention_heads=2, intermediate_size=128)
SUITES = {  # suite -> (checkpoint variable, the HF model at the card's shape, narrowed, and the dataset's variables)
    "k400_vivit_b": ("VIVIT_B_K400", lambda: transformers.VivitForVideoClassification(transformers.VivitConfig(
        **NARROW, num_labels=400)), ("K400_VIDEOS", "K400_VAL_LIST")),
    "k400_timesformer_b": ("TIMESFORMER_B_K400", lambda: transformers.TimesformerForVideoClassification(
        transformers.TimesformerConfig(**NARROW, num_labels=400)), ("K400_VIDEOS", "K400_VAL_LIST")),
    "ssv2_timesformer_b": ("TIMESFORMER_B_SSV2", lambda: transformers.TimesformerForVideoClassification(
        transformers.TimesformerConfig(**NARROW, num_labels=174)), ("SSV2_VIDEOS", "SSV2_VAL_JSON", "SSV2_LABELS_JSON")),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("family_suites")
    return {**rl.write_k400(str(root / "k400")), **rl.write_ssv2(str(root / "ssv2")), "root": str(root)}


@pytest.mark.parametrize("name", sorted(SUITES))
def test_family_suite_validates_and_runs_on_fixture_data(name, data, monkeypatch, tmp_path, capsys):
    var, make, data_vars = SUITES[name]
    model = make()
    model.save_pretrained(tmp_path / "hf")
    monkeypatch.setenv(var, str(tmp_path / "hf"))
    for v in data_vars:
        monkeypatch.setenv(v, data[v])
    assert validate_suite(suite_path(name), ["backbones.0.embed_dim=32", "backbones.0.num_heads=2"]) == []
    args = FAST + ONE_VIEW  # FAST narrows the preset to the fixture's 32 channels, 2 heads
    if name.startswith("k400"):  # the fixture CSV names 3 of the 400 classes: the suite's label map
        args += ["--set", f"datasets.0.label_map={data['K400_LABEL_MAP']}"]
    results = str(tmp_path / "results")
    assert main(["run", suite_path(name), "--executor", "debug", "--results", results, *args]) == 0
    sets = [value for flag, value in zip(args, args[1:]) if flag == "--set"] + ["eval.limit=2"]
    cells = load_suite(suite_path(name), sets).cells()
    records = {r["key"]: r for r in ResultStore(results).records()}
    assert {c.key for c in cells} == set(records) and len(cells) == 6
    for cell in cells:
        record = records[cell.key]
        assert record["status"] == "ok", (cell.label, record.get("error"))
        assert record["provenance"]["checkpoint_layout"] == "hf"
        assert record["coverage"]["listed"] == 2
    capsys.readouterr()
