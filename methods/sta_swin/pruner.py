"""The STA pruner of ``harness.models.video_swin``: STA's scoring (``methods.sta.reducer``'s pure functions) on
the tokens of a Swin stage, at the steps ``methods.sta_swin.plan`` lays out (docs/sta_swin.md)."""
from __future__ import annotations

import typing as tp

import torch

from harness.models.video_swin import SwinPruner, VideoSwin
from methods.sta.reducer import activation_importance, sta_stage, sta_stage_macs
from methods.sta_swin import plan


def window_order(grid: tp.Sequence[int], window: tp.Sequence[int]) -> torch.Tensor:
    """[N] flat t-h-w indices listed window by window (windows in t-h-w order), inside a window temporal
    slice by slice, inside a slice row-major: STA's temporal groups of a window are then contiguous."""
    T, H, W = grid
    wt, wh, ww = window
    index = torch.arange(T * H * W, device="cpu").view(T // wt, wt, H // wh, wh, W // ww, ww)
    return index.permute(0, 2, 4, 1, 3, 5).reshape(-1)


class STASwinPruner(SwinPruner):
    def bind(self, cfg) -> None:
        super().bind(cfg)
        self.steps = {(st["stage"], st["block"]): st for st in plan(self.params, cfg)}
        self.windows = self.params.placement == "windows"
        self.order: tp.Dict[int, torch.Tensor] = {}
        self.rank: tp.Dict[int, torch.Tensor] = {}
        if self.windows:
            for (s, _), st in self.steps.items():
                if s not in self.order:
                    order = window_order(cfg.stage_grid(s), st["window"])
                    self.order[s] = order
                    self.rank[s] = torch.empty_like(order).scatter_(0, order, torch.arange(order.numel()))

    def prune_after(self) -> tp.Dict[tp.Tuple[int, int], int]:
        if self.windows:
            return {k: st["keep"] for k, st in self.steps.items()}
        return {k: st["tokens"] - st["groups"] * st["r"] for k, st in self.steps.items()}

    def _num_windows(self, stage: int) -> int:
        n, window = 1, self.steps_window(stage)
        for g, w in zip(self.cfg.stage_grid(stage), window):
            n *= g // w
        return n

    def steps_window(self, stage: int) -> tp.Sequence[int]:
        return next(st["window"] for (s, _), st in self.steps.items() if s == stage)

    def select(self, stage: int, block: int, x: torch.Tensor, keys: torch.Tensor,
               kept: torch.Tensor, keep: int) -> torch.Tensor:
        step = self.steps[(stage, block)]
        source = kept.unsqueeze(-1).to(x.dtype)  # grid positions ride along as STA's "source" rows
        if not self.windows:
            _, source = sta_stage(x, keys, step["r"], step["groups"], step["order"], source)
            return source[..., 0].long()
        # window by window: order the kept tokens by (window, slice, position); every window holds as many
        B, n, C = x.shape
        windows = self._num_windows(stage)
        by_window = self.rank[stage].to(kept.device)[kept].argsort(dim=1)
        x, keys, source = (v.gather(1, by_window.unsqueeze(-1).expand(-1, -1, v.shape[-1])) for v in (x, keys, source))
        per = n // windows
        _, source = sta_stage(x.reshape(B * windows, per, C), keys.reshape(B * windows, per, -1), step["r"],
                              step["groups"], step["order"], source.reshape(B * windows, per, 1))
        return source.reshape(B, -1).long()

    def carry(self, stage: int, x: torch.Tensor, children: torch.Tensor, keep: int) -> torch.Tensor:
        """Per window temporal slice, the tokens with most kept children (STA's activation term, min-max
        normalised in the slice, breaks ties): removed regions stay removed after patch merging."""
        step = self.steps[(stage, -1)]
        wt, wh, ww = step["window"]
        B, N, C = x.shape
        order = self.order[stage].to(x.device)
        slices = N // (wh * ww)
        xs = x[:, order].reshape(B, slices, wh * ww, C)
        score = children[:, order].reshape(B, slices, wh * ww).to(x.dtype) + 0.5 * activation_importance(xs)
        per_slice = keep // slices
        chosen = score.topk(per_slice, dim=-1).indices  # [B, slices, per_slice]
        base = torch.arange(slices, device=x.device).view(1, -1, 1) * (wh * ww)
        return order[(chosen + base).reshape(B, -1)]

    def overhead_macs(self, stage: int, block: int, tokens: int) -> int:
        step = self.steps.get((stage, block))
        if step is None or step.get("kind") == "carry":
            return 0
        head_dim = self.cfg.stage_dim(stage) // self.cfg.heads[stage]
        if not self.windows:
            return sta_stage_macs(tokens, step["r"], step["groups"], head_dim)
        windows = self._num_windows(stage)
        return windows * sta_stage_macs(tokens // windows, step["r"], step["groups"], head_dim)

    def describe(self) -> dict:
        return {"method": "STA on Video Swin (re-implementation)", "r1": self.params.r,
                "placement": self.params.placement,
                "steps": [dict(st, stage=st["stage"] + 1) for st in self.steps.values()],
                "removed_tokens": "stay removed across patch merging (carried by their 2x2 children)"
                if self.windows else "skip the rest of their stage, rejoin at patch merging"}


def build(cfg, params) -> VideoSwin:
    """``methods.sta_swin``'s Video Swin entry point."""
    return VideoSwin(cfg, STASwinPruner(params))
