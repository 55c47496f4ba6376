"""``random_drop`` on Video Swin: random tokens removed where, and as many as, the matched method's Video
Swin pruner removes them (seeded positions, the same for every video)."""
from __future__ import annotations

import typing as tp

import torch

from harness.models.video_swin import SwinPruner, VideoSwin, kept_counts
from harness.registry import load_object


class RandomSwinPruner(SwinPruner):
    def bind(self, cfg) -> None:
        super().bind(cfg)
        spec = _matched_spec(self.params)
        with torch.device("meta"):
            matched = load_object(spec.video_swin)(cfg, self.params.matched_params())
        self.plan = dict(matched.pruner.prune_after())
        counts = kept_counts(cfg, matched.pruner)
        self.rows = {}  # (stage, block) -> rows of the kept list to keep, drawn once (no randomness in forward)
        for (s, b), keep in self.plan.items():
            t, h, w = cfg.stage_grid(s)
            n = t * h * w if b < 0 else counts[s][b]  # block -1: the stage's entry (the whole merged grid)
            g = torch.Generator().manual_seed(int(self.params.seed) * 1_000_003 + s * 1009 + b + 1)
            self.rows[(s, b)] = torch.randperm(n, generator=g, device="cpu")[:keep].sort().values

    def prune_after(self) -> tp.Dict[tp.Tuple[int, int], int]:
        return self.plan

    def select(self, stage: int, block: int, x: torch.Tensor, keys: torch.Tensor,
               kept: torch.Tensor, keep: int) -> torch.Tensor:
        return kept.index_select(1, self.rows[(stage, block)].to(kept.device))

    def carry(self, stage: int, x: torch.Tensor, children: torch.Tensor, keep: int) -> torch.Tensor:
        return self.rows[(stage, -1)].to(x.device).expand(x.shape[0], -1)

    def describe(self) -> dict:
        return {"match": self.params.match, "r": self.params.r, "seed": self.params.seed,
                "removed_tokens": "random positions at the matched method's counts (stage entries too)"}


def _matched_spec(params):
    import methods

    return methods.get_method(params.match)


def build_drop(cfg, params) -> VideoSwin:
    """``random_drop``'s Video Swin entry point."""
    return VideoSwin(cfg, RandomSwinPruner(params))
