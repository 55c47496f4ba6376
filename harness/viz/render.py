"""Token maps drawn over the frames: a PNG grid (matplotlib) and a GIF over frames (Pillow).

Each panel is one frame, upscaled with nearest-neighbour so that patches stay square, with one
translucent colour per patch:

* kept alone: no tint;
* merged: the token's colour and number (the same number in every frame and row = the same token;
  a token keeps its number while it grows), white lines between different tokens; colours are
  reused only by tokens that never touch;
* dropped (pruned, deleted as background, or dropped by HaltingVT's Glimpser): darkened and hatched;
* halted (HaltingVT): tinted by the block it halted at (light blue: ran to the last block).

The compositing is numpy (``compose``), shared by both outputs; ``Style`` holds the per-figure
group colours and numbers.
"""
from __future__ import annotations

import dataclasses
import os
import typing as tp

import numpy as np

from harness.viz.tokens import DROPPED, HALTED, MERGED, Step, TokenMap

GROUP_ALPHA = 0.55
HALT_ALPHA = 0.6
DROP_DARKEN = 0.72  # share of black over a dropped patch
PANEL_PX = 192  # target panel side in pixels (frames are upscaled by an integer factor towards it)
GIF_PANEL_PX = 128  # the same for GIF panels (every frame is stored: keep the file small)
NUMBER_MIN_PX = 28  # group numbers are drawn on patches at least this large
RAN_TO_END = (0.55, 0.85, 1.0)  # light blue: halted only by the last block (which halts every token)
RAN_TO_END_ALPHA = 0.35
# 18 well-separated colours (Sasha Trubetskoy's "20 distinct colours" without white, black, grey)
PALETTE = ("#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
           "#bfef45", "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000", "#aaffc3",
           "#808000", "#ffd8b1")


def _rgb(hex_colour: str) -> tp.Tuple[float, float, float]:
    h = hex_colour.lstrip("#")
    return tuple(int(h[i:i + 2], 16) / 255 for i in (0, 2, 4))


def halt_colour(index: int, count: int) -> tp.Tuple[tp.Tuple[float, float, float], float]:
    """(colour, alpha) of the ``index``-th of ``count`` halting blocks: early halts from yellow
    (first) to purple, the last block light blue."""
    if index == count - 1:
        return RAN_TO_END, RAN_TO_END_ALPHA
    from matplotlib import colormaps

    position = 0.92 - 0.6 * index / max(1, count - 2)
    return tuple(colormaps["plasma"](position)[:3]), HALT_ALPHA


@dataclasses.dataclass
class Style:
    """Per-figure colour and number of every merged group (keyed by group id)."""

    colours: tp.Dict[int, tp.Tuple[float, float, float]]
    numbers: tp.Dict[int, int]


def group_style(tmap: TokenMap) -> Style:
    """Greedy colouring: groups that touch (4-neighbours in any frame of any step) get different
    colours, each group the least used allowed colour; numbers 1.. in order of group id."""
    ids: tp.List[int] = []
    touching: tp.Dict[int, set] = {}
    for step in tmap.steps:
        g = np.where(step.state == MERGED, step.group, -1)
        ids.extend(int(v) for v in np.unique(g) if v >= 0)
        for a, b in ((g[:, :, 1:], g[:, :, :-1]), (g[:, 1:, :], g[:, :-1, :])):
            pairs = (a != b) & (a >= 0) & (b >= 0)
            for u, v in zip(a[pairs].tolist(), b[pairs].tolist()):
                touching.setdefault(u, set()).add(v)
                touching.setdefault(v, set()).add(u)
    ids = sorted(set(ids))
    used = [0] * len(PALETTE)
    chosen: tp.Dict[int, int] = {}
    for gid in ids:
        taken = {chosen[n] for n in touching.get(gid, ()) if n in chosen}
        options = [k for k in range(len(PALETTE)) if k not in taken] or list(range(len(PALETTE)))
        chosen[gid] = min(options, key=lambda k: (used[k], k))
        used[chosen[gid]] += 1
    return Style(colours={g: _rgb(PALETTE[k]) for g, k in chosen.items()},
                 numbers={g: n + 1 for n, g in enumerate(ids)})


def upscale_factor(frame_side: int, panel_px: int = PANEL_PX) -> int:
    return max(1, round(panel_px / frame_side))


def compose(frame: np.ndarray, step: tp.Optional[Step], t: int, tmap: TokenMap, scale: int,
            style: Style) -> np.ndarray:
    """uint8 [H*scale, W*scale, 3]: ``frame`` (uint8 [H, W, 3]) with slice ``t`` of ``step`` over it."""
    img = np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1).astype(np.float32) / 255.0
    if step is None:
        return (img * 255 + 0.5).astype(np.uint8)
    _, gh, gw = tmap.grid
    ps = tmap.patch_size * scale
    state, group, halt = step.state[t], step.group[t], step.halt_block[t]
    rgb = np.zeros((gh, gw, 3), np.float32)
    alpha = np.zeros((gh, gw), np.float32)
    for i in range(gh):
        for j in range(gw):
            if state[i, j] == MERGED:
                rgb[i, j], alpha[i, j] = style.colours[int(group[i, j])], GROUP_ALPHA
            elif state[i, j] == HALTED:
                rgb[i, j], alpha[i, j] = halt_colour(tmap.halting_blocks.index(int(halt[i, j])),
                                                     len(tmap.halting_blocks))
            elif state[i, j] == DROPPED:
                alpha[i, j] = DROP_DARKEN  # rgb stays black
    up = lambda a: np.repeat(np.repeat(a, ps, axis=0), ps, axis=1)  # noqa: E731
    a = up(alpha)[..., None]
    img = img * (1 - a) + up(rgb) * a

    yy, xx = np.mgrid[0:gh * ps, 0:gw * ps]
    hatch = ((xx + yy) % max(6, ps // 4)) < max(1, scale // 2 + 1)
    img[hatch & up(state == DROPPED)] = 0.78

    # boundaries: none inside a merged group, white between a merged token and any other, faint elsewhere
    line = max(1, scale // 2)
    for i in range(gh):
        for j in range(gw):
            for di, dj in ((0, 1), (1, 0)):
                ni, nj = i + di, j + dj
                if ni >= gh or nj >= gw:
                    continue
                a_merged, b_merged = state[i, j] == MERGED, state[ni, nj] == MERGED
                if a_merged and b_merged and group[i, j] == group[ni, nj]:
                    continue
                strength = 0.9 if (a_merged or b_merged) else 0.25
                edge = (i + 1) * ps if di else (j + 1) * ps  # pixel index of the shared edge
                lo, hi = edge - (line + 1) // 2, edge + line // 2
                sl = ((slice(lo, hi), slice(j * ps, (j + 1) * ps)) if di
                      else (slice(i * ps, (i + 1) * ps), slice(lo, hi)))
                img[sl] = img[sl] * (1 - strength) + strength
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def group_labels(step: Step, t: int, tmap: TokenMap, scale: int,
                 style: Style) -> tp.List[tp.Tuple[float, float, str]]:
    """(x, y, text) in panel pixels of the group number of every merged patch of slice ``t``
    (none when patches are smaller than ``NUMBER_MIN_PX``)."""
    ps = tmap.patch_size * scale
    if ps < NUMBER_MIN_PX:
        return []
    rows, cols = np.nonzero(step.state[t] == MERGED)
    return [((j + 0.5) * ps - 0.5, (i + 0.5) * ps - 0.5, str(style.numbers[int(step.group[t, i, j])]))
            for i, j in zip(rows.tolist(), cols.tolist())]


def _slice_frame(frames: np.ndarray, t: int, tubelet: int) -> int:
    """Frame shown for token slice ``t``: the first frame of its tubelet."""
    return min(t * tubelet, len(frames) - 1)


def legend_entries(tmap: TokenMap) -> tp.List[tp.Tuple[str, tp.Any, tp.Optional[str]]]:
    """(label, face colour RGBA or "groups", hatch) of every state that occurs in ``tmap``."""
    present = set()
    for step in tmap.steps:
        present.update(int(s) for s in np.unique(step.state))
    kept = "kept / still running" if tmap.halting_blocks else "kept (its own token)"
    entries = [(kept, (1, 1, 1, 0.0), None)]
    if MERGED in present:
        entries.append(("merged: same number = same token (also across frames)", "groups", None))
    if DROPPED in present:
        label = "dropped by the Glimpser" if tmap.halting_blocks else "dropped (pruned / deleted)"
        entries.append((label, (0.1, 0.1, 0.1, DROP_DARKEN), "////"))
    if tmap.halting_blocks:
        last = tmap.halting_blocks[-1]
        for k, layer in enumerate(tmap.halting_blocks):
            text = f"halted at block {layer}" if layer != last else f"ran to the last block ({layer})"
            colour, alpha = halt_colour(k, len(tmap.halting_blocks))
            entries.append((text, (*colour, alpha), None))
    return entries


def render_png(tmap: TokenMap, frames: np.ndarray, path: str, title: str = "") -> str:
    """A grid of panels: rows = the input and each reducing step, columns = token slices."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patheffects as pe
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    T = tmap.grid[0]
    scale = upscale_factor(frames.shape[1])
    style = group_style(tmap)
    rows = [None] + list(tmap.steps)
    dpi = 100
    panel_in = frames.shape[1] * scale / dpi
    entries = legend_entries(tmap)
    ncol = min(4, len(entries))
    label_in, top_in, bottom_in = 1.9, 1.0, 0.2 + 0.26 * -(-len(entries) // ncol)
    fig_w = label_in + T * (panel_in + 0.06) + 0.15
    fig_h = top_in + len(rows) * (panel_in + 0.08) + bottom_in
    fig = plt.figure(figsize=(fig_w, fig_h), dpi=dpi)
    outline = [pe.withStroke(linewidth=1.6, foreground="black")]
    for r, step in enumerate(rows):
        for t in range(T):
            left = (label_in + t * (panel_in + 0.06)) / fig_w
            bottom = (fig_h - top_in - (r + 1) * (panel_in + 0.08) + 0.08) / fig_h
            ax = fig.add_axes((left, bottom, panel_in / fig_w, panel_in / fig_h))
            f = _slice_frame(frames, t, tmap.tubelet_size)
            ax.imshow(compose(frames[f], step, t, tmap, scale, style), interpolation="nearest")
            if step is not None:
                for x, y, text in group_labels(step, t, tmap, scale, style):
                    ax.text(x, y, text, ha="center", va="center", fontsize=7, color="white",
                            path_effects=outline)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_linewidth(0.5)
            if r == 0:
                span = f"frame {f}" if tmap.tubelet_size == 1 else f"frames {f}\u2013{f + tmap.tubelet_size - 1}"
                ax.set_title(f"t'={t}\n{span}", fontsize=9)
            if t == 0:
                text = "input" if step is None else _wrap_title(step.title)
                sub = _state_summary(step) if step is not None else (
                    f"{tmap.tokens_in - 1} patches + CLS" if tmap.cls_token else f"{tmap.tokens_in} tokens")
                ax.text(-0.06, 0.5, f"{text}\n{sub}", transform=ax.transAxes, ha="right", va="center",
                        fontsize=8.5, linespacing=1.3)
    if title:
        fig.suptitle(title, fontsize=10.5, y=1 - 0.1 / fig_h, va="top")
    handles = [_GroupHandle(label, style) if face == "groups" else
               Patch(facecolor=face, edgecolor="0.3", hatch=hatch, label=label, linewidth=0.6)
               for label, face, hatch in entries]
    fig.legend(handles=handles, handler_map={_GroupHandle: _GroupHandler()}, loc="lower center", ncol=ncol,
               fontsize=9, frameon=False, bbox_to_anchor=(0.5, 0.05 / fig_h), handlelength=2.8,
               handleheight=1.2, columnspacing=2.0)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if not path.lower().endswith(".png"):
        fig.savefig(path, dpi=dpi)  # any other format matplotlib writes (svg, pdf, jpg)
        plt.close(fig)
        return path
    import io

    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    plt.close(fig)
    # a 256-colour palette halves the file and is indistinguishable here (flat overlays, text)
    image = Image.open(buffer).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    image.save(path, optimize=True)
    return path


def _wrap_title(title: str) -> str:
    head, sep, tail = title.rpartition(": ")
    return f"{head}\n{tail}" if sep else title


def _state_summary(step: Step) -> str:
    c = step.counts()
    parts = []
    if c["merged"]:
        parts.append(f"{c['merged']} patches in {c['groups']} merged")
    if c["dropped"]:
        parts.append(f"{c['dropped']} dropped")
    if c["halted"]:
        parts.append(f"{c['halted']} halted")
    return "\n".join(parts) if parts else "nothing removed"


class _GroupHandle:
    def __init__(self, label: str, style: Style):
        self.label, self.style = label, style

    def get_label(self) -> str:
        return self.label


class _GroupHandler:
    """Legend key for merged groups: a strip of four palette colours."""

    def legend_artist(self, legend, orig_handle, fontsize, handlebox):
        from matplotlib.patches import Rectangle

        x0, y0 = handlebox.xdescent, handlebox.ydescent
        w, h = handlebox.width / 4, handlebox.height
        for k in range(4):
            handlebox.add_artist(Rectangle((x0 + k * w, y0), w, h, facecolor=(*_rgb(PALETTE[k]), GROUP_ALPHA),
                                           edgecolor="0.3", linewidth=0.4, transform=handlebox.get_transform()))
        return handlebox


def render_gif(tmap: TokenMap, frames: np.ndarray, path: str, ms_per_frame: int = 250) -> str:
    """Every frame of the clip, one panel per row of the PNG side by side (input, then each step)."""
    from PIL import Image, ImageDraw

    scale = upscale_factor(frames.shape[1], GIF_PANEL_PX)
    style = group_style(tmap)
    rows = [None] + list(tmap.steps)
    names = ["input"] + [s.title.rpartition(": ")[0] or s.title for s in tmap.steps]
    side = frames.shape[1] * scale
    label_h, gap = 16, 4
    images = []
    for f in range(len(frames)):
        t = min(f // tmap.tubelet_size, tmap.grid[0] - 1)
        canvas = Image.new("RGB", (len(rows) * (side + gap) - gap, side + label_h), "white")
        draw = ImageDraw.Draw(canvas)
        for k, (step, name) in enumerate(zip(rows, names)):
            x0 = k * (side + gap)
            canvas.paste(Image.fromarray(compose(frames[f], step, t, tmap, scale, style)), (x0, label_h))
            draw.text((x0 + 2, 2), f"{name}  (frame {f})" if k == 0 else name, fill="black")
            if step is not None:
                for x, y, text in group_labels(step, t, tmap, scale, style):
                    draw.text((x0 + x, label_h + y), text, fill="white", anchor="mm", stroke_width=1,
                              stroke_fill="black")
        images.append(canvas)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=ms_per_frame, loop=0, optimize=True)
    return path
