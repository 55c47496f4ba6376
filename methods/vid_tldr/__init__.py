"""vid-TLDR: training-free, saliency-aware token merging (Choi et al., CVPR'24; mlvlab/vid-TLDR @ a25051d).

Registration only (no torch); the pure functions are in ``merge.py``, the model wiring in ``reducer.py``.

``r`` is the official ``vidTLDR_r`` per-block list: an entry ``< 1`` is a fraction of the tokens entering
that block (``int(N * r)``), an entry ``>= 1`` an absolute count; every count is capped at ``N // 2``;
the list is zero-padded to the model depth; ``[]`` (or all zeros) is the dense model. In a suite a flat
list is one value of this knob and a list of lists is a sweep. From Python, a bare number is also
accepted and means that r in every block (ToMe's convention; the official code only takes a list).
"""
import dataclasses
import math
import typing as tp

from methods.registry import register_method


@register_method(
    "vid_tldr", implementation="methods.vid_tldr.reducer:VidTLDRReducer", kind="merge",
    needs_attention_probs=True,
    summary="attention-entropy saliency; bipartite matching on hidden states; background sources "
            "dropped, foreground merged with saliency weights; per-block r list",
    reference="Choi et al., vid-TLDR: Training Free Token merging for Light-weight Video Transformer, "
              "CVPR 2024; mlvlab/vid-TLDR multi_modality/utils/vid_TLDR.py",
    examples=({"r": [16, 16]}, {"r": [32, 16, 8]}),
    supports=("rope3d", "attentive_pool"),  # V-JEPA 2: merged tokens rotate at their patches' mean position
    refuses={"cls_token": "the official vid-TLDR (on UMT) has no class-token rule for its saliency and matching",
             "divided_attention": "it merges tokens across frames"},
)
@dataclasses.dataclass
class VidTLDRParams:
    r: tp.List[float] = dataclasses.field(default_factory=list)  # per block: <1 fraction, >=1 count
    # (a bare number from Python = the same r in every block)
    pool: tp.Literal["mean", "size_weighted"] = "mean"  # official: plain mean over the merged tokens

    def __post_init__(self):
        if isinstance(self.r, tuple):
            self.r = list(self.r)

    def check(self) -> tp.List[str]:
        problems = []
        for v in self.r if isinstance(self.r, list) else [self.r]:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                problems.append(f"r entries must be finite numbers >= 0, got {v!r} in r={self.r!r}")
            elif v >= 1 and v != int(v):
                problems.append(f"r entries >= 1 are token counts and must be whole, got {v!r}")
            elif v > 1_000_000:
                problems.append(f"r entries must be at most 1000000 tokens, got {v!r}")
        if self.pool not in ("mean", "size_weighted"):
            problems.append(f"pool must be 'mean' or 'size_weighted', got {self.pool!r}")
        return problems

    def check_backbone(self, cfg: tp.Any) -> tp.List[str]:
        if isinstance(self.r, list) and len(self.r) > cfg.depth:
            return [f"r has {len(self.r)} entries but the backbone has {cfg.depth} blocks"]
        return []

    def check_counts(self, cfg: tp.Any) -> tp.List[str]:
        """A count the merge would cap at N // 2 (as ``merge.merge_count``): the model runs as the
        official code does, but a suite cell's label would overstate the merges."""
        if self.check_backbone(cfg) or self.check():
            return []  # check() reports it
        values = self.r if isinstance(self.r, list) else [self.r] * cfg.depth
        n = cfg.num_tokens
        for block, v in enumerate(values):
            want = int(n * v) if v < 1 else int(v)
            if want > n // 2:
                return [f"r={self.r!r} asks block {block} to merge {want} tokens, but {n} tokens enter it and "
                        f"at most {n // 2} can merge (vid-TLDR caps each count at N // 2, so the label would "
                        "overstate the merges); lower that entry"]
            n -= want
        return []
