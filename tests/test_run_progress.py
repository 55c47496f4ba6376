"""Progress a person can trust (issue 17 item 3): fine-tuning reports optimiser steps done / total with an
ETA, and the closing line separates training time from start-up."""
import io
import json
import os
import re

import yaml
from tqdm import tqdm

from harness.run import local
from harness.suite import load_suite

CKPT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "checkpoints", "synthetic_vit_tiny.pth"))
TRAIN = {"name": "synthetic_motion", "root": "data", "num_train": 16, "num_val": 8, "split": "train"}


def test_finetune_progress_counts_steps_with_an_eta(tmp_path, monkeypatch):
    suite = {"name": "ft", "backbones": [{"name": "synthetic_vit_tiny", "checkpoint": CKPT}],
             "datasets": [{**TRAIN, "split": "val"}], "methods": [{"name": "tome", "finetune": "t"}],
             "finetunes": [{"name": "t", "method": {"name": "tome", "r": 8}, "dataset": TRAIN,
                            "recipe": {"epochs": 2, "batch_size": 8, "lr": 1e-5}, "threads": 2}],
             "eval": {"batch_size": 4, "num_workers": 0}}
    path = tmp_path / "ft.yaml"
    path.write_text(yaml.safe_dump(suite))
    seen = []
    real_replace = os.replace

    def replace(src, dst):  # every progress report the worker writes
        real_replace(src, dst)
        if "progress-finetune" in str(dst):
            seen.append(json.loads(open(dst).read()))

    monkeypatch.setattr(local, "PROGRESS_EVERY_S", 0.0)
    monkeypatch.setattr(os, "replace", replace)
    out = io.StringIO()
    results = local.run_finetunes(load_suite(str(path)), executor="debug", store_root=str(tmp_path / "r"), out=out)
    (meta,) = results.values()
    assert meta["steps"] == 4  # 16 videos / batch 8 x 2 epochs
    assert [p["done"] for p in seen] == [0, 1, 2, 3, 4] and {p["total"] for p in seen} == {4}
    assert seen[0]["eta_s"] is None and all(p["eta_s"] >= 0 for p in seen[1:]) and seen[-1]["eta_s"] == 0
    line = out.getvalue().splitlines()[-1]
    train, wall = map(float, re.search(r"done in (\d+) s of training and validation \((\d+) s here with start-up\)",
                                       line).groups())
    assert train <= wall + 1


def test_finetune_bar_shows_steps_and_eta(tmp_path):
    progress = tmp_path / "p.json"
    progress.write_text(json.dumps({"stage": "train", "done": 30, "total": 120, "eta_s": 185.0}))
    out = io.StringIO()
    bar = tqdm(total=None, desc="fine-tune x (starting)", file=out, bar_format=local.FINETUNE_BAR)
    local._show_finetune(bar, "fine-tune x", str(progress))
    text = str(bar)
    bar.close()
    assert "30/120 steps" in text and "ETA 03:05" in text and " 25%" in text and "starting" not in text
    assert local._clock(3725) == "1:02:05"
