"""Fine-tuning stage: recipe resolution, schedule, training clips, checkpoints and exact resume."""
import json
import os

import numpy as np
import pytest
import torch

from harness.training import FineTuneConfig, finetune
from harness.training.data import TrainClips, collate_clips, random_resized_crop, train_indices
from harness.training import LAST, LOG, META, MODEL
from harness.training.schedule import lr_at, param_groups

CKPT = os.path.join(os.path.dirname(__file__), "..", "checkpoints", "synthetic_vit_tiny.pth")


def _cfg(**over):
    base = dict(backbone={"name": "synthetic_vit_tiny", "checkpoint": CKPT},
                method={"name": "tome", "params": {"r": 8}},
                dataset={"name": "synthetic_motion", "split": "train"},
                recipe={"epochs": 2, "batch_size": 8, "lr": 1e-4, "warmup_epochs": 0.5}, limit=24, threads=2)
    base.update(over)
    return FineTuneConfig(**base)


def test_recipe_layers_method_defaults_under_suite_overrides():
    cfg = _cfg(method={"name": "tome", "params": {"r": 8}}, recipe={"lr": 3e-5})
    recipe = cfg.resolved_recipe()
    assert recipe["lr"] == 3e-5 and recipe["optimizer"] == "adamw"
    with pytest.raises(ValueError, match="unknown recipe key"):
        _cfg(recipe={"learning_rate": 1}).resolved_recipe()


def test_key_changes_with_anything_that_changes_weights():
    assert _cfg().key() == _cfg().key()
    assert _cfg().key() != _cfg(seed=1).key()
    assert _cfg().key() != _cfg(recipe={"epochs": 3, "batch_size": 8, "lr": 1e-4, "warmup_epochs": 0.5}).key()
    assert _cfg().key() != _cfg(method={"name": "tome", "params": {"r": 4}}).key()


def test_lr_warms_up_linearly_from_start_factor_then_cosine_to_zero():
    recipe = {"lr": 1.0, "epochs": 10, "warmup_epochs": 2, "warmup_start_factor": 0.1, "schedule": "cosine"}
    lrs = [lr_at(s, 10, recipe) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1 + 0.9 / 20)
    assert lrs[19] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[19:], lrs[20:]))
    assert lrs[-1] < 1e-3


def test_no_decay_for_biases_norms_and_named_parameters():
    lin = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    lin.register_parameter("pos_embed", torch.nn.Parameter(torch.zeros(1, 3, 4)))
    decay, plain = param_groups(lin, 0.1, ["pos_embed"])
    assert len(decay["params"]) == 1 and len(plain["params"]) == 4


def test_train_indices_dense_random_offset_within_video_and_uniform_one_per_segment():
    rng = np.random.default_rng(0)
    offsets = {int(train_indices(100, "dense", 8, 4, rng)[0]) for _ in range(200)}
    assert min(offsets) == 0 and max(offsets) == 100 - 29
    inds = train_indices(32, "uniform", 8, 1, rng)
    assert ((inds // 4) == np.arange(8)).all()
    short = train_indices(10, "dense", 8, 4, rng)
    assert (short < 10).all()


def test_random_resized_crop_same_window_on_every_frame():
    frames = torch.arange(64 * 48, dtype=torch.int64).reshape(1, 64, 48, 1).remainder(251).to(torch.uint8)
    frames = frames.expand(4, 64, 48, 3).contiguous()
    out = random_resized_crop(frames, 32, (0.3, 1.0), np.random.default_rng(1))
    assert out.shape == (4, 32, 32, 3) and out.dtype == torch.uint8
    assert torch.equal(out[0], out[3])


def test_training_clips_reproducible_per_epoch_and_flip_labels_swapped():
    from harness.data.datasets import SyntheticMotionDataset

    ds = SyntheticMotionDataset(split="train")
    items = ds.items()[:6]
    data = TrainClips(ds, items, seed=0, augment={"scale": [0.5, 1.0], "flip": True}, cache=True)
    first = collate_clips([data[i] for i in range(6)])
    again = collate_clips([data[i] for i in range(6)])
    assert torch.equal(first["clips"], again["clips"]) and torch.equal(first["labels"], again["labels"])
    data.set_epoch(1)
    other = collate_clips([data[i] for i in range(6)])
    assert not torch.equal(first["clips"], other["clips"])
    # over many epochs a flipped "move_right" clip is relabelled "move_left" (and never anything else)
    right = next(i for i, it in enumerate(items) if it.label == 0)
    seen = set()
    for epoch in range(12):
        data.set_epoch(epoch)
        seen.add(data[right][0][1])
    assert seen == {0, 1}


def test_method_expansion_runs_before_augmentation_and_interleaves():
    from harness.data.datasets import SyntheticMotionDataset

    def twice(clips, labels, gen):
        return torch.cat([clips, clips.flip(1)]), labels.repeat(2), {"motion_labels": torch.tensor([1, 0])}

    ds = SyntheticMotionDataset(split="train")
    data = TrainClips(ds, ds.items()[:2], seed=0, augment={"flip": False, "scale": [1.0, 1.0]}, expand=twice)
    batch = collate_clips([data[0], data[1]])
    assert batch["clips"].shape[0] == 4
    assert batch["motion_labels"].tolist() == [1, 0, 1, 0]


def test_checkpoint_every_epoch_log_and_final_weights(tmp_path):
    meta = finetune(_cfg(), str(tmp_path), progress=False)
    assert [h["epoch"] for h in meta["history"]] == [1, 2]
    assert len((tmp_path / LOG).read_text().splitlines()) == 2
    state = torch.load(tmp_path / MODEL, weights_only=True)
    assert set(state) == {"module"}
    assert json.loads((tmp_path / META).read_text())["key"] == _cfg().key()
    assert finetune(_cfg(), str(tmp_path), progress=False)["history"] == meta["history"]  # finished: no rerun


def _stop_after(n: int):
    def on_step(steps_this_call: int, step: int) -> None:
        if steps_this_call >= n:
            raise KeyboardInterrupt(f"stopped after {steps_this_call} steps")
    return on_step


def test_interrupted_run_resumes_to_bit_identical_weights(tmp_path):
    straight = tmp_path / "straight"
    finetune(_cfg(), str(straight), progress=False)
    broken = tmp_path / "broken"
    with pytest.raises(KeyboardInterrupt):
        finetune(_cfg(), str(broken), progress=False, on_step=_stop_after(4))  # epoch 1 done (3 steps), 1 into epoch 2
    assert (broken / LAST).exists() and not (broken / MODEL).exists()
    assert torch.load(broken / LAST, weights_only=True)["epoch"] == 1
    finetune(_cfg(), str(broken), progress=False)
    a = torch.load(straight / MODEL, weights_only=True)["module"]
    b = torch.load(broken / MODEL, weights_only=True)["module"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert len((broken / LOG).read_text().splitlines()) == 2


def test_resume_refuses_a_folder_of_another_run(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        finetune(_cfg(), str(tmp_path), progress=False, on_step=_stop_after(4))
    with pytest.raises(RuntimeError, match="belongs to run"):
        finetune(_cfg(seed=5), str(tmp_path), progress=False)


def test_cosine_period_can_outlast_the_run_as_haltingvt_configures_it():
    recipe = {"lr": 1.0, "epochs": 20, "warmup_epochs": 5, "warmup_start_factor": 0.1, "schedule": "cosine",
              "cosine_t_max_epochs": 20}
    last = lr_at(20 * 4 - 1, 4, recipe)
    assert last == pytest.approx(0.5 * (1 + np.cos(np.pi * (59 / 80))))  # ~0.15, not 0


def test_a_shipped_run_is_adopted_by_its_key_only(tmp_path):
    from harness.training import adopt_shipped, is_complete, run_dir

    shipped, store = tmp_path / "shipped", tmp_path / "store"
    finetune(_cfg(), str(shipped / _cfg().key()), progress=False)
    assert adopt_shipped(str(store), _cfg().key(), shipped=str(shipped))
    copied = run_dir(str(store), _cfg().key())
    assert is_complete(copied) and not (tmp_path / "store" / "finetunes" / _cfg().key() / LAST).exists()
    a = torch.load(shipped / _cfg().key() / MODEL, weights_only=True)["module"]
    b = torch.load(os.path.join(copied, MODEL), weights_only=True)["module"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = _cfg(seed=5).key()  # another recipe/seed is another key: never adopted
    assert other != _cfg().key() and not adopt_shipped(str(store), other, shipped=str(shipped))
