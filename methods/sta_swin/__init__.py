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

PLACEMENTS = ("windows", "every_stage", "stage3")
WINDOW_R_DIVISOR = 16  # windows: r1 / 16 tokens per window temporal slice (12 / 16 / 20 of 49 for r1 = 192 / 256 / 320)
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
    if params.placement == "windows":
        return window_plan(params, cfg)
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


def _num_windows(cfg: tp.Any, stage: int) -> int:
    window, _ = cfg.stage_window(stage)
    n = 1
    for g, w in zip(cfg.stage_grid(stage), window):
        n *= g // w
    return n


def window_plan(params: "STASwinParams", cfg: tp.Any) -> tp.List[tp.Dict[str, tp.Any]]:
    """``placement="windows"``: STA inside every (unshifted) window, the window's temporal slices being STA's
    groups, three steps with the ViT's 8 / 4 / 2 groups rule (G = Wt, Wt/2, Wt/4 groups per window, the same
    r per group at every step): after the first block of stage 1, after the first block of stage 3 and after
    the last block of stage 3. Tokens removed in one stage stay removed in the next ("carry" entries, block
    -1): its first block runs on as many tokens per window slice as the removed fraction so far leaves,
    chosen by how many of their 2x2 children were kept. Steps carry ``window`` (the clamped window),
    ``groups`` (per window), ``order``, ``tokens`` (entering, per view), ``r`` (per group) and ``removed``
    (the fraction of the stage's tokens removed after the step)."""
    r = params.r // WINDOW_R_DIVISOR
    last = cfg.num_stages - 1
    s3 = min(2, last)
    wanted = [(0, 0, 1, "forward"), (s3, 0, 2, "reverse"), (s3, cfg.depths[s3] - 1, 4, "forward")]
    steps, removed, seen = [], 0.0, set()
    for s in range(cfg.num_stages):
        window, _ = cfg.stage_window(s)
        t, h, w = cfg.stage_grid(s)
        per_slice = window[1] * window[2]
        n = t * h * w
        if removed and s > 0:  # carry into this stage
            n = t * (h * w // per_slice) * (per_slice - int(removed * per_slice + 1e-9))
            steps.append({"stage": s, "block": -1, "kind": "carry", "window": list(window), "tokens": t * h * w,
                          "keep": n, "removed": removed})
        for stage, block, divisor, direction in wanted:
            if stage != s or (stage, block) in seen:
                continue
            seen.add((stage, block))
            groups = max(1, window[0] // divisor)
            order = list(range(groups)) if direction == "forward" else list(reversed(range(groups)))
            windows = _num_windows(cfg, s)
            steps.append({"stage": s, "block": block, "kind": "sta", "window": list(window), "groups": groups,
                          "order": order, "tokens": n, "r": r, "keep": n - windows * groups * r})
            removed += groups * r / (window[0] * per_slice)
            n = n - windows * groups * r
    return steps


@register_method(
    "sta_swin", implementation="harness.models.video_swin:SwinPruner", kind="prune", training_free=True,
    display_name="STA on Video Swin (re-implementation)",
    summary="STA's temporal-accumulation x (1 - activation) score per window (its temporal slices are the "
            "groups), after s1b0, s3b0 and s3's last block; removed tokens stay removed across patch merging",
    reference="Ding et al., Prune Spatio-temporal Tokens by Semantic-aware Temporal Accumulation, ICCV 2023 "
              "(Video Swin code unreleased: Mark12Ding/STA issue #2); docs/sta_swin.md",
    video_swin="methods.sta_swin.pruner:build", supports=("windowed_attention", "hierarchical"), vit=False,
    examples=({"r": 16}, {"r": 8, "placement": "every_stage"}, {"r": 16, "placement": "stage3"}),
)
@dataclasses.dataclass
class STASwinParams:
    r: int = 0  # the paper's r1. windows: r1 / 16 tokens removed per window temporal slice (7x7) at the first
    #             step (docs/sta_swin.md); every_stage / stage3: every step removes the fraction r1 / (a stage-2
    #             temporal slice, 28x28 at 224 px) of each of its temporal groups
    placement: str = "windows"  # "windows": per window, after s1b0, s3b0 and s3's last block, removals carried
    #                              across patch merging | "every_stage": one step per Swin stage, removed tokens
    #                              rejoin at patch merging | "stage3": the ViT's 3 steps inside stage 3
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
        if self.placement == "windows":
            return self._window_problems(cfg)
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

    def _window_problems(self, cfg: tp.Any) -> tp.List[str]:
        problems = []
        if self.r % WINDOW_R_DIVISOR:
            problems.append(f"r={self.r}: placement 'windows' removes r / {WINDOW_R_DIVISOR} tokens per window "
                            f"slice, so r must be a multiple of {WINDOW_R_DIVISOR}")
        for s in range(cfg.num_stages):
            window, _ = cfg.stage_window(s)
            grid = cfg.stage_grid(s)
            if any(g % w for g, w in zip(grid, window)):
                problems.append(f"stage {s + 1}: the {grid} token grid is not a whole number of {window} windows "
                                "(placement 'windows' groups tokens by window)")
        if problems:
            return problems
        for step in plan(self, cfg):
            if step["kind"] == "sta":
                per_group = step["tokens"] // _num_windows(cfg, step["stage"]) // step["groups"]
                if step["r"] >= per_group:
                    problems.append(f"r={self.r}: stage {step['stage'] + 1} after block {step['block']} would remove "
                                    f"{step['r']} of the {per_group} tokens of each window's temporal group")
            elif step["keep"] <= 0:
                problems.append(f"r={self.r}: stage {step['stage'] + 1} would start with no token")
        return problems
