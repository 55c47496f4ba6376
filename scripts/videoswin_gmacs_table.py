"""The Video Swin GMACs table of docs/sta_swin.md: published / analytic / fvcore on the running model, per view.

    python scripts/videoswin_gmacs_table.py [--no-fvcore] [--models videoswin_t,...]

fvcore traces one forward of each model at 32x224 on random weights (Swin-B: about 1 min on 2 CPU cores).
"""
import argparse
import time

import torch

import harness
from harness.measure.flops import fvcore_macs

PUBLISHED = {"videoswin_t": (88, 68, 61, 54), "videoswin_s": (166, 121, 106, 91),
             "videoswin_b": (282, 202, 176, 149), "videoswin_b_ssv2": (321, 241, 215, 188)}
SETTINGS = [("dense", None), ("sta_swin", {"r": 192}), ("sta_swin", {"r": 256}), ("sta_swin", {"r": 320})]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-fvcore", action="store_true")
    ap.add_argument("--models", default=",".join(PUBLISHED))
    args = ap.parse_args()
    print("| model | setting | published | analytic | fvcore (running model) | fvcore s |")
    print("|---|---|---|---|---|---|")
    for name in args.models.split(","):
        for (method, margs), published in zip(SETTINGS, PUBLISHED[name]):
            torch.manual_seed(0)
            model = harness.build_model(name, method=method, method_args=margs)
            analytic = model.view_macs().total / 1e9
            counted, seconds = "-", 0.0
            if not args.no_fvcore:
                t0 = time.perf_counter()
                total, unexpected = fvcore_macs(model, torch.randn(1, 3, 32, 224, 224))
                seconds = time.perf_counter() - t0
                counted = f"{total / 1e9:.2f}" + (f" (unexpected ops {unexpected})" if unexpected else "")
            label = "dense" if margs is None else f"STA r1={margs['r']}"
            print(f"| {name} | {label} | {published} | {analytic:.2f} | {counted} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
