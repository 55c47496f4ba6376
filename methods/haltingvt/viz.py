"""HaltingVT's token map: the Glimpser's kept patches, then where each token halted.

``last_halting`` gives the Glimpser's kept patches per frame (``glimpser_idx``) and the running mask
after each halting block; a patch is dropped by the Glimpser, halted at block l (the last block
halts every token still running), or still running.
"""
from __future__ import annotations

import numpy as np
import torch

from harness.viz.tokens import DROPPED, HALTED, KEPT, Step, TokenMap
from methods.haltingvt import GLIMPSER_BLOCKS


def token_map(model, clip: torch.Tensor) -> TokenMap:
    """``harness viz``'s hook for HaltingVT (registered as ``token_map``)."""
    with torch.inference_mode():
        logits = model(clip)[0]
    rec = model.last_halting
    frames, per_frame = model.frames, model.per_frame
    side = int(round(per_frame ** 0.5))
    grid = (frames, side, side)
    idx = rec.get("glimpser_idx")
    if idx is None:  # keep_rate 1: every patch of every frame, in order
        idx = torch.arange(per_frame).expand(1, frames, per_frame)
    idx = idx[0].cpu()  # [T', k]: patch index of rank r in frame t
    keep = idx.shape[1]
    masks = rec["masks"][:, 0].cpu().bool()  # [L_halt, n] running after each halting block
    n = masks.shape[1]
    if n != 1 + keep * frames:
        raise RuntimeError(f"HaltingVT record has {n} tokens, expected 1 + {keep} x {frames}")
    layers = [GLIMPSER_BLOCKS + i for i in range(masks.shape[0])]
    # block at which each token halted: the first block after which it no longer runs
    halted_at = torch.full((n,), -1, dtype=torch.long)
    for i in range(masks.shape[0]):
        newly = (~masks[i]) & (halted_at < 0)
        halted_at[newly] = layers[i]
    # patch (t, s) <- token 1 + r * T' + t
    rank = torch.arange(keep)
    t_of = torch.arange(frames)[:, None].expand(frames, keep)
    token_of = 1 + rank[None, :] * frames + t_of  # [T', k]
    flat = (t_of * per_frame + idx).flatten()  # input patch index (time-major) of every kept token
    token_flat = token_of.flatten()

    selected = np.zeros(frames * per_frame, dtype=bool)
    selected[flat.numpy()] = True
    no_group = np.full(grid, -1, dtype=np.int64)
    glimpse_state = np.where(selected, KEPT, DROPPED).astype(np.int8).reshape(grid)
    steps = [Step(layer=GLIMPSER_BLOCKS - 1, tokens=n, state=glimpse_state, group=no_group,
                  halt_block=np.full(grid, -1, dtype=np.int64),
                  title=f"Glimpser (block {GLIMPSER_BLOCKS - 1}): {per_frame} \u2192 {keep} patches per "
                        f"{'frame' if model.cfg.tubelet_size == 1 else 'slice'}")]
    for i, layer in enumerate(layers):
        halt = np.full(frames * per_frame, -1, dtype=np.int64)
        when = halted_at[token_flat]
        done = (when >= 0) & (when <= layer)
        halt[flat[done].numpy()] = when[done].numpy()
        state = np.where(~selected, DROPPED, np.where(halt >= 0, HALTED, KEPT)).astype(np.int8)
        running = int(masks[i].sum())
        last = " (the last)" if i == len(layers) - 1 else ""
        before = int(masks[i - 1].sum()) if i else n
        steps.append(Step(layer=layer, tokens=running, state=state.reshape(grid), group=no_group,
                          halt_block=halt.reshape(grid),
                          title=f"block {layer}{last}: {before} \u2192 {running} running"))
    note = f"CLS halted at block {int(halted_at[0])}"
    return TokenMap(method="haltingvt", grid=grid,
                    tubelet_size=model.cfg.tubelet_size, patch_size=model.cfg.patch_size,
                    tokens_in=1 + frames * per_frame, steps=steps, logits=logits.float().cpu(),
                    halting_blocks=layers, note=note, cls_token=True)
