"""downsample has no token map: it resamples the whole clip before the patch embedding."""
from __future__ import annotations

import torch

from harness.viz.inputs import VizError
from harness.viz.tokens import TokenMap, reducer_map


def token_map(model, clip: torch.Tensor) -> TokenMap:
    """``harness viz``'s hook for downsample: the plain map when nothing is resampled, else a clear error."""
    reduced = model.reduced_cfg
    if tuple(reduced.grid) != tuple(model.cfg.grid):
        raise VizError("downsample resamples the whole clip before the patch embedding: no input patch is "
                       "kept, merged or dropped, so it has no token map (docs/downsample.md)")
    return reducer_map(model, clip)
