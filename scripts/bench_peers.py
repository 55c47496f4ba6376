"""Dense forward of the harness against transformers' ``VideoMAEForVideoClassification``, same weights.

One process: transformers' model (random weights, non-zero biases, ``attn_implementation`` sdpa) is saved
with ``save_pretrained`` and loaded into ours through the harness's Hugging Face loader, so both hold the same
numbers; their logits are compared once. Each repeat times both (order alternating between repeats) on
the same input in each model's own layout (ours [B,C,T,H,W], transformers' [B,T,C,H,W], made before timing).
The figure is the median over repeats of (transformers' time / ours) -- above 1: ours is faster -- with a
seeded bootstrap 95% interval; the 1-minute load average is printed with it, and each model's minor page
faults per forward (fresh pages the kernel zeroes: on CPU they, not the kernels, separated the two).

    python scripts/bench_peers.py                                # ViT-S 16x224 b1, ViT-B 16x224 b1, ViT-S 16x112 b8
    python scripts/bench_peers.py --shapes s16x112b8 --repeats 9 --precision bf16
    python scripts/bench_peers.py --profile s16x224b1           # torch.profiler tables of both, no timing

On a shared Linux machine, time with priority: ``echo -15 > /proc/$$/autogroup; OMP_WAIT_POLICY=PASSIVE
nice -n -15 python scripts/bench_peers.py`` (root; the header prints the nice values it ran under).

``--device cuda`` times with CUDA events (``scripts/gpu_check.sh`` runs it in bf16; its dry run on CPU uses the
tiny ``t`` size).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time

import torch

import harness
from harness.measure.choices import PRECISIONS
from harness.measure.regime import regime_context
from harness.measure.speed import timed_step_cpu, timed_step_cuda
from harness.models.timm_import import import_timm
from harness.report.stats import paired_ratio

import_timm()  # the torchvision fix, before transformers imports torchvision

SIZES = {"s": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536),
         "b": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
         "t": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256)}  # dry runs
DEFAULT_SHAPES = "s16x224b1,b16x224b1,s16x112b8"
_SHAPE = re.compile(r"^([sbt])(\d+)x(\d+)b(\d+)$")


def parse_shape(text: str) -> dict:
    """``"s16x224b1"`` -> ViT-S, 16 frames, 224 px, batch 1 (``b``: ViT-B; ``t``: a tiny model for dry runs)."""
    m = _SHAPE.match(text.strip())
    if not m:
        raise SystemExit(f"bench_peers: shape {text!r} is not SIZE FRAMESxPIXELS bBATCH, e.g. s16x224b1 or b16x224b1")
    size, frames, pixels, batch = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))
    return {"name": text.strip(), "size": size, "frames": frames, "pixels": pixels, "batch": batch}


def build_pair(shape: dict, device: torch.device, seed: int = 0):
    """(transformers' model, ours) with the same weights, in eval mode on ``device``."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(seed)
    config = transformers.VideoMAEConfig(image_size=shape["pixels"], num_frames=shape["frames"], num_labels=400,
                                         **SIZES[shape["size"]], attn_implementation="sdpa")
    peer = transformers.VideoMAEForVideoClassification(config).eval()
    with torch.no_grad():
        for name, p in peer.named_parameters():
            if name.endswith("bias") and "key" not in name:
                p.add_(torch.randn_like(p) * 0.02)
    with tempfile.TemporaryDirectory() as folder:
        peer.save_pretrained(folder)
        ours = harness.build_model("video_vit", checkpoint=folder).eval()
    return peer.to(device), ours.to(device)


def _priority() -> str:
    """The process's nice value and, under Linux autogroups, its session's: across sessions the scheduler
    shares the CPUs between autogroups by the autogroup's nice, so ``nice -n -15`` alone does not give this
    process the cores against other sessions' jobs (``echo -15 > /proc/$$/autogroup`` in the shell does)."""
    text = f"nice {os.nice(0)}"
    try:
        with open("/proc/self/autogroup") as f:
            text += f", autogroup {f.read().split()[-1]}"
    except (OSError, IndexError):
        pass
    return text


def _minor_faults() -> int:
    try:
        import resource
    except ImportError:  # not on Windows
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def compare(shape: dict, *, device: torch.device, precision: str, repeats: int, iters: int, warmup: int) -> dict:
    peer, ours = build_pair(shape, device)
    torch.manual_seed(1)
    x = torch.randn(shape["batch"], 3, shape["frames"], shape["pixels"], shape["pixels"], device=device)
    x_peer = x.transpose(1, 2).contiguous()
    step = timed_step_cuda if device.type == "cuda" else timed_step_cpu
    subjects = {"ours": (ours, x), "transformers": (lambda v: peer(pixel_values=v), x_peer)}
    times = {name: [] for name in subjects}
    faults = {name: [] for name in subjects}  # minor page faults per repeat (fresh pages the kernel zeroes)
    loads = []
    with torch.inference_mode(), regime_context(device, precision, "auto"):
        diff = (ours(x).float() - peer(pixel_values=x_peer).logits.float()).abs().max().item()
        for _ in range(warmup):
            for model, inp in subjects.values():
                step(model, inp)
        for rep in range(repeats):
            loads.append(_load())
            order = list(subjects) if rep % 2 == 0 else list(reversed(subjects))
            for name in order:
                model, inp = subjects[name]
                before = _minor_faults()
                times[name].append(sum(step(model, inp) for _ in range(iters)) / iters)
                faults[name].append((_minor_faults() - before) / iters)
    ratio = paired_ratio(times["transformers"], times["ours"])
    return {"shape": shape["name"], "batch": shape["batch"], "precision": precision, "device": str(device),
            "threads": torch.get_num_threads(), "repeats": repeats, "iters_per_repeat": iters,
            "ours_ms": [1e3 * t for t in times["ours"]], "transformers_ms": [1e3 * t for t in times["transformers"]],
            "ours_faults": faults["ours"], "transformers_faults": faults["transformers"],
            "ours_over_transformers": ratio, "max_abs_logit_diff": diff, "load_avg": loads,
            "cores": os.cpu_count(), "priority": _priority()}


def profile(shape: dict, device: torch.device, precision: str, rows: int = 25) -> None:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    peer, ours = build_pair(shape, device)
    x = torch.randn(shape["batch"], 3, shape["frames"], shape["pixels"], shape["pixels"], device=device)
    x_peer = x.transpose(1, 2).contiguous()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.inference_mode(), regime_context(device, precision, "auto"):
        for name, fn in (("ours", lambda: ours(x)), ("transformers", lambda: peer(pixel_values=x_peer))):
            fn()
            with torch_profile(activities=activities, record_shapes=True) as prof:
                fn()
            print(f"== {name} ({shape['name']}, {precision}, {device}, {torch.get_num_threads()} threads, "
                  f"load {_load():.2f})")
            print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=rows))


def format_result(r: dict) -> str:
    ratio = r["ours_over_transformers"]
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    loads = [v for v in r["load_avg"] if v == v]
    return (f"{r['shape']:<11} {r['precision']:<5} ours {med(r['ours_ms']):8.1f} ms  transformers "
            f"{med(r['transformers_ms']):8.1f} ms  ours/transformers speed {ratio['ratio']:.3f}x "
            f"[{ratio['low']:.3f}-{ratio['high']:.3f}] over {ratio['pairs']} paired repeats; "
            f"load avg {min(loads, default=float('nan')):.2f}-{max(loads, default=float('nan')):.2f} "
            f"on {r['cores']} cores; logits max |diff| {r['max_abs_logit_diff']:.1e}; page faults per forward "
            f"ours {med(r['ours_faults']):.0f} transformers {med(r['transformers_faults']):.0f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default=DEFAULT_SHAPES, help=f"comma-separated (default {DEFAULT_SHAPES})")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--iters", type=int, default=1, help="forwards per model per repeat (their mean is timed)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--precision", default="fp32", choices=PRECISIONS)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    ap.add_argument("--profile", metavar="SHAPE", help="print torch.profiler tables of both models at SHAPE")
    ap.add_argument("--json", metavar="PATH", help="also write every timing as JSON")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench_peers: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    if args.profile:
        profile(parse_shape(args.profile), device, args.precision)
        return 0
    shapes = [parse_shape(s) for s in args.shapes.split(",") if s.strip()]
    print(f"# dense forward, harness vs transformers {_version('transformers')} (sdpa), same weights; torch "
          f"{torch.__version__}, {args.device}, {torch.get_num_threads()} threads, {args.precision}; "
          f"{_priority()}; speed ratio = transformers time / ours (> 1: ours faster), median of paired repeats, "
          f"bootstrap 95%")
    results = []
    for shape in shapes:
        start = time.perf_counter()
        r = compare(shape, device=device, precision=args.precision, repeats=args.repeats, iters=args.iters,
                    warmup=args.warmup)
        r["wall_s"] = time.perf_counter() - start
        results.append(r)
        print(format_result(r), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    sys.exit(main())
