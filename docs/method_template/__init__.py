"""Mean-key pruning: a template method (copy this folder to ``methods/<your_name>/``; docs/adding_a_method.md).

After the attention of each block in ``layers``, drop the ``r`` tokens whose head-averaged keys are most
similar (cosine) to the mean key of their clip: the most typical tokens, taken to carry the least. It is
training-free and small, but real: it runs on every ViT family, its GMACs equal fvcore's and it draws
token maps. Not a published method; replace it with yours.

Registration only (no torch: ``harness ls`` and ``report`` import this file); the tensor functions are
in ``prune.py``, the model wiring in ``reducer.py``.
"""
import dataclasses
import typing as tp

from methods.registry import register_method


@register_method(
    "mean_key_prune",  # the suite name; also in ``implementation`` below
    implementation="methods.mean_key_prune.reducer:MeanKeyPruneReducer", kind="prune",
    summary="drop the r tokens whose keys are closest to the clip's mean key, after the attention of chosen blocks",
    reference="template of this harness (docs/adding_a_method.md); not a published method",
    # at least two settings for the registry-wide tests, on the test backbone methods.registry.EXAMPLE_BACKBONE
    # (128 tokens: 8 slices of 4 x 4, 4 blocks; TimeSformer: 16 frames of 4 x 4, r per frame)
    examples=({"r": 8}, {"r": 4, "layers": [0, 1, 2]}),
    # the token-layout features handled (harness.models.presets.LAYOUT_FEATURES): class tokens are never
    # pruned; under divided attention each frame loses r; kept tokens keep their rotary positions (the
    # reducer tracks sources); the attentive probe sees the kept tokens
    supports=("cls_token", "divided_attention", "rope3d", "attentive_pool"),
    refuses={"windowed_attention": "a template for the ViT families", "hierarchical": "a template for the ViT families"},
    # ops only this method runs that fvcore does not count and that cost no multiply-add, e.g. ("aten::abs",);
    # fvcore_handles={"aten::my_op": "methods.mean_key_prune.prune:my_op_macs"} for an op with MACs
    uncounted_ops=(),
)
@dataclasses.dataclass
class MeanKeyPruneParams:
    r: int = 0  # tokens dropped after the attention of each block in ``layers`` (per frame under divided attention)
    layers: tp.List[int] = dataclasses.field(default_factory=lambda: [0])  # blocks that prune (0-based)

    def check(self) -> tp.List[str]:
        """Problems of the values alone (``harness validate`` prints each)."""
        problems = []
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 0:
            problems.append(f"r must be a non-negative int, got {self.r!r}")
        if (not isinstance(self.layers, list) or not self.layers
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in self.layers)
                or len(set(self.layers)) != len(self.layers)):
            problems.append(f"layers must be a non-empty list of distinct block indices >= 0, got {self.layers!r}")
        return problems

    def check_backbone(self, cfg: tp.Any) -> tp.List[str]:
        """Why it cannot run on backbone ``cfg`` (a ``VideoViTConfig``): ``validate`` and ``build_model`` refuse."""
        if self.check():
            return []  # check() reports it
        beyond = [v for v in self.layers if v >= cfg.depth]
        return [f"layers {beyond} beyond the backbone's {cfg.depth} blocks (0..{cfg.depth - 1})"] if beyond else []

    def check_counts(self, cfg: tp.Any) -> tp.List[str]:
        """Settings the reducer would cap on ``cfg`` (it keeps at least one token): the model runs, but a
        cell labelled r=... would overstate what was dropped, so suites refuse it."""
        if self.check() or self.check_backbone(cfg):
            return []
        layout = cfg.layout
        n = layout.tokens_handed(layout.cls_tokens + cfg.num_tokens) - layout.protected
        where = " per frame" if layout.attention == "divided" else ""
        for block in sorted(self.layers):
            if self.r >= n:
                return [f"r={self.r} asks block {block} to drop {self.r} of its {n} tokens{where}; it keeps at "
                        f"least one, so lower r (at most {n - 1})"]
            n -= self.r
        return []
