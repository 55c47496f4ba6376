"""Regenerate ``tests/reference/vid_tldr_golden.pt`` by running the OFFICIAL vid-TLDR code.

    python tests/reference/make_vid_tldr_golden.py [--repo /path/to/vid-TLDR/.git] [--out PATH]

``--repo`` is a git directory of mlvlab/vid-TLDR (commit a25051d; the search tool's ``fetch`` gives
/work/.mirror/mlvlab+vid-TLDR/repo). ``multi_modality/utils/vid_TLDR.py`` (the method) and
``multi_modality/models/backbones/vit/vit.py`` (the UMT vision encoder that calls it) are read with
``git show`` into a temporary directory and imported; einops (imported, never used) gets a stand-in,
timm is the installed one (``harness.models.timm_import.import_timm`` first). Nothing of the official code is
stored. Not run by the tests, which only load the .pt.

The golden (all inputs fp16-representable or stored exactly; every output is the official one):

* ``functions``: chains (inputs fp16-exact, stored in half; cast to the chain's dtype) of official ``vidTLDR(x, attn, info, layer)`` calls (``source_trace`` on) on
  random hidden states and random attention probabilities, one per merging step, with the r list
  exercising an absolute count, a fraction and the ``N // 2`` cap, odd N, several sizes per batch
  (non-integer sizes from the earlier steps), in fp32 and fp16. Per step: the official saliency
  (``get_objective_score``), the matching indices read from the closure that ``merging`` returns
  (``unm_idx, src_idx, dst_idx, src_so``), merged x, size and source.
* ``degenerate``: probabilities for which the official saliency is NaN (an exact 0 probability;
  all tokens equally sharp), with the official (NaN) saliency.
* ``model``: a tiny official ``PretrainVisionTransformerEncoder`` (C=32, 2 heads, depth 4, 4 frames of
  32x32, patch 8 -> 64 tokens, q/v biases, LN eps 1e-6) with perturbed random weights, stored in
  fp16 (exact), a fp16-exact clip, and for several ``vidTLDR_r`` lists: tokens entering each block and
  each MLP, the tokens after the last block (before the encoder norm), ``info["size"]`` and
  ``info["source"]``; ``x0`` is the official embedded input (patch embedding + sinusoid positions).
  Sources are stored as membership (``> 0``): the official tracker merges them with ``amax`` of
  saliency-weighted rows, so a patch belongs to a token iff its entry is non-zero. The seed is searched so that no matching or background decision lies within
  ``MARGIN`` of a tie (a faithful port reproduces every decision despite rounding differences).
"""
import argparse
import inspect
import os
import subprocess
import sys
import tempfile
import types
from functools import partial

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FILES = {"multi_modality/utils/vid_TLDR.py": "utils/vid_TLDR.py",
         "multi_modality/models/backbones/vit/vit.py": "vidtldr_official_vit.py"}
MODEL = dict(img_size=32, patch_size=8, embed_dim=32, depth=4, num_heads=2, num_frames=4, tubelet_size=1,
             batch=2)
SCHEDULES = ([12, 0.25, 0, 5], [0, 20, 0.5, 0], [0.5, 0.3, 0.2, 0.1], [100, 100, 100, 100])
# function-level chains: (dtype, batch, heads, N0, C, r list, probability logit scales)
CHAINS = {"fp32": (torch.float32, 2, 2, 33, 16, [5, 0.25, 40], (1.0, 4.0, 0.5)),
          "fp16": (torch.float16, 2, 2, 20, 8, [4, 0.3], (2.0, 1.0))}
MARGIN = 1e-4


def import_official(repo: str, workdir: str):
    commit = subprocess.run(["git", "--git-dir", repo, "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()
    os.makedirs(os.path.join(workdir, "utils"))
    open(os.path.join(workdir, "utils", "__init__.py"), "w").close()
    for src, dst in FILES.items():
        text = subprocess.run(["git", "--git-dir", repo, "show", f"HEAD:{src}"], check=True,
                              capture_output=True, text=True).stdout
        with open(os.path.join(workdir, dst), "w") as f:
            f.write(text)
    sys.path.insert(0, ROOT)
    from harness.models.timm_import import import_timm

    import_timm()
    einops = types.ModuleType("einops")
    einops.rearrange = None  # imported by vid_TLDR.py, never called
    sys.modules.setdefault("einops", einops)
    for name in [m for m in sys.modules if m == "utils" or m.startswith("utils.")]:
        del sys.modules[name]  # our own package of that name must not shadow the official one
    sys.path.insert(0, workdir)
    import utils.vid_TLDR as method
    import vidtldr_official_vit as vit

    assert vit.vidTLDR is method.vidTLDR
    return method, vit, commit


def record_merging(method):
    """Wrap the official ``merging`` (looked up as a global by ``vidTLDR``) to log its decisions."""
    original, log = method.merging, []

    def merging(metric, r_merge, score_obj):
        merge = original(metric, r_merge=r_merge, score_obj=score_obj)
        c = inspect.getclosurevars(merge).nonlocals
        with torch.no_grad():  # margins only: the same scores, recomputed
            m = metric / metric.norm(dim=-1, keepdim=True)
            scores = ((m[..., ::2, :] @ m[..., 1::2, :].transpose(-1, -2) + 1) / 2).float()
            top2 = scores.topk(2, dim=-1).values if scores.shape[-1] > 1 else None
            best = scores.max(dim=-1).values.sort(dim=-1, descending=True).values
        log.append({"score_obj": score_obj, "unm_idx": c["unm_idx"], "src_idx": c["src_idx"],
                    "dst_idx": c["dst_idx"], "src_so": c["src_so"], "r_merge": r_merge,
                    "cut_gap": (best[:, r_merge - 1] - best[:, r_merge]).min().item()
                    if best.shape[1] > r_merge else float("inf"),
                    "dst_gap": (top2[..., 0] - top2[..., 1]).gather(1, c["src_idx"][..., 0]).min().item()
                    if top2 is not None else float("inf")})
        return merge

    method.merging = merging
    return log


def saliency_gap(probs: torch.Tensor) -> float:
    """Distance of the normalised sharpness to its mean (the background threshold), smallest token."""
    p = probs.float().mean(dim=1)
    e = (p * p.log()).sum(dim=2)
    e = (e - e.amin(dim=1, keepdim=True)) / (e - e.amin(dim=1, keepdim=True)).amax(dim=1, keepdim=True)
    return (e - e.mean(dim=1, keepdim=True)).abs().min().item()


def run_chain(method, log, dtype, batch, heads, n0, dim, r, scales, gen):
    info = {"use": True, "r": list(r), "source_trace": True, "source": None, "size": None}
    x = (torch.randn(batch, n0, dim, generator=gen) * 2).half().to(dtype)  # inputs fp16-exact, stored in half
    chain = {"r": list(r), "dtype": str(dtype), "x0": x.half(), "steps": []}
    for layer, scale in enumerate(scales):
        n = x.shape[1]
        probs = (torch.randn(batch, heads, n, n, generator=gen) * scale).softmax(-1).half().to(dtype)
        del log[:]
        x = method.vidTLDR(x, probs, info, layer)
        (rec,) = log
        chain["steps"].append({"probs": probs.half(), "x": x, "size": info["size"], "source": info["source"] > 0,
                               "saliency": rec["score_obj"], "unm_idx": rec["unm_idx"],
                               "src_idx": rec["src_idx"], "dst_idx": rec["dst_idx"], "src_so": rec["src_so"],
                               "r_merge": rec["r_merge"]})
        margin = min(rec["cut_gap"], rec["dst_gap"], saliency_gap(probs))
        zero = (rec["src_so"] == 0).sum().item()
        if margin < MARGIN or not 0 < zero < rec["src_so"].numel():  # background and foreground sources
            return None
    return chain


def build_model(vit, seed: int):
    c = MODEL
    torch.manual_seed(seed)
    enc = vit.PretrainVisionTransformerEncoder(
        img_size=c["img_size"], patch_size=c["patch_size"], embed_dim=c["embed_dim"], depth=c["depth"],
        num_heads=c["num_heads"], mlp_ratio=4.0, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6),
        init_values=0.0, num_frames=c["num_frames"], tubelet_size=c["tubelet_size"], drop_path_rate=0.0,
        clip_return_layer=0, vidTLDR_use=True, vidTLDR_r=[0] * c["depth"]).eval()
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # q/v biases and LayerNorms non-trivial too
            p.copy_(p.half().float())  # fp16-representable: stored exactly in half
    clip = torch.randn(c["batch"], 3, c["num_frames"], c["img_size"], c["img_size"]).half().float()
    return enc, clip


def run_model(enc, clip, schedule, log):
    enc.info.update(r=list(schedule), source_trace=True)
    tokens_in, tokens_mlp, captured, gaps = [], [], {}, []
    hooks = [b.register_forward_pre_hook(lambda m, a: tokens_in.append(a[0].shape[1])) for b in enc.blocks]
    hooks += [b.norm2.register_forward_pre_hook(lambda m, a: tokens_mlp.append(a[0].shape[1]))
              for b in enc.blocks]
    hooks.append(enc.norm.register_forward_pre_hook(lambda m, a: captured.update(x=a[0])))
    hooks.append(enc.blocks[0].register_forward_pre_hook(lambda m, a: captured.update(x0=a[0])))
    for b in enc.blocks:
        hooks.append(b.attn.register_forward_hook(lambda m, a, o: gaps.append(saliency_gap(o[1]))))
    del log[:]
    with torch.no_grad():
        enc(clip)
    for h in hooks:
        h.remove()
    merging = [i for i, n in enumerate(tokens_in) if n != tokens_mlp[i]]
    margin = min([gaps[i] for i in merging] + [min(r["cut_gap"], r["dst_gap"]) for r in log])
    zero = sum((r["src_so"] == 0).sum().item() for r in log)
    total = sum(r["src_so"].numel() for r in log)
    out = {"r": list(schedule), "tokens_in": tokens_in, "tokens_mlp": tokens_mlp, "x": captured["x"],
           "size": enc.info["size"], "source": enc.info["source"] > 0}
    return out, captured["x0"], margin, 0 < zero < total


def degenerate_cases(method):
    g = torch.Generator().manual_seed(1)
    zeros = torch.randn(1, 2, 8, 8, generator=g).softmax(-1)
    zeros[:, :, 3] = 0.0
    zeros[:, :, 3, 5] = 1.0
    uniform = torch.full((2, 3, 6, 6), 1 / 6)
    return [{"probs": p, "saliency": method.get_objective_score(p.clone())} for p in (zeros, uniform)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", default="/work/.mirror/mlvlab+vid-TLDR/repo")
    parser.add_argument("--out", default=os.path.join(HERE, "vid_tldr_golden.pt"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        method, vit, commit = import_official(args.repo, workdir)
        log = record_merging(method)
        functions = {}
        for name, (dtype, batch, heads, n0, dim, r, scales) in CHAINS.items():
            for seed in range(500):
                chain = run_chain(method, log, dtype, batch, heads, n0, dim, r, scales,
                                  torch.Generator().manual_seed(seed))
                if chain is not None:
                    functions[name] = {**chain, "seed": seed}
                    break
            else:
                raise SystemExit(f"no seed gave safe margins for chain {name}")
        for seed in range(500):
            enc, clip = build_model(vit, seed)
            runs, ok = [], True
            for schedule in SCHEDULES:
                out, x0, margin, mixed = run_model(enc, clip, schedule, log)
                ok &= margin >= MARGIN and mixed
                runs.append(out)
            if ok:
                break
        else:
            raise SystemExit("no seed gave safe margins for the model")
        degenerate = degenerate_cases(method)
    state = {k: v.half() for k, v in enc.state_dict().items()}  # exact: see build_model()
    golden = {"source": f"mlvlab/vid-TLDR@{commit}", "margin": MARGIN, "functions": functions,
              "degenerate": degenerate,
              "model": {"config": dict(MODEL), "seed": seed, "state_dict": state, "input": clip.half(),
                        "x0": x0, "runs": runs}}
    torch.save(golden, args.out)
    print(f"chains {[(k, v['seed']) for k, v in functions.items()]}, model seed {seed}")
    for run in runs:
        print(f"  r={run['r']}: tokens_in {run['tokens_in']} tokens_mlp {run['tokens_mlp']}")
    print(f"-> {args.out} ({os.path.getsize(args.out) / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
