"""STA: Semantic-aware Temporal Accumulation pruning (Ding et al., ICCV'23; Mark12Ding/STA @ faf10be).

Registration only (no torch); the pruning functions and the model wiring are in ``reducer.py``.
"""
import dataclasses
import typing as tp

from methods.registry import register_method

NUM_SLICES = 8  # temporal token slices STA is written for (stage 1 uses one group per slice)
STAGE_GROUPS = (8, 4, 2)  # temporal groups at the three stages


def stage_layers(depth: int) -> tp.List[tp.Tuple[int, int]]:
    """``(layer, stage)`` pairs: stages after blocks 0, depth//3, 2*depth//3.

    First match wins, as in the official ``merge`` (for depth < 3 some stages coincide and are skipped).
    """
    pairs: tp.List[tp.Tuple[int, int]] = []
    for stage, layer in enumerate((0, depth // 3, 2 * depth // 3)):
        if all(layer != seen for seen, _ in pairs):
            pairs.append((layer, stage))
    return pairs


def stage_token_counts(tokens_per_slice: int, r: int, depth: int = 12) -> tp.List[int]:
    """Tokens of one view after each applied stage: every group of the stage loses ``r`` tokens."""
    counts, total = [], NUM_SLICES * tokens_per_slice
    if r <= 0:
        return counts
    for _, stage in stage_layers(depth):
        groups = STAGE_GROUPS[stage]
        total = total - groups * r
        counts.append(total)
    return counts


@register_method(
    "sta", implementation="methods.sta.reducer:STAReducer", kind="prune", training_free=True,
    needs_attention_probs=False, adaptive_token_count=False,
    summary="temporal-accumulation redundancy x (1 - activation) pruning in 8/4/2 temporal groups "
            "after blocks 0, L/3, 2L/3",
    reference="Ding et al., Prune Spatio-temporal Tokens by Semantic-aware Temporal Accumulation, "
              "ICCV 2023; Mark12Ding/STA",
    examples=({"r": 2}, {"r": 5}),
    supports=("rope3d", "attentive_pool"),  # V-JEPA 2: kept tokens keep their own rotary positions
    refuses={"cls_token": "STA (Mark12Ding/STA) is defined on VideoMAE's patch tokens: its temporal groups and "
                          "scores have no class-token rule",
             "divided_attention": "its temporal groups keep a different number of tokens per frame",
             "windowed_attention": "use sta_swin, STA on Video Swin (re-implementation): docs/sta_swin.md",
             "hierarchical": "use sta_swin, STA on Video Swin (re-implementation): docs/sta_swin.md"},
)
@dataclasses.dataclass
class STAParams:
    r: int = 0  # tokens pruned per temporal group at each of the 3 stages (0 = dense)

    def check(self) -> tp.List[str]:
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 0:
            return [f"r must be a non-negative int, got {self.r!r}"]
        return []

    def check_backbone(self, cfg: tp.Any) -> tp.List[str]:
        """Problems of running STA on backbone ``cfg`` (a ``VideoViTConfig``)."""
        slices = cfg.num_frames // cfg.tubelet_size
        if slices != NUM_SLICES:
            return [f"STA needs {NUM_SLICES} temporal token slices (16 frames, tubelet 2); got "
                    f"{slices} (num_frames {cfg.num_frames} // tubelet_size {cfg.tubelet_size}) "
                    f"— supported: num_frames // tubelet_size == {NUM_SLICES}, e.g. 16 frames with "
                    f"tubelet 2 or 8 frames with tubelet 1"]
        if self.check() or self.r == 0:
            return []
        per_slice = (cfg.img_size // cfg.patch_size) ** 2
        bad = _first_empty_stage(per_slice, self.r, cfg.depth)
        if bad is None:
            return []
        layer, stage, group = bad
        r_max = max((r for r in range(per_slice) if _first_empty_stage(per_slice, r, cfg.depth) is None),
                    default=0)
        return [f"r={self.r} is too large for {per_slice} tokens per slice: stage {stage + 1} (after block "
                f"{layer}) has {STAGE_GROUPS[stage]} groups of {group} tokens and must keep at least one "
                f"per group; the largest valid r is {r_max}"]


def _first_empty_stage(tokens_per_slice: int, r: int,
                       depth: int) -> tp.Optional[tp.Tuple[int, int, int]]:
    """``(layer, stage, group size)`` of the first stage whose groups would keep no token, else None."""
    total = NUM_SLICES * tokens_per_slice
    for layer, stage in stage_layers(depth):
        groups = STAGE_GROUPS[stage]
        group = total // groups
        if r >= group:
            return layer, stage, group
        total -= groups * r
    return None
