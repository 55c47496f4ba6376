"""The quickstart training command: official checkpoint layout, sidecar, determinism, augmentation labels."""
import json

import torch

import harness
from harness.data.synthetic import CLASSES
from harness.training.backbone import TrainConfig, _augmenters, augment, train


def _train(tmp_path, name):
    cfg = TrainConfig(out=str(tmp_path / f"{name}.pth"), backbone="synthetic_vit_tiny", epochs=1, num_train=24,
                      num_val=12, batch_size=8)
    return cfg, train(cfg)


def test_train_writes_a_loadable_official_checkpoint_deterministically(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path / "data"))
    cfg, meta = _train(tmp_path, "a")
    raw = torch.load(cfg.out, weights_only=True)
    assert set(raw) == {"module"}
    model = harness.build_model("synthetic_vit_tiny", checkpoint=cfg.out)
    assert model.checkpoint_layout == "videomae"
    sidecar = json.loads(open(cfg.out[:-4] + ".json").read())
    assert sidecar["history"][0]["epoch"] == 1 and 0 <= sidecar["val_top1"] <= 1
    cfg_b, _ = _train(tmp_path, "b")
    b = torch.load(cfg_b.out, weights_only=True)["module"]
    assert all(torch.equal(v, b[k]) for k, v in raw["module"].items())


def test_augmentations_remap_the_labels_they_change():
    from harness.data.datasets import SyntheticMotionDataset

    (w, hflip), (h, vflip), (t, reverse) = _augmenters(SyntheticMotionDataset())
    assert (w, h, t) == (3, 2, 1)  # W, H, T of a [B, T, H, W, 3] batch
    name = {i: c for i, c in enumerate(CLASSES)}
    assert name[int(hflip[CLASSES.index("move_right")])] == "move_left"
    assert name[int(vflip[CLASSES.index("circle_cw")])] == "circle_ccw"
    assert name[int(reverse[CLASSES.index("grow")])] == "shrink"
    assert name[int(reverse[CLASSES.index("blink")])] == "blink"
    clips = torch.arange(16 * 3 * 4, dtype=torch.uint8).view(16, 3, 2, 2, 1)
    labels = torch.tensor([CLASSES.index("move_right"), CLASSES.index("grow")] * 8)
    out, new = augment(clips, labels, [(1, reverse)], torch.Generator().manual_seed(0))
    flipped = [torch.equal(out[i], clips[i].flip(0)) for i in range(16)]
    assert 0 < sum(flipped) < 16
    for i in range(16):
        expected = reverse[labels[i]] if flipped[i] else labels[i]
        assert new[i] == expected
        assert flipped[i] or torch.equal(out[i], clips[i])
