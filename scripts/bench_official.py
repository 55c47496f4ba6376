"""Each method against its official implementation, same weights and input, timed side by side in one process.

The official code is read from a git directory with ``git show`` into a temporary folder, exactly as the golden
generators do (``tests/reference/make_{tome,sta,vid_tldr}_golden.py``'s ``import_official``), and built at a
realistic shape (default ViT-S, 16 frames of 112 px, batch 4: 392 tokens); ours gets its weights:

* ToMe (facebookresearch/ToMe): timm ``Block``s in the VideoMAE layout patched by ``tome.patch.timm.apply_patch``
  (``prop_attn`` off, as ours for MAE), ``model.r = r``; ours ``tome`` r.
* STA (Mark12Ding/STA): ``model_vit.VisionTransformer(r=...)``; ours ``sta`` r, from its checkpoint file.
* vid-TLDR (mlvlab/vid-TLDR): UMT's ``PretrainVisionTransformerEncoder`` with ``vidTLDR_r``; ours ``vid_tldr``
  r (the block stack: its final per-token ``norm`` has no counterpart in ours, as in the golden test).

Every repeat times the official model, ours (SDPA wherever the method leaves the kernel free) and ours with
``fused_attention: false`` (the explicit softmax the official code always runs), in an order that rotates
between repeats. Printed: the median over repeats of (official time / ours) with a seeded bootstrap 95%
interval (> 1: ours faster), the 1-minute load average, the regime.

    python scripts/bench_official.py [--methods tome,sta,vid_tldr] [--img-size 112] [--batch 4] [--repeats 7]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from functools import partial

import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import harness  # noqa: E402
from harness.models.timm_import import import_timm  # noqa: E402
from harness.report.stats import paired_ratio  # noqa: E402

import_timm()
warnings.filterwarnings("ignore", message="Overwriting .* in registry")  # STA's model_vit re-registers timm names
MIRROR = "/work/.mirror"
REPOS = {"tome": f"{MIRROR}/facebookresearch+ToMe/repo", "sta": f"{MIRROR}/Mark12Ding+STA/repo",
         "vid_tldr": f"{MIRROR}/mlvlab+vid-TLDR/repo"}
VIT_S = dict(embed_dim=384, depth=12, num_heads=6)
SETTINGS = {"tome": {"r": 16}, "sta": {"r": 16}, "vid_tldr": {"r": [100, 50, 25]}}  # as scripts/regime_ratios.py


def dims(args) -> dict:
    return dict(VIT_S, patch_size=16, tubelet_size=2, num_frames=16, img_size=args.img_size, num_classes=400)


def perturb(model: nn.Module, seed: int) -> None:
    """Non-trivial biases and norms (zeros would let a mis-mapped key pass unnoticed)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)


def tome_pair(args, workdir):
    from tests.reference import make_tome_golden as golden

    _, _, patch, commit = golden.import_official(args.tome_repo, workdir)
    from timm.models.vision_transformer import Block

    c = dims(args)
    torch.manual_seed(0)
    official = golden.make_model_class(Block)(c).eval()
    perturb(official, 0)
    dim = c["embed_dim"]
    with torch.no_grad():
        for blk in official.blocks:
            blk.attn.qkv.bias[dim:2 * dim] = 0.0  # VideoMAE: q and v biases only
    state = {}
    for k, v in official.state_dict().items():
        if k.endswith("attn.qkv.bias"):
            state[k.replace("qkv.bias", "q_bias")], state[k.replace("qkv.bias", "v_bias")] = v[:dim], v[2 * dim:]
        else:
            state[k] = v
    patch.apply_patch(official, trace_source=False, prop_attn=False)
    official.r = SETTINGS["tome"]["r"]

    def ours(fused):
        model = harness.build_model("video_vit", method="tome", method_args={"r": SETTINGS["tome"]["r"]},
                                    fused_attention=fused, **c).eval()
        model.load_state_dict(state, strict=True)
        return model

    return official, official, ours, commit


def sta_pair(args, workdir):
    from tests.reference import make_sta_golden as golden

    module, commit, _ = golden.import_official(args.sta_repo, workdir)
    c = dims(args)
    torch.manual_seed(0)
    official = module.VisionTransformer(
        img_size=c["img_size"], patch_size=c["patch_size"], in_chans=3, num_classes=c["num_classes"],
        embed_dim=c["embed_dim"], depth=c["depth"], num_heads=c["num_heads"], mlp_ratio=4, qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6), init_values=0.0, all_frames=c["num_frames"],
        tubelet_size=c["tubelet_size"], use_mean_pooling=True, r=SETTINGS["sta"]["r"]).eval()
    perturb(official, 0)
    path = os.path.join(workdir, "sta_official.pth")
    torch.save({"module": official.state_dict()}, path)

    def ours(fused):
        return harness.build_model("video_vit", method="sta", method_args={"r": SETTINGS["sta"]["r"]},
                                   checkpoint=path, fused_attention=fused, **c).eval()

    return official, official, ours, commit


def vid_tldr_pair(args, workdir):
    from tests.reference import make_vid_tldr_golden as golden

    _, vit, commit = golden.import_official(args.vid_tldr_repo, workdir)
    c = dims(args)
    r = list(SETTINGS["vid_tldr"]["r"]) + [0] * (c["depth"] - len(SETTINGS["vid_tldr"]["r"]))
    torch.manual_seed(0)
    official = vit.PretrainVisionTransformerEncoder(
        img_size=c["img_size"], patch_size=c["patch_size"], embed_dim=c["embed_dim"], depth=c["depth"],
        num_heads=c["num_heads"], mlp_ratio=4.0, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6),
        init_values=0.0, num_frames=c["num_frames"], tubelet_size=c["tubelet_size"], drop_path_rate=0.0,
        clip_return_layer=0, vidTLDR_use=True, vidTLDR_r=r).eval()
    perturb(official, 0)
    state = {k: v for k, v in official.state_dict().items() if not k.startswith("norm.")}

    def ours(fused):
        model = harness.build_model("video_vit", method="vid_tldr", method_args={"r": SETTINGS["vid_tldr"]["r"]},
                                    fused_attention=fused, **dict(c, num_classes=0)).eval()
        missing, unexpected = model.load_state_dict(state, strict=False)
        assert sorted(missing) == ["fc_norm.bias", "fc_norm.weight"] and not unexpected, (missing, unexpected)
        return model

    def run_official(clip):
        official.info.update(size=None, source=None)  # per forward, as the official forward_features does
        return official(clip)

    return official, run_official, ours, commit


PAIRS = {"tome": tome_pair, "sta": sta_pair, "vid_tldr": vid_tldr_pair}


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def compare(method: str, args) -> str:
    with tempfile.TemporaryDirectory() as workdir:
        _, official, build_ours, commit = PAIRS[method](args, workdir)
        subjects = {"official": official, "ours": build_ours(True), "ours_explicit": build_ours(False)}
        c = dims(args)
        torch.manual_seed(1)
        clip = torch.randn(args.batch, 3, c["num_frames"], c["img_size"], c["img_size"])
        times = {name: [] for name in subjects}
        loads = []
        with torch.inference_mode():
            outs = {name: fn(clip) for name, fn in subjects.items()}
            for _ in range(args.warmup):
                for fn in subjects.values():
                    fn(clip)
            names = list(subjects)
            for rep in range(args.repeats):
                loads.append(_load())
                for name in names[rep % 3:] + names[:rep % 3]:
                    t0 = time.perf_counter()
                    for _ in range(args.iters):
                        subjects[name](clip)
                    times[name].append((time.perf_counter() - t0) / args.iters)
    tokens = subjects["ours"].token_counts
    check = ""
    if method in ("tome", "sta"):
        check = (f"; logits max |diff| vs official: ours {(outs['ours'] - outs['official']).abs().max().item():.1e}, "
                 f"ours explicit {(outs['ours_explicit'] - outs['official']).abs().max().item():.1e}")
    med = lambda v: 1e3 * sorted(v)[len(v) // 2]  # noqa: E731
    parts = [f"{method} {SETTINGS[method]} vs {REPOS[method].split('/')[-2].replace('+', '/')}@{commit[:7]}: "
             f"official {med(times['official']):.1f} ms, ours {med(times['ours']):.1f} ms "
             f"(kernels {'+'.join(sorted(set(subjects['ours'].last_stats.attention_kernel)))}), "
             f"ours explicit {med(times['ours_explicit']):.1f} ms"]
    for name in ("ours", "ours_explicit"):
        r = paired_ratio(times["official"], times[name])
        parts.append(f"official/{name} {r['ratio']:.3f}x [{r['low']:.3f}-{r['high']:.3f}]")
    return (", ".join(parts) + f"; tokens per block {tokens}; load avg {min(loads):.2f}-{max(loads):.2f} on "
            f"{os.cpu_count()} cores{check}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--methods", default="tome,sta,vid_tldr")
    ap.add_argument("--img-size", type=int, default=112)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--iters", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int)
    for name, repo in REPOS.items():
        ap.add_argument(f"--{name.replace('_', '-')}-repo", default=repo, help="git directory of the official code")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(PAIRS))
    if unknown:
        print(f"bench_official: unknown method(s) {unknown}; choose from {', '.join(PAIRS)}", file=sys.stderr)
        return 2
    c = dims(args)
    print(f"# ViT-S {c['num_frames']}x{c['img_size']}, batch {args.batch}, fp32, cpu, {torch.get_num_threads()} "
          f"threads, torch {torch.__version__}; {args.repeats} repeats x {args.iters} forwards, order rotating; "
          "official/ours > 1: ours faster (median of paired ratios, bootstrap 95%)", flush=True)
    for method in methods:
        print(compare(method, args), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
