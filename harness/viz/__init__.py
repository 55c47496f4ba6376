"""Token maps: which input patches each reducing block keeps, merges, drops or halts.

    from harness.viz import token_map, render_png
    tmap = token_map(model, clip)             # one forward with source tracking; clip [3, T, H, W]
    render_png(tmap, frames_uint8, "map.png")  # rows = reducing steps, columns = token slices

``python -m harness viz`` resolves a model (``--method`` or ``--suite``/``--cell``) and a clip, and
writes the PNG (``--gif``: a GIF over the frames too). See docs/token_maps.md.
"""
from harness.viz.inputs import Clip as Clip
from harness.viz.inputs import VizError as VizError
from harness.viz.inputs import load_clip as load_clip
from harness.viz.render import render_gif as render_gif
from harness.viz.render import render_png as render_png
from harness.viz.run import VizRequest as VizRequest
from harness.viz.run import run_viz as run_viz
from harness.viz.tokens import DROPPED as DROPPED
from harness.viz.tokens import HALTED as HALTED
from harness.viz.tokens import KEPT as KEPT
from harness.viz.tokens import MERGED as MERGED
from harness.viz.tokens import Step as Step
from harness.viz.tokens import TokenMap as TokenMap
from harness.viz.tokens import membership as membership
from harness.viz.tokens import token_map as token_map
from harness.viz.tokens import tracking_sources as tracking_sources
