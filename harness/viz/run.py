"""``harness viz``: resolve the model and the clip, map the tokens, write the PNG (and GIF)."""
from __future__ import annotations

import dataclasses
import os
import typing as tp

from harness.viz.inputs import Clip, Target, VizError, load_clip, target_from_method, target_from_suite
from harness.viz.render import render_gif, render_png
from harness.viz.tokens import TokenMap, token_map


@dataclasses.dataclass
class VizRequest:
    """One ``harness viz`` invocation (either ``suite`` + ``cell`` or ``method``)."""

    out: str  # PNG path; the GIF (``gif``) goes next to it with the suffix .gif
    method: tp.Optional[str] = None  # registered method name (without a suite)
    method_args: tp.Dict[str, tp.Any] = dataclasses.field(default_factory=dict)  # its knobs
    backbone: tp.Optional[str] = None  # preset (default synthetic_vit_tiny); with a suite: picks the backbone
    checkpoint: tp.Optional[str] = None  # trained weights, loaded strictly
    init_from: tp.Optional[str] = None  # weights the method starts fine-tuning from (e.g. dense)
    suite: tp.Optional[str] = None  # suite file whose cell ``cell`` gives backbone, method and weights
    cell: tp.Optional[str] = None  # cell label as ``run --dry-run`` prints it
    overrides: tp.List[str] = dataclasses.field(default_factory=list)  # suite --set overrides
    results: str = "results"  # store holding the fine-tunes
    video: tp.Optional[str] = None  # a video file
    index: tp.Optional[int] = None  # else video #index of the dataset (default 0)
    split: tp.Optional[str] = None  # dataset split (default: the cell's; synthetic_motion: val)
    frame_interval: tp.Optional[int] = None  # override of the protocol's frame interval
    gif: bool = False  # also write a GIF over the frames
    title: tp.Optional[str] = None  # replaces the first title line


def run_viz(req: VizRequest) -> tp.List[str]:
    """Write the token map(s) of ``req``; returns the paths written."""
    target = resolve_target(req)
    clip = load_clip(target, video=req.video, index=req.index, split=req.split,
                     frame_interval=req.frame_interval)
    tmap = token_map(target.model, clip.tensor, target.method)
    from harness.report.safe import mpl

    # video paths, labels and --title are user text: no escape sequence, no mathtext reaches the figure
    title = "\n".join(mpl(line) for line in figure_title(target, clip, tmap, req.title).split("\n"))
    written = [render_png(tmap, clip.frames, req.out, title)]
    if req.gif:
        written.append(render_gif(tmap, clip.frames, os.path.splitext(req.out)[0] + ".gif"))
    return written


def resolve_target(req: VizRequest) -> Target:
    if req.suite or req.cell:
        if not (req.suite and req.cell):
            raise VizError("--suite and --cell go together (the cell label as `run SUITE --dry-run` prints it)")
        if req.method or req.method_args or req.checkpoint:
            raise VizError("with --suite/--cell the cell gives the method, its settings and its weights; "
                           "drop --method/--checkpoint (suite overrides go in --set)")
        return target_from_suite(req.suite, req.cell, req.overrides, req.results, req.init_from, req.backbone)
    if not req.method:
        raise VizError("say what to show: --method NAME [--set key=value ...], or --suite SUITE --cell LABEL")
    return target_from_method(req.method, req.method_args, req.backbone or "synthetic_vit_tiny",
                              req.checkpoint, req.init_from)


def figure_title(target: Target, clip: Clip, tmap: TokenMap, first_line: tp.Optional[str] = None) -> str:
    """Two lines: method, backbone and weights; clip, label and prediction (and HaltingVT's CLS)."""
    import methods

    name = target.label.split(" ")[0]
    pretty = methods.get_method(name).title if name in methods.list_methods() else name
    head = first_line or " \u00b7 ".join(
        [pretty + target.label[len(name):], target.backbone, f"weights: {target.weights}"])
    probs = tmap.logits.softmax(-1)
    pred = int(probs.argmax())
    names = clip.class_names if clip.class_names and len(clip.class_names) == len(probs) else None
    show = (lambda k: names[k]) if names else str
    parts = [f"clip: {clip.name}"]
    if clip.label is not None:
        parts.append(f"label {show(clip.label)}")
    parts.append(f"predicted {show(pred)} (p={float(probs[pred]):.2f})")
    if tmap.note:
        parts.append(tmap.note)
    return head + "\n" + " \u00b7 ".join(parts)
