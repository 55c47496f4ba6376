"""Regenerate ``tests/reference/tome_timesformer_golden.pt`` and ``tests/reference/timesformer_tiny_hf/``
by running Pollard & Wray's ToMe-on-TimeSformer code on the official TimeSformer.

    pip install --target /work/ext-pw/site einops     # outside the repo: einops is no harness dependency
    PYTHONPATH=/work/ext-pw/site python tests/reference/make_tome_timesformer_golden.py \\
        --pw-repo /work/.mirror/sjpollard+video-how-do-your-tokens-merge/repo \\
        --timesformer-repo /work/.mirror/facebookresearch+TimeSformer/repo

Sources (read with ``git show`` into a temporary directory, never copied into the repo):

* sjpollard/video-how-do-your-tokens-merge (commit 21261a9): ``tome/merge.py``, ``tome/utils.py``,
  ``tome/patch/timesformer.py`` (into a ``tome`` package whose ``__init__.py`` files are left empty: the real
  ones import vis.py and the other patches), and the model that patch targets, their slowfast fork's
  ``slowfast/models/timesformer.py`` + ``timesformer_utils.py`` (into ``slowfast.models``, so the patch's own
  ``from slowfast.models.timesformer import TimeSformer, Block, Attention`` resolves). Two imports of
  timesformer_utils are replaced by stubs: ``.build`` (MODEL_REGISTRY; the real one needs fvcore and
  slowfast.utils) and ``.timesformer_helpers`` (``load_pretrained``, never called here).
* facebookresearch/TimeSformer (commit a5ef29a): ``timesformer/models/vit.py`` is where the fork's
  ``timesformer.py`` comes from. The generator asserts that Mlp, Attention, Block, PatchEmbed and
  ``VisionTransformer.forward_features`` are textually identical in both; the fork only renames
  ``vit_base_patch16_224`` -> ``TimeSformer`` (now reading ``cfg.EPICKITCHENS.NUM_CLASSES``), adds
  multi-head outputs and makes ``VisionTransformer.forward`` take a list (``x = x[0]``, SlowFast pathways).
  transformers' ``modeling_timesformer.py`` says it is adapted from the same commit.

Needs torch, transformers (the test extra), tqdm (tome/utils.py) and einops (the patch and the model use
``rearrange``). Not run by the tests, which load the .pt and the HF directory.

What it writes
--------------
1. ``timesformer_tiny_hf/``: ``transformers.TimesformerForVideoClassification`` built from ``HF_CONFIG``
   (hidden 32, 2 heads, 4 layers, MLP 64, image 32, patch 8 -> 4x4 = 16 patches per frame, 4 frames,
   5 labels, divided space-time; LayerNorm eps 1e-6), random fp16-representable weights (non-trivial
   biases, norm gains, CLS / position / time embeddings), ``save_pretrained(safe_serialization=True)`` in
   float32. The same weights, renamed (``hf_to_official``), go into the official ``VisionTransformer``; the
   generator asserts that the official dense logits equal transformers' (float32 <= 1e-5, float64
   <= 1e-10): that proves the key mapping and that both order tokens the same way.
2. ``tome_timesformer_golden.pt`` (``torch.load(..., weights_only=True)``; plain tensors, lists, dicts):
   ``input`` [B=2, 3, T=4, 32, 32] fp16 (the official TimeSformer's and our [B, C, T, H, W] layout;
   transformers takes ``pixel_values = input.permute(0, 2, 1, 3, 4)`` = [B, T, C, H, W]); it is already
   "normalised" (standard normal values, no mean/std to apply). ``dense_logits`` (transformers, reloaded
   from the directory; ``dense_logits_float64`` the same in float64), ``dense_logits_official`` and their
   max |diff|; ``cases``: the official model patched with P&W's ``apply_patch(wrapper,
   trace_source=..., prop_attn=..., mode="merge")`` and ``wrapper.r = R``, per case:

   - ``tokens_in``: sequence length entering each block, CLS included (1 + T * p);
     ``spatial_tokens_in``: p, the patch tokens per frame entering each block (equal in every frame);
     ``tokens_out`` / ``spatial_tokens_out`` after the last block; ``schedule``: parse_r's list.
   - ``tokens`` [B, 1 + T * p_out, C]: the sequence leaving the last block (before the final norm), in
     the official order: CLS, then patch-major / time-minor ``(p t)``: row 1 + j * T + t is token j of
     frame t. ``feature`` [B, C]: the final LayerNorm of the CLS token. ``logits`` [B, 5].
     ``tokens_float64`` / ``feature_float64`` / ``logits_float64``: the same official run in float64 (the
     same merges, asserted), for a tight check of an explicit-attention port.
   - ``size`` [B, T, p_out] int16: patches held by each token of each frame (P&W keep it per frame,
     ``_tome_info["size"]`` [(B T), p, 1]). ``member`` [B, T, 16] int16 (cases with trace_source): the
     index of the token (within its frame) that holds each input patch of that frame.
   - ``margin``: the closest any matching decision came to a tie (see ``matching_margin``).

   The seed (weights and clip) is searched so that no matching decision in any case lies within
   ``MARGIN`` of a tie, so a faithful port on another BLAS reproduces every merge.

Pollard & Wray's rule for ToMe on TimeSformer (``tome/patch/timesformer.py`` @21261a9)
--------------------------------------------------------------------------------------
* Where: inside each divided block, after temporal attention and the spatial-attention residual, before the
  MLP (``ToMeBlock.forward`` l.52-56: ``x = cat(cls, xt) + cat(cls_res, res_spatial)``, then
  ``reduction_function``, then ``x + mlp(norm2(x))``). Temporal attention runs first on the grid as it
  stands, so from the second merging block on it pairs token j of frame t with token j of every other
  frame, whatever patches those tokens now hold (index pairing, not spatial pairing).
* Metric: the keys of the *spatial* attention (qkv of ``norm1`` of [frame CLS, frame tokens]), averaged
  over heads, with the per-frame CLS row dropped (``ToMeAttention.forward`` l.83:
  ``k.mean(1)[:, 1:, :]``) -> [(B T), p, head_dim]. The ``head_aggregation`` argument is accepted by
  ``apply_patch`` and ignored.
* Matching: ToMe's ``bipartite_soft_matching`` run independently per frame (batch = B*T) on the patch
  tokens only, ``class_token=False`` (the CLS never enters), with the same r in every frame, capped at
  p // 2 per frame; size-weighted average (``merge_wavg``), so every frame keeps p - r tokens and the
  (p t) grid stays rectangular. ``timesformer_merge`` l.85-109: ``x[:, 1:]`` ``b (p t) m -> (b t) p m``,
  merge, back ``(b t) p m -> b (p t) m``, CLS re-attached in front. Inside a frame the new order is ToMe's:
  unmerged A-tokens in descending best-score order, then all B-tokens (odd positions) in place.
* r: ``model.r`` through ``parse_r(len(blocks), r)`` (int, (r, inflection) or list), one entry popped per
  block (l.87); r counts tokens removed *per frame*. Their runs pass ``model.r = (TOME.R_VALUE,
  TOME.SCHEDULE)`` (tools/test_net.py l.277/283), SCHEDULE default 0, so constant r per frame, e.g. 98,
  49, 24, 18, 12 of the 196 patches per frame (experiments.sh).
* Proportional attention (``prop_attn``, default True in slowfast/config/custom_config.py l.157; only their
  VideoMAE runs switch it off): spatial attention logits get ``+ log(size)`` on ``attn[:, :, 1:, 1:]``
  only (l.74) -- patch queries x patch keys. The frame-CLS key gets no bias (its size would be 1 anyway),
  and the frame-CLS *query* row gets no bias either: the CLS attends to merged tokens as if each had size
  1 (unlike ToMe's timm patch, where the CLS row is biased too). Temporal attention is never biased
  (``temporal_attn`` stays the original ``Attention``), although a temporal "column" pairs tokens of
  different sizes. In block 0 size is None (no bias).
* CLS: never merged; after the spatial step its per-frame outputs are averaged as in dense TimeSformer.
  Pooling is the CLS token (final norm, head): sizes never enter pooling.
* Sizes / sources are kept per frame: ``_tome_info["size"]`` [(B T), p, 1], ``source`` [(B T), p, p0].
  State is reset in the patched wrapper's forward (``make_tome_class``).

Ambiguities a port has to choose (this golden pins P&W's choices): the unbiased CLS query row under
prop_attn (the golden tells it apart: biasing the CLS row too, as ToMe's timm patch does, moves these
logits by 0.2-0.4 and changes one case's merges); index-paired temporal attention after merging;
``tokens_in`` counting (here both the full length with CLS and p per frame are stored).
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PW_FILES = ("tome/merge.py", "tome/utils.py", "tome/patch/timesformer.py", "slowfast/models/timesformer.py",
            "slowfast/models/timesformer_utils.py")
STUBS = {
    "slowfast/models/build.py": (
        "class _Registry:\n"
        "    def register(self):\n"
        "        return lambda obj: obj\n\n\n"
        "MODEL_REGISTRY = _Registry()  # stub: the real one needs fvcore and slowfast.utils\n"),
    "slowfast/models/timesformer_helpers.py": (
        "def load_pretrained(*args, **kwargs):  # stub: the golden never loads pretrained weights\n"
        "    raise RuntimeError('load_pretrained is not available in the golden generator')\n"),
}
# the parts of the fork's timesformer.py that must be facebookresearch/TimeSformer's vit.py verbatim
SAME_AS_ORIGINAL = [("class Mlp(", "class VisionTransformer("), ("    def forward_features(", "    def forward(self")]
HF_CONFIG = dict(image_size=32, patch_size=8, num_channels=3, num_frames=4, hidden_size=32, num_hidden_layers=4,
                 num_attention_heads=2, intermediate_size=64, hidden_act="gelu", layer_norm_eps=1e-6,
                 qkv_bias=True, attention_type="divided_space_time", drop_path_rate=0)
LABELS = ["archery", "bowling", "cartwheel", "diving", "eating"]
BATCH = 2
# name -> P&W's r form, prop_attn, trace_source (16 patches per frame: r is capped at 8, then at p // 2)
CASES = {
    "constant_r3_prop_attn": dict(r=(3, 0.0), prop_attn=True, trace_source=True),  # their CLI form (R, SCHEDULE)
    "list_capped": dict(r=[6, 6, 0, 2], prop_attn=False, trace_source=True),  # 6 capped at 10 // 2 = 5
    "list_capped_prop_attn": dict(r=[6, 6, 0, 2], prop_attn=True, trace_source=True),
    "decreasing_r3_prop_attn": dict(r=(3, -1.0), prop_attn=True, trace_source=False),  # [6, 4, 2, 0]
}
MARGIN = 1e-4  # fp32 model; 5x make_tome_golden.py's, room for a fused-attention port
DENSE_TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def git_show(repo: str, name: str) -> str:
    return subprocess.run(["git", "--git-dir", repo, "show", f"HEAD:{name}"], check=True, capture_output=True,
                          text=True).stdout


def git_head(repo: str) -> str:
    return subprocess.run(["git", "--git-dir", repo, "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()


def section(source: str, start: str, end: str) -> str:
    i = source.index(start)
    return source[i:source.index(end, i)]


def import_official(pw_repo: str, tsf_repo: str, workdir: str):
    fork = git_show(pw_repo, "slowfast/models/timesformer.py")
    original = git_show(tsf_repo, "timesformer/models/vit.py")
    for start, end in SAME_AS_ORIGINAL:
        assert section(fork, start, end) == section(original, start, end), f"fork differs from vit.py: {start}"
    for d in ("tome", "tome/patch", "slowfast", "slowfast/models"):
        os.makedirs(os.path.join(workdir, d), exist_ok=True)
        open(os.path.join(workdir, d, "__init__.py"), "w").close()
    files = {name: git_show(pw_repo, name) for name in PW_FILES}
    files.update(STUBS)
    for name, text in files.items():
        with open(os.path.join(workdir, name), "w") as f:
            f.write(text)
    sys.path.insert(0, workdir)
    import slowfast.models.timesformer as tsf
    import tome.merge as merge
    import tome.patch.timesformer as patch
    import tome.utils as utils

    return tsf, merge, patch, utils, {"pw": git_head(pw_repo), "timesformer": git_head(tsf_repo)}


# --- the two models and the weight mapping ---

def hf_model(seed: int):
    import transformers

    torch.manual_seed(seed)
    config = transformers.TimesformerConfig(**HF_CONFIG, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
                                            label2id={n: i for i, n in enumerate(LABELS)})
    model = transformers.TimesformerForVideoClassification(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and ("layernorm" in name or "norm" in name) and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))  # LayerNorm gains
            elif p.dim() == 1:
                p.copy_(0.2 * torch.randn_like(p))  # biases
            elif name.startswith("timesformer.embeddings.") and p.dim() == 3:
                p.copy_(0.5 * torch.randn_like(p))  # cls_token, position_embeddings, time_embeddings
            else:
                p.copy_(torch.randn_like(p) * p[0].numel() ** -0.5)
            p.copy_(p.half().float())  # fp16-representable
    clip = torch.randn(BATCH, 3, HF_CONFIG["num_frames"], HF_CONFIG["image_size"], HF_CONFIG["image_size"])
    return model, clip.half().float()


def hf_to_official(state: dict) -> dict:
    """transformers' Timesformer keys -> the official VisionTransformer keys (1:1, every tensor used)."""
    fixed = {"timesformer.embeddings.cls_token": "cls_token",
             "timesformer.embeddings.position_embeddings": "pos_embed",
             "timesformer.embeddings.time_embeddings": "time_embed",
             "timesformer.embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
             "timesformer.embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
             "timesformer.layernorm.weight": "norm.weight", "timesformer.layernorm.bias": "norm.bias",
             "classifier.weight": "head.weight", "classifier.bias": "head.bias"}
    layer = {"layernorm_before": "norm1", "layernorm_after": "norm2", "attention.attention.qkv": "attn.qkv",
             "attention.output.dense": "attn.proj", "temporal_layernorm": "temporal_norm1",
             "temporal_attention.attention.qkv": "temporal_attn.qkv",
             "temporal_attention.output.dense": "temporal_attn.proj", "temporal_dense": "temporal_fc",
             "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2"}
    out = {}
    for key, value in state.items():
        if key in fixed:
            out[fixed[key]] = value
            continue
        prefix = "timesformer.encoder.layer."
        assert key.startswith(prefix), key
        index, rest = key[len(prefix):].split(".", 1)
        module, param = rest.rsplit(".", 1)
        out[f"blocks.{index}.{layer[module]}.{param}"] = value
    return out


def official_wrapper(tsf, state: dict):
    """P&W's ``TimeSformer`` wrapper (whose __init__ needs a slowfast cfg and downloads weights) around a
    ``VisionTransformer`` built with the tiny dims; ``apply_patch`` expects exactly this wrapper."""
    from functools import partial

    c = HF_CONFIG
    vit = tsf.VisionTransformer(img_size=c["image_size"], patch_size=c["patch_size"], num_classes=len(LABELS),
                                embed_dim=c["hidden_size"], depth=c["num_hidden_layers"],
                                num_heads=c["num_attention_heads"],
                                mlp_ratio=c["intermediate_size"] / c["hidden_size"], qkv_bias=True,
                                norm_layer=partial(nn.LayerNorm, eps=c["layer_norm_eps"]), drop_rate=0.0,
                                attn_drop_rate=0.0, drop_path_rate=0.0, num_frames=c["num_frames"],
                                attention_type=c["attention_type"])
    vit.load_state_dict(state, strict=True)
    wrapper = tsf.TimeSformer.__new__(tsf.TimeSformer)
    nn.Module.__init__(wrapper)
    wrapper.model = vit
    wrapper.attention_type = c["attention_type"]
    return wrapper.eval()


def dense_check(tsf, model, clip):
    """Official dense logits == transformers' (float32 and float64): proves the mapping and the token order."""
    state = hf_to_official(model.state_dict())
    diffs = {}
    for dtype in (torch.float32, torch.float64):
        official = official_wrapper(tsf, state).to(dtype)
        with torch.no_grad():
            ours = official([clip.to(dtype)])
            theirs = model.to(dtype)(pixel_values=clip.to(dtype).permute(0, 2, 1, 3, 4)).logits
        diffs[dtype] = (ours - theirs).abs().max().item()
        assert diffs[dtype] <= DENSE_TOL[dtype], (dtype, diffs[dtype])
    model.float()
    return state, diffs


# --- matching margins (how far each decision is from a tie), as make_tome_golden.py ---

def matching_margin(metric: torch.Tensor, r: int) -> float:
    r = min(r, metric.shape[1] // 2)  # class_token / distill_token are False in P&W's TimeSformer patch
    if r <= 0:
        return math.inf
    m = metric / metric.norm(dim=-1, keepdim=True)
    scores = m[..., ::2, :] @ m[..., 1::2, :].transpose(-1, -2)
    node_max = scores.max(dim=-1).values
    ordered = node_max.sort(dim=-1, descending=True).values
    gaps = ordered[..., :-1] - ordered[..., 1:]  # the order of all A-tokens is the output order
    top2 = scores.topk(2, dim=-1).values
    src = node_max.argsort(dim=-1, descending=True)[..., :r]
    dst_gap = (top2[..., 0] - top2[..., 1]).gather(-1, src)
    return min(gaps.min().item(), dst_gap.min().item())


def membership(source: torch.Tensor) -> torch.Tensor:
    assert torch.equal(source.sum(dim=1), torch.ones_like(source[:, 0])), "sources must partition the frame"
    return source.argmax(dim=1).to(torch.int16)


def integer(size: torch.Tensor) -> torch.Tensor:
    assert torch.equal(size, size.round()) and size.max() < 2 ** 15
    return size.to(torch.int16)


def run_case(tsf, patch, utils, state, clip, case, dtype=torch.float32):
    wrapper = official_wrapper(tsf, state).to(dtype)
    patch.apply_patch(wrapper, trace_source=case["trace_source"], prop_attn=case["prop_attn"], mode="merge")
    wrapper.r = case["r"]
    vit, T = wrapper.model, HF_CONFIG["num_frames"]
    tokens_in, metrics, captured = [], [], {}
    hooks = [blk.register_forward_pre_hook(lambda m, a: tokens_in.append(a[0].shape[1])) for blk in vit.blocks]
    hooks.append(vit.norm.register_forward_pre_hook(lambda m, a: captured.update(tokens=a[0].clone())))
    hooks.append(vit.norm.register_forward_hook(lambda m, a, out: captured.update(feature=out[:, 0].clone())))
    original = patch.bipartite_soft_matching

    def recording(metric, r, class_token=False, distill_token=False, mode="merge"):
        assert not class_token and not distill_token and mode == "merge"
        metrics.append((metric.clone(), r))
        return original(metric, r, class_token, distill_token, mode)

    patch.bipartite_soft_matching = recording
    try:
        with torch.no_grad():
            logits = wrapper([clip.to(dtype)])  # the patched forward resets r (parse_r), size and source
    finally:
        patch.bipartite_soft_matching = original
        for h in hooks:
            h.remove()
    info = wrapper._tome_info
    p_out = (captured["tokens"].shape[1] - 1) // T
    out = {"r": list(case["r"]) if isinstance(case["r"], tuple) else case["r"], "r_form": type(case["r"]).__name__,
           "prop_attn": case["prop_attn"], "trace_source": case["trace_source"],
           "schedule": utils.parse_r(len(vit.blocks), case["r"]),
           "tokens_in": tokens_in, "spatial_tokens_in": [(n - 1) // T for n in tokens_in],
           "tokens_out": captured["tokens"].shape[1], "spatial_tokens_out": p_out,
           "tokens": captured["tokens"], "feature": captured["feature"], "logits": logits,
           "size": integer(info["size"][..., 0]).reshape(BATCH, T, p_out)}
    assert all((n - 1) % T == 0 for n in tokens_in)
    if case["trace_source"]:
        out["member"] = membership(info["source"]).reshape(BATCH, T, -1)
    out["margin"] = min([matching_margin(m, r) for m, r in metrics] + [math.inf])
    return out


def save_hf(model, directory: str):
    import transformers

    if os.path.isdir(directory):
        shutil.rmtree(directory)
    model.save_pretrained(directory, safe_serialization=True)
    reloaded = transformers.TimesformerForVideoClassification.from_pretrained(directory).eval()
    assert all(p.dtype == torch.float32 for p in reloaded.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[k], v), k
    with open(os.path.join(directory, "config.json")) as f:
        assert json.load(f)["attention_type"] == "divided_space_time"
    return reloaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pw-repo", default="/work/.mirror/sjpollard+video-how-do-your-tokens-merge/repo")
    parser.add_argument("--timesformer-repo", default="/work/.mirror/facebookresearch+TimeSformer/repo")
    parser.add_argument("--out", default=os.path.join(HERE, "tome_timesformer_golden.pt"))
    parser.add_argument("--hf-dir", default=os.path.join(HERE, "timesformer_tiny_hf"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    sys.path.insert(0, ROOT)
    from harness.models.timm_import import import_timm

    import_timm()  # torchvision's op schemas on this CPU torch, before transformers imports it
    with tempfile.TemporaryDirectory() as workdir:
        tsf, _, patch, utils, commits = import_official(args.pw_repo, args.timesformer_repo, workdir)
        for seed in range(500):
            model, clip = hf_model(seed)
            state, diffs = dense_check(tsf, model, clip)
            cases = {name: run_case(tsf, patch, utils, state, clip, case) for name, case in CASES.items()}
            margin = min(c["margin"] for c in cases.values())
            if margin > MARGIN:
                break
        else:
            raise SystemExit("no seed kept every matching decision away from ties")
        for name, case in CASES.items():  # the same merges in float64: tight values for an explicit port
            wide, narrow = run_case(tsf, patch, utils, state, clip, case, torch.float64), cases[name]
            assert wide["tokens_in"] == narrow["tokens_in"] and torch.equal(wide["size"], narrow["size"]), name
            assert not case["trace_source"] or torch.equal(wide["member"], narrow["member"]), name
            narrow.update({f"{key}_float64": wide[key] for key in ("tokens", "feature", "logits")})
        reloaded = save_hf(model, args.hf_dir)
        with torch.no_grad():
            dense = reloaded(pixel_values=clip.permute(0, 2, 1, 3, 4)).logits
            dense64 = reloaded.double()(pixel_values=clip.double().permute(0, 2, 1, 3, 4)).logits
            dense_official = official_wrapper(tsf, state)([clip])
    golden = {"source": f"sjpollard/video-how-do-your-tokens-merge@{commits['pw']}",
              "timesformer": f"facebookresearch/TimeSformer@{commits['timesformer']}",
              "seed": seed, "margin": margin, "hf_config": HF_CONFIG, "batch": BATCH,
              "input_layout": "B C T H W (transformers: pixel_values = input.permute(0, 2, 1, 3, 4))",
              "input": clip.half(), "dense_logits": dense, "dense_logits_float64": dense64,
              "dense_logits_official": dense_official,
              "dense_max_abs_diff": {"float32": diffs[torch.float32], "float64": diffs[torch.float64]},
              "cases": cases}
    torch.save(golden, args.out)
    torch.load(args.out, weights_only=True)
    print(f"seed {seed}, margin {margin:.2e}, official vs transformers dense logits: "
          f"fp32 {diffs[torch.float32]:.2e}, fp64 {diffs[torch.float64]:.2e}")
    for name, c in cases.items():
        print(f"  {name}: schedule {c['schedule']}, per frame {c['spatial_tokens_in']} -> {c['spatial_tokens_out']}, "
              f"tokens_in {c['tokens_in']} -> {c['tokens_out']}, margin {c['margin']:.2e}")
    size = sum(os.path.getsize(os.path.join(args.hf_dir, f)) for f in os.listdir(args.hf_dir))
    print(f"-> {args.out} ({os.path.getsize(args.out) / 1024:.0f} KiB), {args.hf_dir} ({size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
