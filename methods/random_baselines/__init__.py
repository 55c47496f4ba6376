"""Chance baselines at equal token counts: ``random_drop`` and ``random_merge``.

Each follows another method's per-block token schedule (``match``: which tokens survive is random,
how many survive where is the matched method's), so every method can be compared with chance at
the same cost. Registration only (no torch); the reducer is in ``reducer.py``.
"""
import dataclasses
import typing as tp

from methods.registry import get_method, list_methods, register_method


@dataclasses.dataclass
class RandomParams:
    match: str = "tome"  # method whose per-block token schedule is followed (a non-adaptive one)
    r: tp.Union[int, tp.List[float]] = 0  # that method's r (its meaning is the matched method's)
    seed: int = 0  # seed of the random positions (the same positions for every video)

    def matched_params(self) -> tp.Any:
        return get_method(self.match).make_params({"r": self.r})

    def check(self) -> tp.List[str]:
        if self.match in ("random_drop", "random_merge"):
            return [f"match must name a non-random method, got {self.match!r}"]
        if self.match not in list_methods():
            return [f"match: unknown method {self.match!r}; choose one of {', '.join(list_methods())}"]
        spec = get_method(self.match)
        if spec.adaptive_token_count:
            return [f"match: {self.match!r} keeps a different number of tokens per video; only methods "
                    "with a fixed schedule can be matched"]
        if not any(f.name == "r" for f in dataclasses.fields(spec.params)):
            return [f"match: {self.match!r} has no parameter r to follow"]
        try:
            self.matched_params()
        except (ValueError, TypeError) as err:
            return [f"r={self.r!r} for matched method {self.match!r}: {err}"]
        return []

    def check_backbone(self, cfg) -> tp.List[str]:
        missing = sorted(cfg.layout.features - get_method(self.match).supports)
        if missing:
            return [f"the matched method {self.match!r} does not run on this backbone ({', '.join(missing)}), "
                    "so there are no token counts to follow"]
        params = self.matched_params()
        check = getattr(params, "check_backbone", None)
        return check(cfg) if check else []

    def check_counts(self, cfg) -> tp.List[str]:  # a matched r the method would cap: the same label problem
        params = self.matched_params()
        check = getattr(params, "check_counts", None)
        return check(cfg) if check else []


@register_method(
    "random_drop", implementation="methods.random_baselines.reducer:RandomDropReducer", kind="prune",
    video_swin="methods.random_baselines.swin:build_drop",
    summary="drop random tokens where the matched method removes tokens (same counts per block)",
    reference="chance baseline of this harness",
    examples=({"match": "sta", "r": 4}, {"match": "tome", "r": 8}, {"match": "sta_swin", "r": 16}),
    supports=("cls_token", "divided_attention", "rope3d", "attentive_pool", "windowed_attention", "hierarchical"))
@dataclasses.dataclass
class RandomDropParams(RandomParams):
    pass


@register_method(
    "random_merge", implementation="methods.random_baselines.reducer:RandomMergeReducer", kind="merge",
    summary="merge random tokens into random others (size-weighted) at the matched method's counts",
    reference="chance baseline of this harness", examples=({"match": "sta", "r": 4}, {"match": "tome", "r": 8}),
    supports=("cls_token", "divided_attention", "rope3d", "attentive_pool"))
@dataclasses.dataclass
class RandomMergeParams(RandomParams):
    pass
