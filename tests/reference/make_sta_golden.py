"""Regenerate ``tests/reference/sta_golden.pt`` by running the OFFICIAL STA model code.

    python tests/reference/make_sta_golden.py [--repo /path/to/STA/.git] [--out PATH]

``--repo`` is a git directory of Mark12Ding/STA (commit faf10be; the search tool's ``fetch`` gives
/work/.mirror/Mark12Ding+STA/repo). ``model_vit.py`` is read with ``git show`` into a temporary
module. Its imports: ``timm.models.layers`` / ``timm.models.registry`` come from the installed timm
(through ``harness.models.timm_import.import_timm``) or, without timm, from tiny stand-ins (``drop_path`` is never
called: drop-path rate 0; ``trunc_normal_`` only initialises weights that are then overwritten);
``einops`` is the real package if importable (e.g. ``PYTHONPATH=einops-0.8.0-py3-none-any.whl``), else
a stand-in for the two ``rearrange`` patterns ``merge`` uses. Not run by the tests, which only load
the .pt.

The golden has two parts.

``model``: a tiny official ``VisionTransformer`` (C=32, 2 heads, depth 6 -> STA stages after blocks
0, 2, 4; 16 frames of 20x20, patch 4, tubelet 2 -> 8 slices x 25 tokens = 200 tokens, odd first-stage
groups; 5 classes) with perturbed random weights (``head`` too: the official init zeroes it), stored
in the official fine-tuned checkpoint layout (``{'module': state_dict}`` keys), and a fixed clip of 2
samples. Weights and clip are rounded to fp16-representable values and stored in fp16 (exact; loaders
cast to fp32). For every r in ``R_VALUES`` (r=0: the official forward skips ``merge``): logits,
pooled features, tokens entering every block, and for every stage the kept tokens as row indices into
that stage's input (``merge`` only gathers rows, so each output row is an exact copy of one input row),
per sample, in output order.

``stages``: the official ``VisionTransformer.merge`` called directly (unbound, on an object holding
``r``) for depth 12, indices 0 / 4 / 8 (8 / 4 / 2 groups), on fixed fp16-exact inputs ``x``, ``metric``
with odd group sizes, two samples; stored: the inputs and the output as row indices into ``x``.

The seed is searched so that every pruning decision of the model part is stable: re-running the
official forward with the inputs of every ``merge`` call perturbed by ``NOISE`` (relative) gives the
same kept indices in the same order, so a faithful port with float-level differences (fused attention
kernel, other summation orders) reproduces them exactly.
"""
import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import types
from functools import partial

import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = dict(img_size=20, patch_size=4, in_chans=3, embed_dim=32, depth=6, num_heads=2, num_frames=16,
              tubelet_size=2, num_classes=5, batch=2)
R_VALUES = (0, 3, 8, 14)  # 14 is the largest r the 25-token slices allow (stage 3 keeps 2 of 16)
STAGE_CASES = (  # (index, groups, group size, r) for merge(..., depth=12)
    (0, 8, 25, 7), (4, 4, 21, 5), (8, 2, 29, 9),
)
STAGE_DIMS = (8, 6)  # channels of x, of metric
NOISE = 1e-5
TRIALS = 8


def install_stand_ins() -> str:
    """Make ``model_vit.py``'s imports resolvable; returns what was used."""
    used = []
    sys.path.insert(0, ROOT)
    try:
        from harness.models.timm_import import import_timm

        import_timm()
        import timm.models.layers  # noqa: F401
        import timm.models.registry  # noqa: F401
        used.append("timm " + sys.modules["timm"].__version__)
    except Exception:
        layers, registry = types.ModuleType("timm.models.layers"), types.ModuleType("timm.models.registry")
        layers.drop_path = lambda x, p, training: x
        layers.to_2tuple = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)
        layers.trunc_normal_ = lambda t, std=1.0: nn.init.trunc_normal_(t, std=std)
        registry.register_model = lambda fn: fn
        timm, models = types.ModuleType("timm"), types.ModuleType("timm.models")
        timm.models, models.layers, models.registry = models, layers, registry
        sys.modules.update({"timm": timm, "timm.models": models, "timm.models.layers": layers,
                            "timm.models.registry": registry})
        used.append("timm stand-in")
    if importlib.util.find_spec("einops") is not None:
        import einops

        used.append("einops " + einops.__version__)
    else:
        def rearrange(t, pattern, **axes):
            if pattern == "B (T N) C -> B T N C":
                return t.reshape(t.shape[0], axes["T"], -1, t.shape[-1])
            if pattern == "b t n d -> b (t n) d":
                return t.flatten(1, 2)
            raise NotImplementedError(pattern)

        einops = types.ModuleType("einops")
        einops.rearrange = rearrange
        sys.modules["einops"] = einops
        used.append("einops stand-in")
    return ", ".join(used)


def import_official(repo: str, workdir: str):
    commit = subprocess.run(["git", "--git-dir", repo, "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()
    source = subprocess.run(["git", "--git-dir", repo, "show", "HEAD:model_vit.py"], check=True,
                            capture_output=True, text=True).stdout
    path = os.path.join(workdir, "sta_model_vit.py")
    with open(path, "w") as f:
        f.write(source)
    used = install_stand_ins()
    spec = importlib.util.spec_from_file_location("sta_model_vit", path)
    official = importlib.util.module_from_spec(spec)
    sys.modules["sta_model_vit"] = official  # timm's register_model looks the module up
    spec.loader.exec_module(official)
    return official, commit, used


def build(official, seed: int):
    c = CONFIG
    torch.manual_seed(seed)
    model = official.VisionTransformer(
        img_size=c["img_size"], patch_size=c["patch_size"], in_chans=c["in_chans"], num_classes=c["num_classes"],
        embed_dim=c["embed_dim"], depth=c["depth"], num_heads=c["num_heads"], mlp_ratio=4, qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6), init_values=0.0, all_frames=c["num_frames"],
        tubelet_size=c["tubelet_size"], use_mean_pooling=True, r=0).eval()
    with torch.no_grad():
        for p in model.parameters():  # non-trivial q/v biases, norms and head (init_scale=0 zeroes the head)
            p.add_(torch.randn_like(p) * 0.2)
            p.copy_(p.half().float())  # fp16-representable, so the file can store them in half
    clip = torch.randn(c["batch"], c["in_chans"], c["num_frames"], c["img_size"], c["img_size"]).half().float()
    return model, clip


def kept_rows(x_in: torch.Tensor, x_out: torch.Tensor) -> torch.Tensor:
    """[B, M] index of the (unique, exactly equal) row of ``x_in`` [B, N, C] that each row of ``x_out`` is."""
    same = (x_out[:, :, None, :] == x_in[:, None, :, :]).all(-1)  # [B, M, N]
    assert (same.sum(-1) == 1).all(), "an output row is not a unique copy of an input row"
    return same.float().argmax(-1)


def run(official, model, clip, r: int, noise: float = 0.0, generator=None):
    """Logits, features, tokens entering each block, {stage index: kept rows} of one official forward."""
    cls = official.VisionTransformer
    stages, tokens = {}, []

    def merge(x, metric, index, depth=12):
        if noise:
            x = x + noise * x.std() * torch.randn(x.shape, generator=generator)
            metric = metric + noise * metric.std() * torch.randn(metric.shape, generator=generator)
        out = cls.merge(model, x, metric, index, depth)
        if out is not x:
            stages[index] = kept_rows(x, out)
        return out

    model.r = r
    model.merge = merge  # instance attribute: forward_features calls self.merge(...)
    hooks = [blk.register_forward_pre_hook(lambda m, args: tokens.append(args[0].shape[1])) for blk in model.blocks]
    try:
        with torch.no_grad():
            feature = model.forward_features(clip)
            logits = model.head(model.fc_dropout(feature))
    finally:
        for h in hooks:
            h.remove()
        del model.merge
    return logits, feature, tokens, stages


def stable(official, model, clip) -> bool:
    generator = torch.Generator().manual_seed(1234)
    for r in R_VALUES[1:]:
        _, _, _, ref = run(official, model, clip, r)
        for _ in range(TRIALS):
            _, _, _, got = run(official, model, clip, r, noise=NOISE, generator=generator)
            if got.keys() != ref.keys() or any(not torch.equal(got[k], ref[k]) for k in ref):
                return False
    return True


def stage_golden(official):
    """The official ``merge`` on fixed inputs (unbound call, depth 12)."""
    torch.manual_seed(0)
    cases = []
    for index, groups, n, r in STAGE_CASES:
        x = torch.randn(2, groups * n, STAGE_DIMS[0]).half().float()
        metric = torch.randn(2, groups * n, STAGE_DIMS[1]).half().float()
        out = official.VisionTransformer.merge(types.SimpleNamespace(r=r), x, metric, index, 12)
        assert out.shape == (2, groups * (n - r), STAGE_DIMS[0])
        cases.append({"index": index, "groups": groups, "r": r, "x": x.half(), "metric": metric.half(),
                      "kept": kept_rows(x, out).to(torch.int16)})
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", default="/work/.mirror/Mark12Ding+STA/repo")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "sta_golden.pt"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        official, commit, used = import_official(args.repo, workdir)
        for seed in range(100):
            model, clip = build(official, seed)
            if stable(official, model, clip):
                break
        else:
            raise SystemExit("no seed gave pruning decisions stable under the perturbation")
        runs = {}
        for r in R_VALUES:
            logits, feature, tokens, stages = run(official, model, clip, r)
            runs[r] = {"logits": logits, "feature": feature, "tokens_in": tokens,
                       "kept": {k: v.to(torch.int16) for k, v in sorted(stages.items())}}
            print(f"r={r}: tokens entering blocks {tokens}, stages {sorted(stages)}")
        cases = stage_golden(official)
    golden = {"source": f"Mark12Ding/STA@{commit}", "imports": used, "seed": seed,
              "config": dict(CONFIG), "noise": NOISE,
              "state_dict": {k: v.half() for k, v in model.state_dict().items()},  # exact: see build()
              "input": clip.half(), "runs": runs, "stages": cases}
    torch.save(golden, args.out)
    print(f"seed {seed} ({used}) -> {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()
