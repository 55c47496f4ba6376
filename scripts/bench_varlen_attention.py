"""Time HaltingVT's variable-length attention: one nested-tensor SDPA call vs one SDPA call per clip.

    python scripts/bench_varlen_attention.py [--device cpu] [--dim 384] [--heads 6] [--batch 8]
        [--tokens 393] [--precision fp32] [--iters 20]

Each clip keeps a random count of its tokens (between a quarter and all of them), as halting does; the
same concatenated input goes through ``Attention.forward_varlen`` (one call) and the per-clip loop
(``varlen_impl`` "nested" vs "loop"), the outputs are compared, and the median time of each is printed.
"""
import argparse
import statistics
import time

import torch

from harness.measure.regime import autocast_context
from methods.haltingvt.layers import Attention


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=393)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--iters", type=int, default=20)
    a = ap.parse_args()
    dev = torch.device(a.device)
    torch.manual_seed(0)
    attn = Attention(a.dim, a.heads).to(dev).eval()
    lengths = torch.randint(a.tokens // 4, a.tokens + 1, (a.batch,)).tolist()
    x = torch.randn(1, sum(lengths), a.dim, device=dev)
    C, H = a.dim, a.heads

    def loop():
        attn.varlen_impl = "loop"
        return attn.forward_varlen(x, lengths)

    def one_call():
        attn.varlen_impl = "nested"
        return attn.forward_varlen(x, lengths)

    def timed(fn):
        times = []
        for i in range(a.iters + 3):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            if i >= 3:
                times.append(time.perf_counter() - t0)
        return statistics.median(times)

    with torch.inference_mode(), autocast_context(dev, a.precision):
        diff = (loop().float() - one_call().float()).abs().max().item()
        t_loop, t_one = timed(loop), timed(one_call)
        t_loop, t_one = min(t_loop, timed(loop)), min(t_one, timed(one_call))
    print(f"device={dev} precision={a.precision} dim={C} heads={H} batch={a.batch} lengths={lengths} "
          f"threads={torch.get_num_threads()}")
    print(f"per-clip loop {1e3 * t_loop:.2f} ms | one nested-tensor call {1e3 * t_one:.2f} ms | "
          f"ratio loop/one {t_loop / t_one:.2f}x | max |diff| {diff:.2e}")


if __name__ == "__main__":
    main()
