"""ToMe: Token Merging (Bolya et al., ICLR'23; facebookresearch/ToMe @ af95e4b).

Registration only (no torch); the merge functions are in ``merge.py``, the model wiring in ``reducer.py``.
"""
import dataclasses
import typing as tp

from methods.registry import register_method


@register_method(
    "tome", implementation="methods.tome.reducer:ToMeReducer", kind="merge",
    summary="bipartite soft matching on head-averaged keys, size-weighted merge, every block",
    reference="Bolya et al., Token Merging: Your ViT but Faster, ICLR 2023; facebookresearch/ToMe",
    examples=({"r": 16}, {"r": 8, "prop_attn": True}),
    # rope3d: the model gives each merged token the mean position of its patches (VideoViT.token_positions)
    supports=("cls_token", "divided_attention", "rope3d", "attentive_pool"),
)
@dataclasses.dataclass
class ToMeParams:
    r: tp.Union[int, tp.List[int]] = 0  # tokens merged per block: one int, or a per-block list (zero-padded)
    inflection: float = 0.0  # with an int r: linear schedule from r(1-inflection) to r(1+inflection); -1 = decreasing
    prop_attn: bool = False  # proportional attention (log size bias); off for off-the-shelf MAE/VideoMAE models
    trace_source: bool = False  # keep the [B, N, N0] patch membership of every token (visualisation)

    def __post_init__(self):
        if isinstance(self.r, tuple):  # ToMe's compact (r, inflection) form
            self.r, self.inflection = self.r
        elif isinstance(self.r, list):
            self.r = list(self.r)

    def check(self) -> tp.List[str]:
        values = self.r if isinstance(self.r, list) else [self.r]
        problems = []
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in values):
            problems.append(f"r must be a non-negative int or a list of them, got {self.r!r}")
        elif any(v > 1_000_000 for v in values):
            problems.append(f"r must be at most 1000000 tokens per block, got {self.r!r}")
        if isinstance(self.r, list) and self.inflection != 0.0:
            problems.append("inflection applies to an int r, not to a per-block list")
        if not -1.0 <= self.inflection <= 1.0:
            problems.append(f"inflection must be in [-1, 1], got {self.inflection}")
        return problems

    def check_counts(self, cfg: tp.Any) -> tp.List[str]:
        """An r the merge would cap (at most N // 2 per block): the model runs as ToMe does, but a suite
        cell's label would claim merges that never happen (r=1000 and r=1e26 give the same model)."""
        r = self.r if isinstance(self.r, list) else [self.r]
        if self.check():
            return []  # check() reports it
        if isinstance(self.r, list):
            if len(r) > cfg.depth:
                return [f"r has {len(r)} entries but the backbone has {cfg.depth} blocks"]
            schedule = r + [0] * (cfg.depth - len(r))
        else:  # as merge.parse_r (kept torch-free here)
            low = int(self.r * (1.0 - self.inflection))
            step = (2 * self.r - 2 * low) / max(cfg.depth - 1, 1)
            schedule = [low] if cfg.depth == 1 else [int(low + step * i) for i in range(cfg.depth)]
        layout = cfg.layout
        n = layout.tokens_handed(layout.cls_tokens + cfg.num_tokens)
        where = " per frame" if layout.attention == "divided" else ""
        for block, want in enumerate(schedule):
            cap = (n - layout.protected) // 2
            if want > cap:
                return [f"r={self.r!r} asks block {block} to merge {want} tokens{where}, but {n} tokens enter it"
                        f"{where} and at most {cap} can merge (ToMe caps r at N // 2, so the label would overstate "
                        "the merges); lower r"]
            n -= want
        return []
