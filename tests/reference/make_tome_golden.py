"""Regenerate ``tests/reference/tome_golden.pt`` by running the OFFICIAL ToMe code.

    python tests/reference/make_tome_golden.py --repo /path/to/ToMe/.git [--out PATH]

``--repo`` is a git directory of facebookresearch/ToMe (commit af95e4b; the search tool's ``fetch``
gives /work/.mirror/facebookresearch+ToMe/repo). ``tome/merge.py``, ``tome/utils.py`` and
``tome/patch/timm.py`` are read with ``git show`` into a temporary ``tome`` package (its two
``__init__.py`` are left empty: the official ones also import the SWAG/MAE patches and ``vis.py``, which
are not run here). Needs timm (imported through ``harness.models.timm_import.import_timm``) and tqdm.
Not run by the tests, which only load the .pt.

The golden has three parts:

* ``functions``: official ``bipartite_soft_matching`` + ``merge_wavg`` + ``merge_source`` (and the plain
  ``merge(x)`` = mode "mean") in float64 on fixed random metric/x, N = 65 (odd), batch 2, two
  consecutive rounds (the second with the first round's size/source), with and without class/distill
  token protection, for r = 0, ordinary r and r > N/2 (capped).
* ``parse_r``: official ``tome.utils.parse_r`` for int, (r, inflection) and list schedules.
* ``model``: a tiny VideoMAE-layout classifier (tubelet Conv3d, official sinusoid table, no CLS,
  C = 32, 2 heads of 16, depth 4, 4 frames of 16x16, patch 2, tubelet 2 -> 128 tokens, batch 2) whose
  blocks are timm ``Block``s (LayerNorm eps 1e-6, qkv bias = [q_bias, 0, v_bias]) patched with the
  official ``tome.patch.timm.apply_patch`` (``ToMeBlock``/``ToMeAttention``: proportional attention,
  metric = head-mean keys, merge between attention and MLP, size-weighted merge, state reset per
  forward). Pooling is tome/patch/mae.py's size-weighted global pool, ``(x * size).sum(1) / T0``, applied
  to all tokens (the MAE patch slices off its CLS token first; this model has none), then fc_norm, head.
  Three schedules (constant r, a capped per-block list with proportional attention, the (r, -1)
  "decreasing" schedule). Weights and the clip are fp16-representable and stored in fp16 (exact); the
  state dict uses the official VideoMAE names, which are also ours. The seed is searched so that no
  matching decision (order of the A-side maxima, best-vs-second-best destination of a merged token) lies
  within ``MARGIN`` of a tie, so that a faithful port on another BLAS reproduces every merge.

Compact encodings (both exact, asserted here): token sizes as int16; a source matrix [B, N, N0] (0/1, a
partition of the input patches) as ``member`` [B, N0] int16, the index of the token holding each patch
(``one_hot(member, N).transpose(1, 2)`` gives it back).
"""
import argparse
import math
import os
import subprocess
import sys
import tempfile
from functools import partial

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FILES = ("tome/merge.py", "tome/utils.py", "tome/patch/timm.py")
CONFIG = dict(embed_dim=32, depth=4, num_heads=2, patch_size=2, tubelet_size=2, num_frames=4, img_size=16,
              num_classes=5, batch=2)
# official r form -> (prop_attn, trace_source)
MODEL_CASES = {
    "constant_r16": dict(r=16, prop_attn=False, trace_source=True),
    "list_capped_prop_attn": dict(r=[40, 50, 0, 30], prop_attn=True, trace_source=True),
    "decreasing_r12": dict(r=(12, -1.0), prop_attn=False, trace_source=False),
}
# name -> (class_token, distill_token, r of round 1, r of round 2)
FUNCTION_CASES = {
    "r0": (False, False, 0, 5),
    "plain": (False, False, 7, 11),
    "plain_capped": (False, False, 40, 40),
    "cls": (True, False, 7, 11),
    "cls_capped": (True, False, 40, 40),
    "cls_distill": (True, True, 9, 5),
    "cls_distill_capped": (True, True, 40, 3),
    "distill_only": (False, True, 10, 10),
}
FN_SHAPE = dict(batch=2, tokens=65, metric_dim=4, channels=3)
PARSE_R_CASES = [(12, 8), (12, (8, -1.0)), (12, (8, 0.5)), (12, (13, 1.0)), (12, (10, -0.3)), (24, (65, 0.0)),
                 (4, [3, 2]), (4, [1, 2, 3, 4]), (4, (12, -1.0))]
MARGIN = 2e-5  # fp32 model
FN_MARGIN = 1e-9  # float64 functions


def import_official(repo: str, workdir: str):
    commit = subprocess.run(["git", "--git-dir", repo, "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()
    for d in ("tome", "tome/patch"):
        os.makedirs(os.path.join(workdir, d), exist_ok=True)
        open(os.path.join(workdir, d, "__init__.py"), "w").close()
    for name in FILES:
        source = subprocess.run(["git", "--git-dir", repo, "show", f"HEAD:{name}"], check=True,
                                capture_output=True, text=True).stdout
        with open(os.path.join(workdir, name), "w") as f:
            f.write(source)
    sys.path.insert(0, workdir)
    sys.path.insert(0, ROOT)
    from harness.models.timm_import import import_timm

    import_timm()
    import tome.merge as merge
    import tome.patch.timm as patch
    import tome.utils as utils

    return merge, utils, patch, commit


# --- matching margins (how far each decision is from a tie) ---

def matching_margin(metric: torch.Tensor, r: int, class_token: bool, distill_token: bool) -> float:
    protected = int(class_token) + int(distill_token)
    r = min(r, (metric.shape[1] - protected) // 2)
    if r <= 0:
        return math.inf
    m = metric / metric.norm(dim=-1, keepdim=True)
    scores = m[..., ::2, :] @ m[..., 1::2, :].transpose(-1, -2)
    if class_token:
        scores[..., 0, :] = -math.inf
    if distill_token:
        scores[..., :, 0] = -math.inf
    node_max = scores.max(dim=-1).values
    ordered = node_max.sort(dim=-1, descending=True).values
    finite = ordered[..., 1:].isfinite() & ordered[..., :-1].isfinite()
    gaps = (ordered[..., :-1] - ordered[..., 1:])[finite]
    top2 = scores.topk(2, dim=-1).values
    src = node_max.argsort(dim=-1, descending=True)[..., :r]
    dst_gap = (top2[..., 0] - top2[..., 1]).gather(-1, src)
    return min(gaps.min().item() if gaps.numel() else math.inf, dst_gap.min().item())


def membership(source: torch.Tensor) -> torch.Tensor:
    """[B, N, N0] 0/1 source -> [B, N0] int16 index of the token holding each input patch (exact: checked)."""
    assert torch.equal(source.sum(dim=1), torch.ones_like(source[:, 0])), "sources must partition the input"
    return source.argmax(dim=1).to(torch.int16)


def integer(size: torch.Tensor) -> torch.Tensor:
    """Token sizes are whole numbers of patches: stored as int16 (exact: checked)."""
    assert torch.equal(size, size.round()) and size.max() < 2 ** 15
    return size.to(torch.int16)


# --- part 1: the merge functions ---

def run_functions(official_merge):
    s = FN_SHAPE
    g = torch.Generator().manual_seed(0)
    shape = (s["batch"], s["tokens"])
    inputs = {"metric1": torch.randn(*shape, s["metric_dim"], generator=g, dtype=torch.float64),
              "metric2": torch.randn(*shape, s["metric_dim"], generator=g, dtype=torch.float64),
              "x": torch.randn(*shape, s["channels"], generator=g, dtype=torch.float64)}
    cases, margin = {}, math.inf
    for name, (cls, distill, r1, r2) in FUNCTION_CASES.items():
        x, size, source, out = inputs["x"], None, None, {}
        for round_, (r, key) in enumerate(((r1, "metric1"), (r2, "metric2")), start=1):
            metric = inputs[key][:, :x.shape[1]]
            margin = min(margin, matching_margin(metric, r, cls, distill))
            merge, _ = official_merge.bipartite_soft_matching(metric, r, cls, distill)
            if round_ == 1:
                out["x_mean1"] = merge(x)  # the default mode="mean"
            source = official_merge.merge_source(merge, x, source)
            x, size = official_merge.merge_wavg(merge, x, size)
            out.update({f"x{round_}": x, f"size{round_}": integer(size), f"member{round_}": membership(source)})
        cases[name] = {"class_token": cls, "distill_token": distill, "r": [r1, r2], **out}
    return {"inputs": inputs, "cases": cases}, margin


# --- part 3: the tiny VideoMAE-layout model with official ToMe blocks ---

class PatchEmbed(nn.Module):
    def __init__(self, dim, patch, tubelet):
        super().__init__()
        self.proj = nn.Conv3d(3, dim, (tubelet, patch, patch), (tubelet, patch, patch))

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


def make_model_class(Block):
    from tests.reference.videomae_official import official_sinusoid

    class TinyVideoMAE(nn.Module):
        """VideoMAE fine-tune layout (no CLS, mean pool, fc_norm) around timm Blocks."""

        def __init__(self, c):
            super().__init__()
            dim = c["embed_dim"]
            self.patch_embed = PatchEmbed(dim, c["patch_size"], c["tubelet_size"])
            n = (c["img_size"] // c["patch_size"]) ** 2 * (c["num_frames"] // c["tubelet_size"])
            self.pos_embed = official_sinusoid(n, dim)  # plain attribute, as the official VideoMAE
            self.cls_token = None  # read by apply_patch: no class token to protect
            self.blocks = nn.ModuleList([Block(dim, c["num_heads"], mlp_ratio=4.0, qkv_bias=True,
                                               norm_layer=partial(nn.LayerNorm, eps=1e-6))
                                         for _ in range(c["depth"])])
            self.fc_norm = nn.LayerNorm(dim, eps=1e-6)
            self.head = nn.Linear(dim, c["num_classes"])

        def forward_features(self, clip):
            x = self.patch_embed(clip)
            T = x.shape[1]
            x = x + self.pos_embed.type_as(x)
            for blk in self.blocks:
                x = blk(x)
            self.last_tokens = x
            # tome/patch/mae.py ToMeVisionTransformer.forward_features, global pool (no CLS to slice off)
            if self._tome_info["size"] is not None:
                x = (x * self._tome_info["size"]).sum(dim=1) / T
            else:
                x = x.mean(dim=1)
            self.last_feature = self.fc_norm(x)
            return self.last_feature

        def forward(self, clip):
            return self.head(self.forward_features(clip))

    return TinyVideoMAE


def build_model(Model, seed: int):
    c = CONFIG
    torch.manual_seed(seed)
    model = Model(c).eval()
    dim = c["embed_dim"]
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and name.endswith(".weight"):  # LayerNorm gains
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif p.dim() == 1:
                p.copy_(0.2 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * p[0].numel() ** -0.5)
            p.copy_(p.half().float())  # fp16-representable, so the file can store them in half
        for blk in model.blocks:
            blk.attn.qkv.bias[dim:2 * dim] = 0.0  # VideoMAE: q and v biases only
    clip = torch.randn(c["batch"], 3, c["num_frames"], c["img_size"], c["img_size"]).half().float()
    return model, clip


def videomae_state(model) -> dict:
    """timm names -> the official VideoMAE fine-tune names (= ours), fp16."""
    dim, out = CONFIG["embed_dim"], {}
    for k, v in model.state_dict().items():
        if k.endswith("attn.qkv.bias"):
            assert not v[dim:2 * dim].any()
            out[k.replace("qkv.bias", "q_bias")] = v[:dim].half()
            out[k.replace("qkv.bias", "v_bias")] = v[2 * dim:].half()
        else:
            out[k] = v.half()
    return out


def run_model(patch, model, clip, case):
    patch.apply_patch(model, trace_source=case["trace_source"], prop_attn=case["prop_attn"])
    model.r = case["r"]
    tokens_in, metrics = [], []
    hooks = [blk.register_forward_pre_hook(lambda m, a: tokens_in.append(a[0].shape[1]))
             for blk in model.blocks]
    original = patch.bipartite_soft_matching

    def recording(metric, r, class_token=False, distill_token=False):
        metrics.append((metric.clone(), r, class_token, distill_token))
        return original(metric, r, class_token, distill_token)

    patch.bipartite_soft_matching = recording
    try:
        with torch.no_grad():
            logits = model(clip)  # the patched forward: resets r, size and source, then runs the blocks
    finally:
        patch.bipartite_soft_matching = original
        for h in hooks:
            h.remove()
    feature = model.last_feature
    info = model._tome_info
    out = {**{k: case[k] for k in ("prop_attn", "trace_source")},
           "r": list(case["r"]) if isinstance(case["r"], tuple) else case["r"],
           "r_form": type(case["r"]).__name__, "tokens_in": tokens_in,
           "tokens_out": model.last_tokens.shape[1], "tokens": model.last_tokens, "size": integer(info["size"]),
           "feature": feature, "logits": logits}
    if case["trace_source"]:
        out["member"] = membership(info["source"])
    margin = min([matching_margin(*m) for m in metrics] + [math.inf])
    return out, margin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", default="/work/.mirror/facebookresearch+ToMe/repo")
    parser.add_argument("--out", default=os.path.join(HERE, "tome_golden.pt"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as workdir:
        official_merge, utils, patch, commit = import_official(args.repo, workdir)
        functions, fn_margin = run_functions(official_merge)
        if fn_margin < FN_MARGIN:
            raise SystemExit(f"function inputs too close to a tie ({fn_margin:.2e})")
        parse_r = [{"num_layers": n, "r": list(r) if isinstance(r, tuple) else r, "r_form": type(r).__name__,
                    "schedule": utils.parse_r(n, r)} for n, r in PARSE_R_CASES]
        from timm.models.vision_transformer import Block

        Model = make_model_class(Block)
        for seed in range(500):
            model, clip = build_model(Model, seed)
            state = videomae_state(model)
            cases, margin = {}, math.inf
            for name, case in MODEL_CASES.items():
                fresh = Model(CONFIG).eval()
                fresh.load_state_dict(model.state_dict())
                cases[name], m = run_model(patch, fresh, clip, case)
                margin = min(margin, m)
            if margin > MARGIN:
                break
        else:
            raise SystemExit("no seed kept every matching decision away from ties")
    golden = {"source": f"facebookresearch/ToMe@{commit}", "functions": functions, "parse_r": parse_r,
              "model": {"seed": seed, "margin": margin, "config": CONFIG, "state_dict": state,
                        "input": clip.half(), "cases": cases}}
    torch.save(golden, args.out)
    print(f"seed {seed}, model margin {margin:.2e}, function margin {fn_margin:.2e}")
    for name, c in cases.items():
        print(f"  {name}: tokens_in {c['tokens_in']} -> {c['tokens_out']}")
    print(f"-> {args.out} ({os.path.getsize(args.out) / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
