"""Train the quickstart backbone on the synthetic motion dataset (dense, from scratch, on CPU).

    python -m harness train                                  # checkpoints/synthetic_vit_d8.pth
    python -m harness train --backbone synthetic_vit_tiny    # checkpoints/synthetic_vit_tiny.pth

Recipe (tuned on 2 CPU cores, see the README): AdamW lr 3e-4, weight decay 0.05, batch 16, 1 epoch
linear warm-up then cosine, label smoothing 0.1; clips cached in RAM as uint8; augmentation by
horizontal/vertical flips and time reversal with the labels they turn into each other remapped.
Deterministic for a given seed and thread count. The checkpoint is written in the official VideoMAE
fine-tuned layout ({'module': state_dict}), with a JSON sidecar describing how it was made.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import typing as tp

import torch
import torch.nn.functional as F

# presets this trainer makes (same data, same recipe)
BACKBONES = ("synthetic_vit_tiny", "synthetic_vit_d8", "synthetic_timesformer_tiny")


@dataclasses.dataclass
class TrainConfig:
    out: tp.Optional[str] = None  # where the checkpoint goes (None: checkpoints/<backbone>.pth)
    backbone: str = "synthetic_vit_d8"  # one of BACKBONES (the quickstart's: synthetic_vit_d8)
    epochs: int = 50  # passes over the training split
    num_train: int = 4000  # training clips generated
    num_val: int = 600  # validation clips generated
    data_seed: int = 0  # synthetic dataset seed
    seed: int = 0  # init / shuffling / augmentation seed
    batch_size: int = 16  # clips per step
    lr: float = 3e-4  # peak AdamW learning rate
    weight_decay: float = 0.05  # AdamW weight decay (not on biases/norms)
    warmup_epochs: float = 1.0  # linear warm-up length
    label_smoothing: float = 0.1  # cross-entropy label smoothing
    threads: int = 2  # torch CPU threads (results are deterministic per thread count)
    init: tp.Optional[str] = None  # divided-attention backbones: start from this joint model's checkpoint (TimeSformer's recipe)

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise ValueError(f"train --backbone: {self.backbone!r} is not one of {', '.join(BACKBONES)}")
        if self.out is None:
            self.out = os.path.join("checkpoints", f"{self.backbone}.pth")
        if self.init is not None and self.backbone not in INIT_FROM:
            raise ValueError(f"train --init: only {', '.join(INIT_FROM)} start from a joint model")


# a divided-attention backbone and the joint backbone of the same dims it can start from
INIT_FROM = {"synthetic_timesformer_tiny": "synthetic_vit_tiny"}


def init_divided_from_joint(model, joint) -> None:
    """TimeSformer's initialisation from a ViT (Bertasius et al.; facebookresearch/TimeSformer
    ``load_pretrained``), here from a joint space-time model of the same dims: patch embedding, spatial
    attention, MLP and norms copied (VideoMAE's q/v biases become the qkv bias with a zero k part), the
    temporal attention and its norm copied from the spatial ones, ``temporal_fc`` zero (so the copy starts as
    an identity residual); positions from the joint model's table (the spatial one from the first time
    slice, the temporal embedding from the first patch of each slice, minus that patch's time-0 value);
    the final norm and head from ``fc_norm`` and ``head``; the CLS token zero."""
    t, h, w = model.cfg.grid
    with torch.no_grad():
        model.patch_embed.load_state_dict(joint.patch_embed.state_dict())
        for block, jblock in zip(model.blocks, joint.blocks):
            for name in ("norm1", "norm2", "mlp"):
                getattr(block, name).load_state_dict(getattr(jblock, name).state_dict())
            block.norm_t.load_state_dict(jblock.norm1.state_dict())
            for attn in (block.attn, block.attn_t):
                attn.qkv.weight.copy_(jblock.attn.qkv.weight)
                if attn.qkv.bias is not None:
                    attn.qkv.bias.copy_(torch.cat((jblock.attn.q_bias, torch.zeros_like(jblock.attn.q_bias),
                                                   jblock.attn.v_bias)))
                attn.proj.load_state_dict(jblock.attn.proj.state_dict())
            block.temporal_fc.weight.zero_()
            block.temporal_fc.bias.zero_()
        table = joint.pos_embed.reshape(t, h * w, -1)
        model.pos_embed[:, 1:].copy_(table[0])
        model.time_embed.copy_((table[:, 0] - table[0, 0])[None])
        model.norm.load_state_dict(joint.fc_norm.state_dict())
        model.head.load_state_dict(joint.head.state_dict())


def _augmenters(dataset):
    """Batch-level flips: the dataset's label-safe per-clip flips, shifted by the batch dimension."""
    return [(dim + 1, torch.tensor(table)) for dim, table in dataset.train_flips()]


def augment(clips: torch.Tensor, labels: torch.Tensor, augmenters, gen: torch.Generator):
    for dim, table in augmenters:
        flip = torch.rand(len(labels), generator=gen) < 0.5
        if flip.any():
            clips = clips.clone()
            clips[flip] = clips[flip].flip(dim)
            labels = torch.where(flip, table[labels], labels)
    return clips, labels


def to_input(clips_uint8: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 [B, T, H, W, 3] -> normalised float [B, 3, T, H, W]."""
    from harness.training.data import to_model_input

    return to_model_input(clips_uint8, mean, std)


def _lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return 0.5 * peak * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def evaluate(model, clips, labels, mean, std, batch_size: int = 64) -> float:
    model.eval()
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(labels), batch_size):
            logits = model(to_input(clips[i:i + batch_size], mean, std))
            correct += (logits.argmax(-1) == labels[i:i + batch_size]).sum().item()
    return correct / len(labels)


def train(cfg: TrainConfig) -> dict:
    from tqdm import tqdm

    from harness.build import build_model
    from harness.data.datasets import SyntheticMotionDataset
    from harness.data.synthetic import CLASSES
    from harness.data.video_dataset import load_clips_uint8

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    data = {split: SyntheticMotionDataset(split=split, num_train=cfg.num_train, num_val=cfg.num_val,
                                          seed=cfg.data_seed) for split in ("train", "val")}
    mean, std = data["val"].mean, data["val"].std
    model = build_model(cfg.backbone)
    if cfg.init:
        init_divided_from_joint(model, build_model(INIT_FROM[cfg.backbone], checkpoint=cfg.init))
    side, frames = model.cfg.img_size, model.cfg.num_frames
    train_x, train_y = load_clips_uint8(data["train"].items(), frames, side, desc="decode train")
    val_x, val_y = load_clips_uint8(data["val"].items(), frames, side, desc="decode val")

    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    steps_per_epoch = len(train_y) // cfg.batch_size
    total, warmup = steps_per_epoch * cfg.epochs, int(steps_per_epoch * cfg.warmup_epochs)
    gen = torch.Generator().manual_seed(cfg.seed)
    augmenters = _augmenters(data["train"])
    history, step, t0 = [], 0, time.time()
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(train_y), generator=gen)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False)
        for b in bar:
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            clips, labels = augment(train_x[idx], train_y[idx], augmenters, gen)
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, total, warmup, cfg.lr)
            loss = F.cross_entropy(model(to_input(clips, mean, std)), labels,
                                   label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            bar.set_postfix(loss=f"{loss.item():.3f}")
        top1 = evaluate(model, val_x, val_y, mean, std)
        history.append({"epoch": epoch + 1, "val_top1": top1, "elapsed_s": time.time() - t0})
        print(f"epoch {epoch + 1}/{cfg.epochs}: loss {loss.item():.3f}  val top-1 {top1:.3f}  "
              f"({time.time() - t0:.0f} s)", flush=True)

    os.makedirs(os.path.dirname(os.path.abspath(cfg.out)), exist_ok=True)
    tmp = f"{cfg.out}.{os.getpid()}.tmp"  # written whole, then renamed: an interrupted save leaves the old file
    torch.save({"module": model.state_dict()}, tmp)
    os.replace(tmp, cfg.out)
    meta = {"backbone": cfg.backbone, "dims": dataclasses.asdict(model.cfg), "train": dataclasses.asdict(cfg),
            "classes": list(CLASSES), "history": history, "val_top1": history[-1]["val_top1"],
            "train_wall_s": time.time() - t0, "torch": torch.__version__,
            "command": f"python -m harness train --backbone {cfg.backbone} --out {cfg.out} --epochs {cfg.epochs} "
                       f"--seed {cfg.seed} --threads {cfg.threads}" + (f" --init {cfg.init}" if cfg.init else "")}
    with open(os.path.splitext(cfg.out)[0] + ".json", "w") as f:
        json.dump(meta, f, indent=2)
    return meta
