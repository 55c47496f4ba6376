"""Regenerate ``tests/reference/rlt_golden.pt`` by running the OFFICIAL RLT token selection.

    python tests/reference/make_rlt_golden.py [--repo /path/to/rlt/.git] [--data DIR] [--out PATH]

``--repo`` is a git directory of rccchoudhury/rlt (commit 69ec8b4; the search tool's ``fetch`` gives
/work/.mirror/rccchoudhury+rlt/repo). ``src/models/static_token_utils.py`` is read with ``git show``
into a temporary module (its unused ``import ipdb`` gets an empty stand-in module) and its
``batched_find_idxs_to_keep`` and ``batched_get_token_lengths`` are called. Not run by the tests,
which only load the .pt.

Two inputs, each with several thresholds:

* ``random``: float clips [2, 3, T, S, S] = a random background + per-(tubelet, patch) noise whose
  amplitude is drawn so that the patches' mean |difference| spreads around the thresholds; fp16-exact
  values stored in fp16. Patch 16 / tubelet 2 (official) on 16 x 32 x 32, patch 8 / tubelet 1 on 8 x 16 x 16.
* ``real``: uint8 frames [3, 16, 64, 32, 3] (left halves) in the official input layout [B, T, H, W, C]: two
  ``synthetic_motion`` val videos as decoded by the harness (H.264, so compression noise on the static
  background), and a third clip that repeats the first frame of video 0 with +-1 uint8 noise. They
  are normalised exactly as the official ``VITModule.setup_tokenizer`` (torchvision v2
  ``ToDtype(float32, scale=True)`` then ``Normalize`` with the ImageNet mean/std, on [B, T, C, H, W],
  then transposed to [B, C, T, H, W]) before the official function runs; the test normalises the same
  frames with the harness's own ``normalize`` (dataset mean/std = ImageNet by default).

Stored per case: the kept mask [B, N] (official order: (t, h, w) flattened) and, for ``real``, the
official run lengths (a flat tensor in the official (b, h, w, t) order of the kept tokens).
"""
import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import types

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SOURCE = "src/models/static_token_utils.py"
RANDOM_THRESHOLDS = (0.05, 0.1, 0.2)
REAL_THRESHOLDS = (0.02, 0.1, 0.3)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def load_official(repo: str):
    commit = subprocess.run(["git", "--git-dir", repo, "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()
    source = subprocess.run(["git", "--git-dir", repo, "show", f"HEAD:{SOURCE}"], check=True,
                            capture_output=True, text=True).stdout
    tmp = tempfile.mkdtemp(prefix="rlt_official_")
    path = os.path.join(tmp, "static_token_utils.py")
    with open(path, "w") as f:
        f.write(source)
    sys.modules.setdefault("ipdb", types.ModuleType("ipdb"))  # imported, never called
    spec = importlib.util.spec_from_file_location("rlt_static_token_utils", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, commit


def random_clips(seed: int, tubelet: int, patch: int, t: int, s: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    b, c = 2, 3
    base = torch.randn(b, c, 1, s, s, generator=g)
    amp = torch.rand(b, 1, t // tubelet, s // patch, s // patch, generator=g) * 0.2  # a patch's mean |diff| is ~ amp
    amp = amp.repeat_interleave(tubelet, 2).repeat_interleave(patch, 3).repeat_interleave(patch, 4)
    clip = base + amp * torch.randn(b, c, t, s, s, generator=g)
    return clip.half().float()


def real_frames(data: str) -> torch.Tensor:
    sys.path.insert(0, ROOT)
    from harness.data.video_dataset import decode_frames

    videos = []
    for name in ("00000.mp4", "00023.mp4"):
        frames, inds, wanted = decode_frames(os.path.join(data, "videos", "val", name), lambda n: np.arange(16) % n)
        videos.append(torch.from_numpy(frames[np.searchsorted(inds, wanted)]))
    g = torch.Generator().manual_seed(3)
    still = videos[0][:1].expand(16, -1, -1, -1).to(torch.int16)
    still = still + torch.randint(-1, 2, still.shape, generator=g, dtype=torch.int16)
    videos.append(still.clamp(0, 255).to(torch.uint8))
    return torch.stack(videos)[:, :, :, :32].contiguous()  # [B, T, H, W, C], left half (size of the .pt)


def official_normalise(frames: torch.Tensor) -> torch.Tensor:
    sys.path.insert(0, ROOT)
    from harness.models.timm_import import import_timm

    import_timm()  # makes torchvision importable on a CPU-only torch
    from torchvision.transforms import v2

    transform = torch.nn.Sequential(v2.ToDtype(torch.float32, scale=True),
                                    v2.Normalize(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD)))
    x = transform(frames.permute(0, 1, 4, 2, 3))  # [B, T, C, H, W], as the official Tokenizer.forward
    return x.transpose(1, 2)  # [B, C, T, H, W]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", default="/work/.mirror/rccchoudhury+rlt/repo")
    parser.add_argument("--data", default=os.path.join(os.environ.get("HARNESS_DATA", os.path.expanduser(
        "~/.cache/harness")), "synthetic_motion-v2"))
    parser.add_argument("--out", default=os.path.join(HERE, "rlt_golden.pt"))
    args = parser.parse_args()
    official, commit = load_official(args.repo)

    random_cases = {}
    for tubelet, patch, seed, t, s in ((2, 16, 0, 16, 32), (1, 8, 1, 8, 16)):
        clip = random_clips(seed, tubelet, patch, t, s)
        masks = {str(th): official.batched_find_idxs_to_keep(clip, threshold=th, tubelet_size=tubelet,
                                                             patch_size=patch) for th in RANDOM_THRESHOLDS}
        random_cases[f"t{tubelet}_p{patch}"] = {"clip": clip.half(), "tubelet_size": tubelet,
                                                "patch_size": patch, "keep": masks}
        print(f"random t{tubelet} p{patch}:", {k: float(v.float().mean()) for k, v in masks.items()})

    frames = real_frames(args.data)
    x = official_normalise(frames)
    b, _, t, h, w = x.shape
    shape = (t // 2, h // 16, w // 16)
    real = {"frames": frames, "tubelet_size": 2, "patch_size": 16, "keep": {}, "lengths": {}}
    for th in REAL_THRESHOLDS:
        keep = official.batched_find_idxs_to_keep(x, threshold=th, tubelet_size=2, patch_size=16)
        real["keep"][str(th)] = keep
        real["lengths"][str(th)] = official.batched_get_token_lengths(keep, batch_size=b, input_shape=shape)
        print(f"real {th}: kept per clip", keep.sum(1).tolist())

    golden = {"commit": commit, "source": SOURCE, "random": random_cases, "real": real,
              "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    torch.save(golden, args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes) from rccchoudhury/rlt@{commit[:7]}")


if __name__ == "__main__":
    main()
