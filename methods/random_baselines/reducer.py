"""Random token removal on the schedule of another method.

The schedule (tokens after the attention slot and after each block) is read once, in ``bind``, from
a forward of the matched method on the meta device: no data, no cost, exact counts for methods
whose counts do not depend on the input. Which tokens go is decided by seeded random scores per
block and token position, the same for every video: batch size cannot change a sample's output,
and no host synchronisation happens in the forward. A class token is never chosen (it stays first);
under divided attention the reducer is handed each frame's patch tokens, so the same positions go in
every frame and the frames stay aligned.
"""
from __future__ import annotations

import typing as tp

import torch

from harness.models.reduction import (AttentionOutput, TokenReducer, TokenState, initial_source,
                                      size_weighted_mean)
from methods.tome.merge import merge_source, merge_wavg


def plan_from_method(spec, params, cfg) -> tp.List[tp.Tuple[int, int]]:
    """Per block: (tokens after its attention slot, tokens after the block) for ``spec`` on ``cfg``."""
    from harness.models.video_vit import VideoViT

    matched = spec.load_implementation()(params, depth=cfg.depth, num_heads=cfg.num_heads,
                                         embed_dim=cfg.embed_dim)
    with torch.device("meta"):
        model = VideoViT(cfg, matched)
        with torch.no_grad():
            model(torch.empty(1, cfg.in_chans, cfg.num_frames, cfg.img_size, cfg.img_size))
    stats = model.last_stats
    handed = model.layout.tokens_handed
    return [(handed(a), handed(b)) for a, b in zip(stats.tokens_mlp, stats.tokens_in[1:] + [stats.tokens_out])]


def random_keep(n: int, keep: int, generator: torch.Generator) -> torch.Tensor:
    """``keep`` of ``n`` positions chosen uniformly at random, in ascending order."""
    return torch.randperm(n, generator=generator)[:keep].sort().values


def random_merge_indices(n: int, r: int, generator: torch.Generator) -> tp.Tuple[torch.Tensor, ...]:
    """(sources, kept positions, destination of each source among the kept): r random sources."""
    perm = torch.randperm(n, generator=generator)
    return perm[:r], perm[r:].sort().values, torch.randint(0, n - r, (r,), generator=generator)


def random_merge_fn(src_idx: torch.Tensor, dst_pos: torch.Tensor, dst_of_src: torch.Tensor):
    """A ToMe-style ``merge(x, mode)`` merging ``src_idx`` tokens into ``dst_pos[dst_of_src]``."""

    def merge(x: torch.Tensor, mode: str = "sum") -> torch.Tensor:
        idx = lambda i: i[None, :, None].expand(x.shape[0], -1, x.shape[-1])  # noqa: E731
        dst = x.gather(1, idx(dst_pos))
        return dst.scatter_reduce(1, idx(dst_of_src), x.gather(1, idx(src_idx)), reduce=mode)

    return merge


class _RandomReducer(TokenReducer):
    def bind(self, cfg) -> None:
        from methods.registry import get_method

        spec = get_method(self.params.match)
        self.plan = plan_from_method(spec, self.params.matched_params(), cfg)
        gen = torch.Generator().manual_seed(self.params.seed)
        layout = cfg.layout
        n = layout.tokens_handed(layout.cls_tokens + cfg.num_tokens)
        p = self.protected
        self.actions: tp.Dict[tp.Tuple[int, str], tp.Tuple[torch.Tensor, ...]] = {}
        self._on_device: tp.Dict[torch.device, dict] = {}
        for layer, (after_attn, after_block) in enumerate(self.plan):
            for slot, target in (("attn", after_attn), ("block", after_block)):
                if target < n:  # chosen among the unprotected tokens, then shifted past the protected ones
                    self.actions[(layer, slot)] = self.shift(self.make_action(n - p, target - p, gen), p)
                n = target

    def make_action(self, n: int, keep: int, gen: torch.Generator):
        raise NotImplementedError

    def shift(self, action, protected: int):
        raise NotImplementedError

    def reduce(self, action, x: torch.Tensor, state: TokenState) -> tp.Tuple[torch.Tensor, TokenState]:
        raise NotImplementedError

    def _action(self, key, device: torch.device):
        """The index tensors of ``key`` on ``device``, copied there once (no copy per forward)."""
        if key not in self.actions:
            return None
        cached = self._on_device.setdefault(device, {})
        if key not in cached:
            cached[key] = tuple(t.to(device) for t in self.actions[key])
        return cached[key]

    def after_attention(self, layer, x, state, attn: AttentionOutput):
        action = self._action((layer, "attn"), x.device)
        return (x, state) if action is None else self.reduce(action, x, state)

    def after_block(self, layer, x, state, attn: AttentionOutput):
        action = self._action((layer, "block"), x.device)
        return (x, state) if action is None else self.reduce(action, x, state)

    def describe(self) -> dict:
        return {"match": self.params.match, "tokens_after_attention_and_block": self.plan}


class RandomDropReducer(_RandomReducer):
    """Keeps random positions; plain mean pooling over the survivors."""

    def make_action(self, n, keep, gen):
        return (random_keep(n, keep, gen),)

    def shift(self, action, protected):
        return (torch.cat((torch.arange(protected), action[0] + protected)),)

    def reduce(self, action, x, state):
        if self.track_source:
            source = initial_source(x, state.source)[:, action[0]]
            return x[:, action[0]], TokenState(size=state.size, source=source, extras=state.extras)
        return x[:, action[0]], state


class RandomMergeReducer(_RandomReducer):
    """Merges random sources into random destinations (size-weighted); size-weighted pooling."""

    def make_action(self, n, keep, gen):
        return random_merge_indices(n, n - keep, gen)

    def shift(self, action, protected):
        src, kept, dst_of_src = action
        return src + protected, torch.cat((torch.arange(protected), kept + protected)), dst_of_src + protected

    def reduce(self, action, x, state):
        merge = random_merge_fn(*action)
        source = merge_source(merge, x, state.source) if self.track_source else None
        x, size = merge_wavg(merge, x, state.size)
        return x, TokenState(size=size, source=source, extras=state.extras)

    def pool(self, x, state):
        return size_weighted_mean(x, state.size)
