"""Speedup ratios of one regime over another per method, robust to a shared machine: the two regimes'
forwards alternate (A, B, A, B, ...) in one process on the same model and input, so a load change slows
both alike; the ratio is median(A times) / median(B times).

    python scripts/regime_ratios.py precision --backbone videomae_vit_s16 --img-size 112 --batch 8 --iters 7
    python scripts/regime_ratios.py compile --backbone synthetic_vit_tiny --batch 8 --iters 15

``precision``: fp32 (A) vs bf16 autocast (B). ``compile``: eager (A) vs torch.compile default mode (B;
HaltingVT with dynamic=True), after the compile warm-up; compile time and recompilations are printed.
Methods as in suites/bench_vit_s112.yaml / bench_haltingvt_s112.yaml, scaled to the backbone's tokens.
"""
import argparse
import os
import statistics
import time

import torch

from harness.build import build_model
from harness.measure.compiled import compile_for_timing, count_after
from harness.measure.regime import regime_context

METHODS = {  # per backbone token count: ViT-S 16x112 (392 tokens) or the tiny model (128)
    "videomae_vit_s16": [("dense", {}), ("tome", {"r": 16}), ("vid_tldr", {"r": [100, 50, 25]}), ("sta", {"r": 16}),
                         ("sttm", {"num_meta": 0.5, "temporal_r": 0.25}),
                         ("haltingvt", {"keep_rate": 0.5, "halt_center": 5, "mode": "varlen"})],
    "synthetic_vit_tiny": [("dense", {}), ("tome", {"r": 8}), ("vid_tldr", {"r": [32, 16]}), ("sta", {"r": 4}),
                           ("sttm", {"num_meta": 0.5, "temporal_r": 0.25}),
                           ("haltingvt", {"keep_rate": 0.5, "halt_center": 5, "mode": "varlen"})],
}


def timed(fn, x):
    t0 = time.perf_counter()
    fn(x)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("precision", "compile"))
    ap.add_argument("--backbone", default="videomae_vit_s16")
    ap.add_argument("--img-size", type=int)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--methods", default="")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    extra = {"img_size": a.img_size} if a.img_size else {}
    wanted = set(filter(None, a.methods.split(",")))
    print(f"{a.what}: {a.backbone} {extra} batch {a.batch}, {a.iters} alternating pairs, {a.threads} threads, "
          f"torch {torch.__version__}, load {os.getloadavg()[0]:.1f}")
    for name, params in METHODS[a.backbone]:
        if wanted and name not in wanted:
            continue
        torch.manual_seed(0)
        model = build_model(a.backbone, method=name, method_args=params, num_classes=12, **extra).eval()
        cfg = model.cfg
        x = torch.randn(a.batch, cfg.in_chans, cfg.num_frames, cfg.img_size, cfg.img_size)
        info = {}
        if a.what == "precision":
            def run_a(x):
                return model(x)

            def run_b(x):
                with regime_context("cpu", "bf16", "auto"):
                    return model(x)
        else:
            run_a = model
            compiled, info = compile_for_timing(model, x, mode="default", dynamic=True if name == "haltingvt" else None)
            if compiled is None:
                print(f"{name:10s} compile failed: {info['compile_error']}")
                continue
            run_b = compiled
        ta, tb = [], []
        with torch.inference_mode():
            run_a(x), run_b(x)  # warm-up
            for _ in range(a.iters):
                ta.append(timed(run_a, x))
                tb.append(timed(run_b, x))
        if info:
            count_after(info)
        ma, mb = statistics.median(ta), statistics.median(tb)
        line = (f"{name:10s} A {a.batch / ma:7.3g} clips/s  B {a.batch / mb:7.3g} clips/s  B/A speedup {ma / mb:.2f}x"
                f"  (A iqr {_iqr(ta):.0%}, B iqr {_iqr(tb):.0%})")
        if info:
            line += (f"  compile {info['compile_time_s']:.0f} s, {info['compile_graphs']} graphs, "
                     f"{info['compile_graph_breaks']} breaks, {info['recompiles']} recompiles")
        print(line + f"  load {os.getloadavg()[0]:.1f}", flush=True)


def _iqr(times):
    q1, _, q3 = statistics.quantiles(times, n=4)
    return (q3 - q1) / statistics.median(times)


if __name__ == "__main__":
    main()
