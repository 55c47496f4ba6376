"""RLT's token map: the input patches dropped before block 0 (a static repeat of the previous tubelet)."""
from __future__ import annotations

import numpy as np
import torch

from harness.viz.tokens import DROPPED, KEPT, Step, TokenMap, reducer_map


def token_map(model, clip: torch.Tensor) -> TokenMap:
    """``harness viz``'s hook for RLT (registered as ``token_map``): one step, the kept input patches."""
    tmap = reducer_map(model, clip)  # runs the forward; RLT's reducer itself changes nothing afterwards
    cfg, grid = model.cfg, tuple(model.cfg.grid)
    kept = model.last_keep[0].cpu().numpy().reshape(grid)
    step = Step(layer=0, title=f"input (before block 0): {cfg.num_tokens} \u2192 {int(kept.sum())} tokens",
                tokens=int(kept.sum()), state=np.where(kept, KEPT, DROPPED).astype(np.int8),
                group=np.full(grid, -1, dtype=np.int64), halt_block=np.full(grid, -1, dtype=np.int64))
    tmap.steps.insert(0, step)
    return tmap
