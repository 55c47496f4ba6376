"""The STA pruner of ``harness.models.video_swin``: STA's scoring (``methods.sta.reducer.sta_stage``) on the
tokens of one Swin stage, at the steps ``methods.sta_swin.plan`` lays out (docs/sta_swin.md)."""
from __future__ import annotations

import typing as tp

import torch

from harness.models.video_swin import SwinPruner, VideoSwin
from methods.sta.reducer import sta_stage, sta_stage_macs
from methods.sta_swin import plan


class STASwinPruner(SwinPruner):
    def bind(self, cfg) -> None:
        super().bind(cfg)
        self.steps = {(st["stage"], st["block"]): st for st in plan(self.params, cfg)}

    def prune_after(self) -> tp.Dict[tp.Tuple[int, int], int]:
        return {k: st["tokens"] - st["groups"] * st["r"] for k, st in self.steps.items()}

    def select(self, stage: int, block: int, x: torch.Tensor, keys: torch.Tensor,
               kept: torch.Tensor, keep: int) -> torch.Tensor:
        step = self.steps[(stage, block)]
        # the kept tokens' grid positions ride along as STA's "source" rows, so the chosen rows say where
        # the survivors sit (exact in float32 below 2**24 positions)
        _, source = sta_stage(x, keys, step["r"], step["groups"], step["order"], kept.unsqueeze(-1).to(x.dtype))
        return source[..., 0].long()

    def overhead_macs(self, stage: int, block: int, tokens: int) -> int:
        step = self.steps.get((stage, block))
        if step is None:
            return 0
        return sta_stage_macs(tokens, step["r"], step["groups"], self.cfg.stage_dim(stage) // self.cfg.heads[stage])

    def describe(self) -> dict:
        return {"method": "STA on Video Swin (re-implementation)", "r1": self.params.r,
                "placement": self.params.placement, "after_block": self.params.after_block,
                "steps": [dict(st, stage=st["stage"] + 1) for st in self.steps.values()],
                "removed_tokens": "skip the rest of their stage, rejoin at patch merging"}


def build(cfg, params) -> VideoSwin:
    """``methods.sta_swin``'s Video Swin entry point."""
    return VideoSwin(cfg, STASwinPruner(params))
