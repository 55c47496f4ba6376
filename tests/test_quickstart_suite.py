"""The shipped quickstart suite, against the real registries."""
import os

from harness.suite import load_suite, validate_suite

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATH = os.path.join(REPO, "suites", "quickstart.yaml")


def test_quickstart_is_valid_and_expands_to_every_method():
    assert validate_suite(PATH) == []
    suite = load_suite(PATH)
    labels = [c.label for c in suite.cells()]
    assert labels == ["dense", "tome r=8", "tome r=14", "vid_tldr r=[16,16]", "vid_tldr r=[32,32]",
                      "sta r=3", "sta r=6", "sttm", "sttm num_meta=0.25 temporal_r=0.5",
                      "sttm motion=learned ft=sttm_k50",
                      "sttm num_meta=0.25 temporal_r=0.5 motion=learned ft=sttm_k25",
                      "haltingvt halt_center=5 ft=haltingvt_p5e-4",
                      "haltingvt halt_center=5 mode=packed ft=haltingvt_p5e-4",
                      "haltingvt halt_center=5 mode=varlen ft=haltingvt_p5e-4",
                      "haltingvt halt_center=5 ponder_weight=0.001 ft=haltingvt_p1e-3",
                      "haltingvt halt_center=5 mode=packed ponder_weight=0.001 ft=haltingvt_p1e-3",
                      "haltingvt halt_center=5 mode=varlen ponder_weight=0.001 ft=haltingvt_p1e-3",
                      "random_drop match=sta r=6", "random_merge match=sta r=6",
                      "downsample frames=12", "downsample size=48", "rlt threshold=0.02", "rlt threshold=0.035"]
    finetunes = suite.finetunes()
    assert [f.method["name"] for f in finetunes] == ["sttm", "sttm", "haltingvt", "haltingvt"]
    # masked, packed and varlen evaluate the same fine-tuned weights
    by_label = {c.label: c for c in suite.cells()}
    assert (by_label["haltingvt halt_center=5 ft=haltingvt_p5e-4"].method.finetune
            == by_label["haltingvt halt_center=5 mode=packed ft=haltingvt_p5e-4"].method.finetune)
    cell = suite.cells()[0]
    assert cell.backbone["checkpoint"] == os.path.join(REPO, "checkpoints", "synthetic_vit_d8.pth")
    assert os.path.isfile(cell.backbone["checkpoint"])
    assert (cell.eval.batch_size, cell.measure.batch_size, cell.measure.repeats) == (16, 8, 5)


def test_sta_on_a_backbone_without_8_slices_is_rejected_by_validate():
    problems = validate_suite(PATH, ["backbones.0.num_frames=8", "datasets.0.clip_len=8"])
    text = "\n".join(map(str, problems))
    assert "STA needs 8 temporal token slices" in text
    assert "random_drop" in text  # it follows STA's schedule, so it inherits the requirement
    assert not any(" x tome" in str(p) and "slices" in str(p) for p in problems)  # ToMe has no such requirement


def test_unset_variables_say_what_they_must_point_to(monkeypatch):
    for var in ("VIDEOMAE_B_K400", "K400_VIDEOS", "K400_VAL_LIST"):
        monkeypatch.delenv(var, raising=False)
    problems = [str(p) for p in validate_suite(os.path.join(REPO, "suites", "k400_vit_b.yaml"))]
    ckpt = [p for p in problems if "'VIDEOMAE_B_K400' is not set" in p]
    assert len(ckpt) == 1 and "it must point to the fine-tuned VideoMAE ViT-B/16 K400 checkpoint" in ckpt[0]
    assert any("'K400_VAL_LIST' is not set" in p and "validate.csv" in p for p in problems)


def test_every_fine_tune_of_the_quickstart_ships_with_the_repository():
    from harness.training import SHIPPED, is_complete

    cells = load_suite(PATH).cells()
    for cell in cells:  # scripts/quickstart.sh never trains: every fine-tune it needs ships, found by its key
        ft = cell.finetune_config()
        assert ft is None or is_complete(os.path.join(SHIPPED, ft.key())), cell.label
    assert sum(c.finetune_config() is not None for c in cells) == 8


def test_fine_tune_keys_leave_out_inference_only_knobs():
    import dataclasses

    ft = next(f for f in load_suite(PATH).finetunes() if f.method["name"] == "haltingvt")
    def with_params(**change):
        return dataclasses.replace(ft, method={**ft.method, "params": {**ft.method["params"], **change}})
    assert with_params(mode="varlen", halted_keys="drop").key() == ft.key()  # cannot change the weights
    assert with_params(ponder_weight=0.3).key() != ft.key()
