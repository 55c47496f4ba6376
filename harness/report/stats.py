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
    the exact McNemar p-value and the agreement of the top-1 predictions with its 95% Wilson interval; None
    without common videos.
    """
    base = {str(r["index"]): r for r in baseline}
    common = [(r, base[str(r["index"])]) for r in rows if str(r["index"]) in base]
    if not common:
        return None
    only_here = sum(int(r["correct_top1"]) and not int(b["correct_top1"]) for r, b in common)
    only_base = sum(int(b["correct_top1"]) and not int(r["correct_top1"]) for r, b in common)
    agree = sum(str(r["pred"]) == str(b["pred"]) for r, b in common)
    low, high = wilson_interval(agree, len(common))
    return {"n_common": len(common), "only_this_correct": only_here, "only_baseline_correct": only_base,
            "p_mcnemar": mcnemar_exact(only_here, only_base), "agreement": agree / len(common),
            "agreement_ci": (low, high)}


def bootstrap_median_interval(values: tp.Sequence[float], *, level: float = 0.95, resamples: int = 2000,
                              seed: int = 0) -> tp.Tuple[float, float, float]:
    """(median, low, high): the median of ``values`` and its percentile-bootstrap interval (seeded, so a
    report renders the same interval every time). One value gives a zero-width interval at that value."""
    import random

    values = sorted(float(v) for v in values)
    if not values:
        return (math.nan, math.nan, math.nan)
    median = _median(values)
    if len(values) == 1:
        return (median, median, median)
    rng = random.Random(seed)
    n = len(values)
    boots = sorted(_median(sorted(rng.choice(values) for _ in range(n))) for _ in range(resamples))
    tail = (1 - level) / 2
    return (median, _quantile(boots, tail), _quantile(boots, 1 - tail))


def paired_ratio(numerator_runs: tp.Sequence[float], denominator_runs: tp.Sequence[float], *,
                 seed: int = 0) -> tp.Optional[dict]:
    """Median and bootstrap 95% interval of ``numerator[i] / denominator[i]`` over paired repeats ``i``.

    Speedups are ratios of two timings taken in the same interleaved repeat (a load change between repeats
    then moves both alike); pairs with a missing or non-positive time are dropped. None without a pair.
    """
    ratios = [a / b for a, b in zip(numerator_runs, denominator_runs)
              if _positive(a) and _positive(b)]
    if not ratios:
        return None
    median, low, high = bootstrap_median_interval(ratios, seed=seed)
    return {"ratio": median, "low": low, "high": high, "pairs": len(ratios)}


def unpaired_ratio(numerator_runs: tp.Sequence[float], denominator_runs: tp.Sequence[float], *,
                   resamples: int = 2000, seed: int = 0) -> tp.Optional[dict]:
    """median(numerator) / median(denominator) with a percentile-bootstrap 95% interval that resamples the two
    sides independently: for repeats that were not timed side by side (two cells of different runs)."""
    import random

    num = [float(v) for v in numerator_runs if _positive(v)]
    den = [float(v) for v in denominator_runs if _positive(v)]
    if not num or not den:
        return None
    rng = random.Random(seed)
    boots = sorted(_median(sorted(rng.choice(num) for _ in num)) / _median(sorted(rng.choice(den) for _ in den))
                   for _ in range(resamples))
    return {"ratio": _median(sorted(num)) / _median(sorted(den)), "low": _quantile(boots, 0.025),
            "high": _quantile(boots, 0.975), "pairs": 0}


def _positive(value: tp.Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _median(ordered: tp.Sequence[float]) -> float:
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _quantile(ordered: tp.Sequence[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default)."""
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
