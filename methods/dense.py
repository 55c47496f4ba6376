"""The unreduced model: every token through every block (the baseline of every leaderboard)."""
import dataclasses

from methods.registry import register_method


@register_method("dense", implementation="harness.models.reduction:TokenReducer", kind="none", examples=({},),
                 supports=("cls_token", "divided_attention", "rope3d", "attentive_pool", "windowed_attention",
                           "hierarchical"),
                 video_swin="harness.models.video_swin:build_dense",
                 summary="no token reduction (baseline)", reference="-")
@dataclasses.dataclass
class DenseParams:
    pass
