"""What each reducing step did to every input patch: kept alone, merged, dropped or halted.

``token_map(model, clip)`` runs one forward and returns a ``TokenMap``: per reducing step, the state
of every input patch (t', h, w) of the token grid.

* ``VideoViT`` methods (ToMe, vid-TLDR, STA, STTM, random baselines): the reducer's
  ``track_source`` switch is turned on for this forward only, and each reducer hook that changes the
  tokens is recorded with the resulting ``TokenState.source`` ([B, N, N0] membership of the input
  patches). A patch in no row was pruned (STA, random_drop) or deleted as background (vid-TLDR); a
  patch sharing its token with others is merged (the group id is the smallest input patch index of
  the token, so a group keeps its id, hence its colour, from step to step).
* A method with its own network registers a ``token_map`` hook that builds the ``TokenMap`` itself
  (HaltingVT: ``methods/haltingvt/viz.py``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import typing as tp

import numpy as np
import torch

KEPT, MERGED, DROPPED, HALTED = 0, 1, 2, 3
STATE_NAMES = {KEPT: "kept", MERGED: "merged", DROPPED: "dropped", HALTED: "halted"}


@dataclasses.dataclass
class Step:
    """The patches' states after one reducing step (arrays over the token grid [T', H', W'])."""

    layer: int  # block index of the step
    title: str  # e.g. "block 0: 128 -> 112 tokens"
    tokens: int  # tokens after the step (HaltingVT: tokens still running, CLS included)
    state: np.ndarray  # int8: KEPT, MERGED, DROPPED or HALTED
    group: np.ndarray  # int64: merged group id (smallest input patch index of its token), else -1
    halt_block: np.ndarray  # int64: block a HALTED patch stopped at, else -1

    def counts(self) -> tp.Dict[str, int]:
        """Patches per state name, and merged groups (``"groups"``)."""
        out = {name: int((self.state == code).sum()) for code, name in STATE_NAMES.items()}
        out["groups"] = len(np.unique(self.group[self.state == MERGED]))
        return out


@dataclasses.dataclass
class TokenMap:
    """Every reducing step of one forward on one clip."""

    method: str
    grid: tp.Tuple[int, int, int]  # (T', H', W') input token grid
    tubelet_size: int  # frames per temporal token slice
    patch_size: int  # pixels per patch side
    tokens_in: int  # input tokens (patches; HaltingVT: + CLS)
    steps: tp.List[Step]
    logits: torch.Tensor  # [num_classes] of this forward
    halting_blocks: tp.List[int] = dataclasses.field(default_factory=list)  # HaltingVT only
    cls_token: bool = False  # tokens_in counts a CLS token (HaltingVT)
    note: str = ""  # e.g. where the CLS token halted


def token_map(model: torch.nn.Module, clip: torch.Tensor, method: str = "dense") -> TokenMap:
    """Run ``model`` (built for ``method``) on one normalised clip ([3, T, H, W] or [1, 3, T, H, W]) and
    map its reduction: through the method's own ``token_map`` hook if it registered one (HaltingVT),
    else by tracking the VideoViT reducer's sources."""
    import methods
    from harness.registry import load_object

    if clip.ndim == 4:
        clip = clip.unsqueeze(0)
    if clip.ndim != 5 or clip.shape[0] != 1:
        raise ValueError(f"token_map takes one clip [3, T, H, W] or [1, 3, T, H, W], got {tuple(clip.shape)}")
    hook = methods.get_method(method).token_map
    if hook is not None:
        tmap = load_object(hook)(model, clip)
    elif hasattr(model, "reducer"):
        tmap = _reducer_map(model, clip)
    else:
        raise TypeError(f"{method}: {type(model).__name__} is not a VideoViT with a TokenReducer and the "
                        "method registers no token_map hook")
    tmap.method = method
    return tmap


# --- VideoViT + TokenReducer ------------------------------------------------------------------------

@dataclasses.dataclass
class _Record:
    layer: int
    slot: str  # "after_attention" | "after_block"
    tokens_in: int
    source: tp.Optional[torch.Tensor]  # [N_out, N0] of the first clip


@contextlib.contextmanager
def tracking_sources(reducer) -> tp.Iterator[tp.List[_Record]]:
    """Turn on ``reducer.track_source`` and record every hook call that changes the tokens.

    The two hooks are wrapped on this instance only and restored on exit, as is ``track_source``.
    """
    records: tp.List[_Record] = []

    def wrap(slot: str, hook: tp.Callable) -> tp.Callable:
        def recorded(layer, x, state, attn):
            x_out, state_out = hook(layer, x, state, attn)
            if x_out.shape[1] != x.shape[1] or state_out.source is not state.source:
                source = None if state_out.source is None else state_out.source[0].detach().float().cpu()
                records.append(_Record(layer, slot, int(x.shape[1]), source))
            return x_out, state_out
        return recorded

    previous = reducer.__dict__.get("track_source")
    reducer.track_source = True
    for slot in ("after_attention", "after_block"):
        setattr(reducer, slot, wrap(slot, getattr(reducer, slot)))
    try:
        yield records
    finally:
        for slot in ("after_attention", "after_block"):
            delattr(reducer, slot)
        if previous is None:
            del reducer.track_source
        else:
            reducer.track_source = previous


def _reducer_map(model, clip: torch.Tensor) -> TokenMap:
    cfg = model.cfg
    grid = tuple(cfg.grid)
    with tracking_sources(model.reducer) as records, torch.inference_mode():
        logits = model(clip)[0]
    steps = []
    for rec in records:
        if rec.source is None:
            raise NotImplementedError(
                f"{type(model.reducer).__name__}: block {rec.layer} "
                f"({rec.slot}) reduced the tokens but its reducer does not track sources "
                "(TokenReducer.track_source)")
        state, group = membership(rec.source)
        n_out = rec.source.shape[0]
        where = f"after block {rec.layer}" if rec.slot == "after_block" else f"block {rec.layer} (after attention)"
        steps.append(Step(layer=rec.layer, title=f"{where}: {rec.tokens_in} \u2192 {n_out} tokens",
                          tokens=n_out, state=state.reshape(grid), group=group.reshape(grid),
                          halt_block=np.full(grid, -1, dtype=np.int64)))
    return TokenMap(method="?", grid=grid, tubelet_size=cfg.tubelet_size,
                    patch_size=cfg.patch_size, tokens_in=cfg.num_tokens, steps=steps, logits=logits.float().cpu())


def membership(source: torch.Tensor) -> tp.Tuple[np.ndarray, np.ndarray]:
    """States and group ids of the N0 input patches from a [N, N0] 0/1 membership matrix.

    A patch in no token is DROPPED; in a token of one patch KEPT; in a token of several MERGED, with
    the group id = the smallest input patch index of that token. A patch in two tokens is a bug of
    the reducer's tracking and raises.
    """
    member = source > 0
    owners = member.sum(dim=0)
    if bool((owners > 1).any()):
        bad = torch.nonzero(owners > 1).flatten().tolist()
        raise RuntimeError(f"input patches {bad[:8]} belong to more than one token")
    owner = member.float().argmax(dim=0)  # first token holding the patch (meaningless where none)
    sizes = member.sum(dim=1)  # patches per token
    anchor = member.float().argmax(dim=1)  # smallest patch index of every token
    state = torch.where(owners == 0, DROPPED, torch.where(sizes[owner] > 1, MERGED, KEPT))
    group = torch.where(state == MERGED, anchor[owner], -1)
    return state.numpy().astype(np.int8), group.numpy().astype(np.int64)
