"""The statistics behind claims.md against textbook formulas and scipy on fixed inputs."""
import math

import numpy as np
import pytest
from scipy import stats as S

from ctcoupling import stats

A = [1.20, 1.35, 1.28]  # three seeds of a metric
B = [1.62, 1.55, 1.71, 1.49]


def test_mean_ci_is_the_t_interval():
    m = np.mean(A)
    half = S.t.ppf(0.975, 2) * np.std(A, ddof=1) / math.sqrt(3)  # t_{0.975, n-1} s / sqrt(n)
    got = stats.mean_ci(A)
    assert got[0] == pytest.approx(m)
    assert got[1] == pytest.approx(m - half) and got[2] == pytest.approx(m + half)
    assert got[1] < m < got[2]


def test_mean_ci_of_one_value_has_no_interval():
    m, lo, hi = stats.mean_ci([2.0])
    assert m == 2.0 and math.isnan(lo) and math.isnan(hi)


def test_welch_matches_the_welch_satterthwaite_formulas():
    a, b = np.array(A), np.array(B)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    p = 2 * S.t.sf(abs(t), df)
    half = S.t.ppf(0.975, df) * math.sqrt(va + vb)
    r = stats.welch(a, b)
    assert r["statistic"] == pytest.approx(t) and r["df"] == pytest.approx(df) and r["p"] == pytest.approx(p)
    assert r["low"] == pytest.approx(a.mean() - b.mean() - half)
    assert r["high"] == pytest.approx(a.mean() - b.mean() + half)
    assert r["p"] == pytest.approx(S.ttest_ind(a, b, equal_var=False).pvalue)


def test_paired_t_matches_the_one_sample_t_on_differences():
    b = B[:3]
    d = np.array(A) - np.array(b)
    t = d.mean() / (d.std(ddof=1) / math.sqrt(3))
    r = stats.paired_t(A, b)
    assert r["statistic"] == pytest.approx(t)
    assert r["p"] == pytest.approx(2 * S.t.sf(abs(t), 2))
    assert r["low"] < r["effect"] < r["high"]
    with pytest.raises(ValueError):
        stats.paired_t(A, B)


def test_paired_bootstrap_is_deterministic_and_brackets_the_mean_difference():
    a = np.array([0.9, 1.1, 1.0, 1.2, 0.8, 1.05])
    b = a + np.array([0.3, 0.25, 0.35, 0.28, 0.31, 0.33])
    lo, hi = stats.paired_bootstrap(a, b, n_resamples=2000, seed=3)
    assert (lo, hi) == stats.paired_bootstrap(a, b, n_resamples=2000, seed=3)
    assert lo < (a - b).mean() < hi < 0


@pytest.mark.parametrize("effect,p,lower,want", [(-0.3, 0.01, True, "holds"), (0.3, 0.01, True, "contradicted"),
                                                  (-0.3, 0.2, True, "not significant"),
                                                  (0.3, 0.01, False, "holds")])
def test_verdict(effect, p, lower, want):
    assert stats.verdict(effect, p, lower) == want


def test_compare_finds_the_separated_groups_and_not_the_overlapping_ones():
    assert stats.compare(A, B)["verdict"] == "holds"
    assert stats.compare(B, A)["verdict"] == "contradicted"
    assert stats.compare([1.0, 1.5, 1.2], [1.1, 1.4, 1.3])["verdict"] == "not significant"


def test_trend_is_spearman():
    x, y = [1, 2, 3, 4, 5], [0.1, 0.3, 0.2, 0.5, 0.9]
    r = stats.trend(x, y)
    assert r["rho"] == pytest.approx(S.spearmanr(x, y).statistic) and r["rho"] == pytest.approx(0.9)


def test_non_finite_values_are_an_error():
    with pytest.raises(ValueError, match="non-finite"):
        stats.mean_ci([1.0, float("nan")])


def test_welch_without_spread_is_exact():
    r = stats.welch([200.0, 200.0, 200.0], [400.0, 400.0, 400.0])
    assert (r["effect"], r["low"], r["high"], r["p"]) == (-200.0, -200.0, -200.0, 0.0)
    assert stats.welch([1.0, 1.0], [1.0, 1.0])["p"] == 1.0
