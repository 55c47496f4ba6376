"""Statistics for leaderboards: confidence intervals and paired tests on the same videos (torch-free)."""
from __future__ import annotations

import math
import typing as tp


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tp.Tuple[float, float]:
    """Wilson score interval for a proportion (95% by default); well-behaved at 0, 1 and small n."""
    if n <= 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)  # analytically exact at the ends
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return (lo, hi)


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (binomial test at 1/2)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    if n <= 1000:
        tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
        return min(1.0, 2 * tail)
    # the same sum in floating point, log-space (exact integers grow to thousands of digits: 27 s a row at
    # n = 10,000): log C(n, i) - n log 2, summed from the largest term down, relative error ~1e-12
    logs, log_c = [], -n * math.log(2)
    for i in range(k + 1):
        logs.append(log_c)
        log_c += math.log(n - i) - math.log(i + 1)
    top = max(logs)
    tail = math.exp(top) * math.fsum(math.exp(v - top) for v in logs)
    return min(1.0, 2 * tail)


def paired_comparison(rows: tp.Sequence[dict], baseline: tp.Sequence[dict]) -> tp.Optional[dict]:
    """Compare per-video rows (``index``, ``pred``, ``correct_top1``) with a baseline's, on common videos.

    Returns the number of common videos, the discordant counts (right only here / only in the baseline),
    the exact McNemar p-value and the agreement of the top-1 predictions; None without common videos.
    """
    base = {str(r["index"]): r for r in baseline}
    common = [(r, base[str(r["index"])]) for r in rows if str(r["index"]) in base]
    if not common:
        return None
    only_here = sum(int(r["correct_top1"]) and not int(b["correct_top1"]) for r, b in common)
    only_base = sum(int(b["correct_top1"]) and not int(r["correct_top1"]) for r, b in common)
    agree = sum(str(r["pred"]) == str(b["pred"]) for r, b in common)
    return {"n_common": len(common), "only_this_correct": only_here, "only_baseline_correct": only_base,
            "p_mcnemar": mcnemar_exact(only_here, only_base), "agreement": agree / len(common)}
