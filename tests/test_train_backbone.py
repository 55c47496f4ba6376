"""The quickstart backbones' trainer (``python -m harness train``): which presets it makes, what it writes."""
import dataclasses
import json
import os

import pytest
import torch

from harness.cli import main
from harness.models.presets import resolve_config
from harness.training.backbone import BACKBONES, TrainConfig, train


def test_quickstart_backbones_share_everything_but_depth_and_family():
    tiny, d8, divided = (resolve_config(name) for name in BACKBONES)
    assert (tiny.depth, d8.depth) == (4, 8)
    assert dataclasses.replace(tiny, depth=8) == d8
    assert dataclasses.replace(tiny, family="timesformer") == divided
    assert divided.layout.features == {"cls_token", "divided_attention"}


def test_train_rejects_another_backbone_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path / "data"))
    with pytest.raises(ValueError, match="not one of synthetic_vit_tiny, synthetic_vit_d8"):
        TrainConfig(out=str(tmp_path / "x.pth"), backbone="videomae_vit_b16")
    assert TrainConfig().out == os.path.join("checkpoints", "synthetic_vit_d8.pth")  # derived from the backbone
    assert TrainConfig(backbone="synthetic_vit_tiny").out == os.path.join("checkpoints", "synthetic_vit_tiny.pth")
    assert main(["train", "--backbone", "synthetic_vit_tny"]) == 2
    assert "train --backbone: 'synthetic_vit_tny' is not one of" in capsys.readouterr().err
    assert not (tmp_path / "data").exists() and not (tmp_path / "x.pth").exists()


def test_train_writes_the_checkpoint_and_how_it_was_made(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path / "data"))
    out = tmp_path / "d8.pth"
    meta = train(TrainConfig(out=str(out), backbone="synthetic_vit_d8", epochs=1, num_train=32, num_val=16,
                             batch_size=16, threads=1))
    state = torch.load(out, weights_only=True)["module"]
    assert sum(k.endswith("mlp.fc1.weight") for k in state) == 8
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["backbone"] == meta["backbone"] == "synthetic_vit_d8"
    assert sidecar["dims"]["depth"] == 8 and len(sidecar["history"]) == 1
    assert "--backbone synthetic_vit_d8" in sidecar["command"]
