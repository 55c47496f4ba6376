"""Make the dense ViT-S of ``suites/minik_haltingvt.yaml`` from the public VideoMAE ViT-S/16 K400 checkpoint.

HaltingVT's Mini-Kinetics protocol (8 frames x 32, one 224 view, inputs in [-1, 1], 200 classes) does
not fit VideoMAE's K400 model (16 frames, tubelet 2, ImageNet mean/std, 400 classes), and no dense
Mini-K checkpoint is public. This script rewrites the K400 model, **without training**, into a model
with HaltingVT's backbone dims (``haltingvt_deit_s8``: 384-d, 12 blocks, 8 frames, tubelet 1, 200
classes) that computes exactly what the K400 model computes on each frame shown twice:

* tubelet 2 -> 1: the patch kernel's two temporal slices are summed, so an 8-frame clip gives the
  same 8 x 14 x 14 tokens as the 16-frame clip with every frame repeated (same token count, hence the
  same fixed sinusoid positions);
* normalisation: the patch embedding is linear, so ImageNet mean/std is folded into it:
  ``W' = W * 0.5 / std_c`` and ``b' = b + sum W * (0.5 - mean_c) / std_c`` take [-1, 1] inputs
  (``(x - 0.5) / 0.5``) to the same embedding as ``(x - mean) / std``;
* head: the rows of the 200 Mini-K classes are taken from the 400-way K400 head by class name
  (Mini-K's classes are K400 classes; AR-Net's ``minik_classInd.txt`` order).

Mini-K's validation videos are K400 validation videos, so the K400 model never trained on them.
Its accuracy at 8 x 32 is our own reference (nothing published); the suite also fine-tunes STTM
from it on Mini-K's training list.

    python scripts/minik_vit_from_videomae.py --videomae vit_s_k400_ft.pth \\
        --k400-labels label_map_k400.txt --minik-classes minik_classInd.txt --out minik_vit_s.pth
"""
from __future__ import annotations

import argparse
import os
import sys
import typing as tp

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MINIK_MEAN = MINIK_STD = (0.5, 0.5, 0.5)


def convert(state: tp.Mapping[str, tp.Any], k400_names: tp.Sequence[str], minik_names: tp.Sequence[str],
            src_mean: tp.Sequence[float] = IMAGENET_MEAN, src_std: tp.Sequence[float] = IMAGENET_STD,
            dst_mean: tp.Sequence[float] = MINIK_MEAN, dst_std: tp.Sequence[float] = MINIK_STD) -> dict:
    """The converted state dict (our VideoViT names, as ``harness.models.checkpoint.read_checkpoint`` gives).

    For any clip ``x`` in [0, 1] pixels: ``new((x - dst_mean) / dst_std)`` equals
    ``old(repeat_each_frame((x - src_mean) / src_std))[minik classes]``.
    """
    import torch

    missing = [n for n in minik_names if n not in k400_names]
    if missing:
        raise ValueError(f"{len(missing)} Mini-K classes are not K400 classes: {missing[:5]}")
    if len(state["head.weight"]) != len(k400_names):
        raise ValueError(f"the checkpoint's head has {len(state['head.weight'])} classes, "
                         f"the K400 label map {len(k400_names)}")
    out = {k: v.clone() for k, v in state.items()}
    w = state["patch_embed.proj.weight"].double()  # [C, 3, t, p, p]
    b = state["patch_embed.proj.bias"].double()
    w = w.sum(dim=2, keepdim=True)  # tubelet t -> 1: a frame repeated t times
    m_src, s_src = (torch.tensor(v, dtype=torch.float64).view(1, 3, 1, 1, 1) for v in (src_mean, src_std))
    m_dst, s_dst = (torch.tensor(v, dtype=torch.float64).view(1, 3, 1, 1, 1) for v in (dst_mean, dst_std))
    # x_src = (x - m_src) / s_src with x = x_dst * s_dst + m_dst  =>  x_src = x_dst * s_dst / s_src + (m_dst - m_src) / s_src
    out["patch_embed.proj.weight"] = (w * s_dst / s_src).float()
    out["patch_embed.proj.bias"] = (b + (w * (m_dst - m_src) / s_src).sum(dim=(1, 2, 3, 4))).float()
    rows = torch.tensor([list(k400_names).index(n) for n in minik_names])
    out["head.weight"] = state["head.weight"][rows].clone()
    out["head.bias"] = state["head.bias"][rows].clone()
    return out


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videomae", required=True, help="fine-tuned VideoMAE ViT-S/16 K400 checkpoint "
                        "(official {'module': ...} or mmaction2 layout)")
    parser.add_argument("--k400-labels", required=True, help="the 400 K400 class names in the checkpoint's "
                        "head order (mmaction2 tools/data/kinetics/label_map_k400.txt)")
    parser.add_argument("--minik-classes", required=True, help="AR-Net's minik_classInd.txt (200 names)")
    parser.add_argument("--out", required=True, help="output checkpoint ({'module': state_dict})")
    parser.add_argument("--dims", action="append", default=[], metavar="KEY=VALUE",
                        help="backbone dims that differ from haltingvt_deit_s8 (tests: embed_dim=32 ...)")
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import torch

    from harness.build import build_model
    from harness.data.annotations import read_label_map
    from harness.models.checkpoint import read_checkpoint

    state, layout = read_checkpoint(args.videomae)
    new = convert(state, read_label_map(args.k400_labels), read_label_map(args.minik_classes))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.save({"module": new}, args.out)
    dims = {k: int(v) for k, v in (d.split("=", 1) for d in args.dims)}
    build_model("haltingvt_deit_s8", checkpoint=args.out, **dims)  # strict load: it fits the suite's backbone
    print(f"{args.videomae} ({layout} layout) -> {args.out}: 8 frames, tubelet 1, inputs in [-1, 1], "
          f"{len(new['head.weight'])} classes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
