"""STA on Video Swin (re-implementation): Ding et al., ICCV'23 (arXiv 2308.04549), section on VideoSwin.

The paper applies STA to Video Swin but the official repository (Mark12Ding/STA) holds only the ViT
code (issue #2: the Video Swin code was never released). This method reuses the ViT implementation's
pure scoring functions (``methods.sta.reducer``: ``tome_drop``, ``accumulate``, ``activation_importance``,
``sta_stage``) and places them in the hierarchical, windowed model; every choice the paper leaves open
is a knob here and is documented in docs/sta_swin.md. Registration only (no torch); the pruner is in
``pruner.py``.
"""
import dataclasses
import typing as tp

from methods.registry import register_method

PLACEMENTS = ("every_stage", "stage3")
MAX_GROUPS = 16  # temporal groups of the first step (one per temporal slice at 32 frames / patch 2)


def _groups(frames: int, wanted: int) -> int:
    """The largest power of two <= ``wanted`` that divides the ``frames`` temporal slices."""
    g = 1
    while g * 2 <= wanted and frames % (g * 2) == 0:
        g *= 2
    return g


def plan(params: "STASwinParams", cfg: tp.Any) -> tp.List[tp.Dict[str, tp.Any]]:
    """The STA steps on Video Swin ``cfg``: one dict per step with ``stage``, ``block`` (0-based; the step
    runs after that block), ``groups``, ``order`` (visiting order), ``tokens`` (entering the step) and
    ``r`` (tokens removed per group). Torch-free: validation, GMACs and the pruner share it."""
    if params.r <= 0:
        return []
    t2, h2, w2 = cfg.stage_grid(min(1, cfg.num_stages - 1))
    fraction = params.r / (h2 * w2)  # r counts tokens per temporal slice of stage 2 (28 x 28 at 224 px)
    steps = []
    if params.placement == "every_stage":
        for s, depth in enumerate(cfg.depths):
            if s + 1 not in params.stages or params.after_block >= depth - 1:
                continue  # no block after the step in this stage: pruning would save nothing
            t, h, w = cfg.stage_grid(s)
            groups = _groups(t, MAX_GROUPS >> s)
            per_group = t * h * w // groups
            order = list(range(groups)) if len(steps) % 2 == 0 else list(reversed(range(groups)))
            steps.append({"stage": s, "block": params.after_block, "groups": groups, "order": order,
                          "tokens": t * h * w, "r": int(fraction * per_group)})
    else:  # stage3: the ViT rule (after blocks 0, d/3, 2d/3 with 8 / 4 / 2 groups) inside stage 3
        s = min(2, cfg.num_stages - 1)
        depth = cfg.depths[s]
        t, h, w = cfg.stage_grid(s)
        n, r = t * h * w, None
        seen = set()
        for i, (block, wanted) in enumerate(((0, 8), (depth // 3, 4), (2 * depth // 3, 2))):
            if block in seen or block >= depth - 1:
                continue
            seen.add(block)
            groups = _groups(t, wanted)
            if r is None:
                r = int(fraction * n // groups)
            order = list(range(groups)) if i != 1 else list(reversed(range(groups)))
            steps.append({"stage": s, "block": block, "groups": groups, "order": order, "tokens": n, "r": r})
            n -= groups * r
    return steps


@register_method(
    "sta_swin", implementation="harness.models.video_swin:SwinPruner", kind="prune", training_free=True,
    display_name="STA on Video Swin (re-implementation)",
    summary="STA's temporal-accumulation x (1 - activation) score in temporal groups, one step per Swin stage; "
            "removed tokens skip the rest of their stage and rejoin at patch merging",
    reference="Ding et al., Prune Spatio-temporal Tokens by Semantic-aware Temporal Accumulation, ICCV 2023 "
              "(Video Swin code unreleased: Mark12Ding/STA issue #2); docs/sta_swin.md",
    video_swin="methods.sta_swin.pruner:build", supports=("windowed_attention", "hierarchical"),
    examples=({"r": 8}, {"r": 16, "placement": "stage3"}),
)
@dataclasses.dataclass
class STASwinParams:
    r: int = 0  # the paper's r1: tokens removed per temporal slice of stage 2 (28x28 at 224 px), i.e. every
    #             step removes the fraction r / (stage-2 slice) of each of its temporal groups
    placement: str = "every_stage"  # "every_stage": one step per Swin stage | "stage3": the ViT's 3 steps in stage 3
    after_block: int = 0  # every_stage: the in-stage block after which each stage's step runs
    stages: tp.List[int] = dataclasses.field(default_factory=lambda: [2, 3, 4])  # every_stage: the Swin stages
    #     (1-based) that get a step; stage 1 is left out by default: its groups are so large (a 56x56 slice at
    #     224 px) that STA's transport matrices cost more than the pruning saves there

    def check(self) -> tp.List[str]:
        problems = []
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 0:
            problems.append(f"r must be a non-negative int, got {self.r!r}")
        if self.placement not in PLACEMENTS:
            problems.append(f"placement must be one of {PLACEMENTS}, got {self.placement!r}")
        if not isinstance(self.stages, (list, tuple)) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in self.stages):
            problems.append(f"stages must be a list of 1-based stage numbers, got {self.stages!r}")
        if isinstance(self.after_block, bool) or not isinstance(self.after_block, int) or self.after_block < 0:
            problems.append(f"after_block must be a non-negative int, got {self.after_block!r}")
        return problems

    def check_backbone(self, cfg: tp.Any) -> tp.List[str]:
        if getattr(cfg, "family", None) != "videoswin":
            return [f"sta_swin runs on Video Swin only (this backbone is {getattr(cfg, 'family', '?')!r}); "
                    "use method 'sta' on ViTs"]
        if self.check():
            return []
        problems = []
        _, h2, w2 = cfg.stage_grid(min(1, cfg.num_stages - 1))
        if self.r >= h2 * w2:
            problems.append(f"r={self.r} must be below the {h2 * w2} tokens of a stage-2 temporal slice")
        for step in plan(self, cfg):
            per_group = step["tokens"] // step["groups"]
            if step["r"] >= per_group:
                problems.append(f"r={self.r}: stage {step['stage'] + 1} after block {step['block']} would remove "
                                f"{step['r']} of the {per_group} tokens of each temporal group")
        return problems
