import math

import pytest

from harness.report.stats import mcnemar_exact, paired_comparison, wilson_interval


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(81, 100)
    assert (round(lo, 4), round(hi, 4)) == (0.7222, 0.8749)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_mcnemar_exact_known_table():
    # 10 videos right only for A, 2 right only for B: p = 2 * P(X <= 2 | n=12, 1/2) = 2 * 79 / 4096
    assert mcnemar_exact(10, 2) == pytest.approx(158 / 4096)
    assert mcnemar_exact(2, 10) == mcnemar_exact(10, 2)
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(5, 5) == 1.0


def test_paired_comparison_uses_common_videos_only():
    method = [{"index": i, "pred": p, "correct_top1": c} for i, p, c in
              [(0, 1, 1), (1, 2, 0), (2, 3, 1), (3, 0, 1), (9, 9, 1)]]
    dense = [{"index": str(i), "pred": str(p), "correct_top1": str(c)} for i, p, c in
             [(0, 1, 1), (1, 1, 1), (2, 3, 1), (3, 2, 0)]]
    out = paired_comparison(method, dense)
    assert out["n_common"] == 4 and out["only_this_correct"] == 1 and out["only_baseline_correct"] == 1
    assert out["agreement"] == 0.5 and out["p_mcnemar"] == 1.0
    assert paired_comparison(method, []) is None


def test_bootstrap_median_interval_is_seeded_and_brackets_the_median():
    from harness.report.stats import bootstrap_median_interval

    values = [1.0, 1.2, 0.9, 1.1, 1.05, 0.95, 1.3]
    median, low, high = bootstrap_median_interval(values)
    assert median == 1.05 and low <= median <= high and (low, high) == bootstrap_median_interval(values)[1:]
    assert bootstrap_median_interval([2.0]) == (2.0, 2.0, 2.0)


def test_paired_ratio_drops_unusable_pairs_and_unpaired_resamples_both_sides():
    from harness.report.stats import paired_ratio, unpaired_ratio

    got = paired_ratio([150.0, 75.0, None, 120.0], [100.0, 50.0, 80.0, 80.0])
    assert got["ratio"] == pytest.approx(1.5) and got["pairs"] == 3 and got["low"] == got["high"] == pytest.approx(1.5)
    assert paired_ratio([], [1.0]) is None and paired_ratio([1.0], [0.0]) is None
    apart = unpaired_ratio([150.0, 75.0, 120.0], [100.0, 50.0, 80.0])
    assert apart["ratio"] == pytest.approx(1.5) and apart["low"] < 1.5 < apart["high"] and apart["pairs"] == 0


def test_mcnemar_large_counts_match_the_exact_sum():
    """Beyond 1,000 discordant pairs the tail is summed in floating point (the exact integer sum took 27 s a
    row at 10,000 pairs): equal to the exact sum to ~1e-11 relative."""
    import math

    from harness.report.stats import mcnemar_exact

    for a, b in [(600, 500), (4900, 5100), (1200, 1000)]:
        n, k = a + b, min(a, b)
        exact = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)
        assert math.isclose(mcnemar_exact(a, b), exact, rel_tol=1e-10)
