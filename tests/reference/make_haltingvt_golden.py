"""Regenerate ``tests/reference/haltingvt_golden.pt`` by running the OFFICIAL HaltingVT model code.

    python tests/reference/make_haltingvt_golden.py --repo /path/to/HaltingVT/.git [--out PATH]

``--repo`` is a git directory of dun-research/HaltingVT (commit 4830e2a; the search tool's ``fetch``
gives /work/.mirror/dun-research+HaltingVT/repo). The four backbone files are read with ``git show``
into a temporary package; mmaction's registry and mmengine's MessageHub are replaced by tiny
stand-ins (the backbone needs nothing else from them). Needs einops (``pip install einops``).
Not run by the tests, which only load the .pt.

The golden: a tiny HaltingVTModel (C=32, 2 heads, depth 5 = 2 Glimpser + 3 halting blocks, 4
frames of 32x32, keep [1.0, 0.5], gamma 10, eps 0.01) with perturbed random weights, plus random
``fc_cls``/``fc_motion`` heads, stored in the official recogniser's key layout. Backbone weights and
the input are rounded to fp16-representable values and stored in fp16 (exact; loaders cast to fp32).
The seed and beta are searched so that per-sample token counts differ, some tokens (a CLS among them)
halt early, and no halting threshold or Glimpser top-k choice lies within ``MARGIN`` of a tie (so a
faithful port reproduces the counts).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import types
from functools import partial

import torch
from torch import nn

FILES = ("haltingvt_model", "glimpser_helpers", "timesformer_utils", "vit_utils")
CONFIG = dict(img_size=32, patch_size=16, embed_dim=32, depth=5, num_heads=2, num_frames=4,
              keep_rate=[1.0, 0.5], halt_scale=10.0, eps=0.01, num_classes=5, batch=3)
MARGIN = 1e-3


def install_stand_ins() -> None:
    class Registry:
        def register_module(self, *args, **kwargs):
            return lambda cls: cls

    class MessageHub:
        @classmethod
        def get_current_instance(cls):
            return cls()

        def update_scalars(self, *args, **kwargs):
            pass

    modules = {name: types.ModuleType(name)
               for name in ("mmaction", "mmaction.registry", "mmengine", "mmengine.logging")}
    modules["mmaction.registry"].MODELS = Registry()
    modules["mmengine.logging"].MessageHub = MessageHub
    sys.modules.update(modules)


def import_official(repo: str, workdir: str):
    package = os.path.join(workdir, "hvt_official")
    os.makedirs(package)
    open(os.path.join(package, "__init__.py"), "w").close()
    commit = subprocess.run(["git", "--git-dir", repo, "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()
    for name in FILES:
        source = subprocess.run(["git", "--git-dir", repo, "show", f"HEAD:models/backbones/{name}.py"],
                                check=True, capture_output=True, text=True).stdout
        with open(os.path.join(package, f"{name}.py"), "w") as f:
            f.write(source)
    sys.path.insert(0, workdir)
    install_stand_ins()
    import hvt_official.haltingvt_model as official

    return official, commit


def build(official, seed: int, beta: float):
    c = CONFIG
    torch.manual_seed(seed)
    model = official.HaltingVTModel(
        img_size=c["img_size"], patch_size=c["patch_size"], num_classes=0, embed_dim=c["embed_dim"],
        depth=c["depth"], num_heads=c["num_heads"], mlp_ratio=4, qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6), drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.1,
        num_frames=c["num_frames"], divid_depth=len(c["keep_rate"]), keep_rate=c["keep_rate"],
        get_idx=True, use_halting=True, halt_scale=c["halt_scale"], halt_center=beta, eps=c["eps"],
        get_mask=True).eval()
    with torch.no_grad():  # every parameter non-trivial (temporal_fc and time_embed start at zero)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
            p.copy_(p.half().float())  # fp16-representable, so the file can store them in half
    heads = {"fc_cls": nn.Linear(c["embed_dim"], c["num_classes"]), "fc_motion": nn.Linear(c["embed_dim"], 2)}
    clip = torch.randn(c["batch"], 3, c["num_frames"], c["img_size"], c["img_size"]).half().float()
    return model, heads, clip


def run(model, heads, clip):
    scores, glimpse = [], []
    hooks = [blk.register_forward_hook(lambda m, i, o: scores.append(o[1])) for blk in model.blocks[2:]]
    hooks.append(model.blocks[1].attn.register_forward_hook(
        lambda m, i, o: glimpse.append(o[3]) if isinstance(o, tuple) and o[3] is not None else None))
    with torch.no_grad():
        feature, res = model.forward_features(clip)
    for h in hooks:
        h.remove()
    return feature, res, torch.stack(scores), glimpse[0]


def acceptable(res, scores, cls_attn) -> bool:
    eps, keep = CONFIG["eps"], res["left_tokens"][-1] // CONFIG["num_frames"]
    nums = res["token_nums"]
    if len({tuple(row.tolist()) for row in nums}) < nums.shape[0] or not (nums[:, -1] < nums[:, 0]).all():
        return False
    if res["mask_record"][-2][:, 0].all():  # the CLS must halt early in at least one clip
        return False
    c = scores[:-1].cumsum(0)  # halting thresholds are tested before the forced last block
    if ((c - (1 - eps)).abs() < MARGIN).any():
        return False
    ranked = cls_attn.sort(dim=1, descending=True).values
    return bool(((ranked[:, keep - 1] - ranked[:, keep]) > MARGIN * 1e-2).all())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", default="/work/.mirror/dun-research+HaltingVT/repo")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "haltingvt_golden.pt"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        official, commit = import_official(args.repo, workdir)
        for seed in range(200):
            beta = [-2.0, 0.0, 2.0, 5.0][seed % 4]
            model, heads, clip = build(official, seed, beta)
            feature, res, scores, cls_attn = run(model, heads, clip)
            if acceptable(res, scores, cls_attn):
                break
        else:
            raise SystemExit("no seed gave distinct per-sample counts with safe margins")
    state = {f"backbone.model.{k}": v.half() for k, v in model.state_dict().items()}  # exact: see build()
    state.update({f"cls_head.{name}.{k}": v
                  for name, head in heads.items() for k, v in head.state_dict().items()})
    with torch.no_grad():
        logits, motion = heads["fc_cls"](feature), heads["fc_motion"](feature)
    golden = {"source": f"dun-research/HaltingVT@{commit}", "seed": seed,
              "config": {**CONFIG, "halt_center": beta}, "state_dict": state, "input": clip.half(),
              "feature": feature, "logits": logits, "motion_logits": motion,
              "rho_token": res["rho_token"], "counter_token": res["counter_token"],
              "token_nums": res["token_nums"], "left_tokens": res["left_tokens"],
              "mask_record": torch.stack(res["mask_record"]),
              "halting_score_layer": torch.stack(res["halting_score_layer"]),
              "glimpser_idx": res["idxs"][0], "halting_scores": scores}
    torch.save(golden, args.out)
    print(f"seed {seed}, beta {beta}: token_nums {res['token_nums'].tolist()} -> {args.out}")


if __name__ == "__main__":
    main()
