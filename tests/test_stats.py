"""The statistics behind claims.md against textbook formulas, scipy and statsmodels on fixed inputs."""
import itertools
import math

import numpy as np
import pytest
from scipy import stats as S

from ctcoupling.results import stats

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


@pytest.mark.parametrize("effect,p,lower,want", [(-0.3, 0.01, True, "holds"), (0.3, 0.01, True, "contradicted"),
                                                  (-0.3, 0.2, True, "not significant"),
                                                  (0.3, 0.01, False, "holds")])
def test_verdict(effect, p, lower, want):
    assert stats.verdict(effect, p, lower) == want


def test_trend_is_spearman():
    x, y = [1, 2, 3, 4, 5], [0.1, 0.3, 0.2, 0.5, 0.9]
    r = stats.trend(x, y)
    assert r["rho"] == pytest.approx(S.spearmanr(x, y).statistic) and r["rho"] == pytest.approx(0.9)


def test_non_finite_values_are_an_error():
    with pytest.raises(ValueError, match="non-finite"):
        stats.mean_ci([1.0, float("nan")])


def test_sign_flip_p_is_the_enumeration_of_every_sign_flip():
    a = np.array([3.1, 2.7, 3.6, 2.9, 3.3, 3.0])
    b = np.array([2.8, 2.9, 3.0, 2.5, 3.1, 2.6])
    d = a - b
    flips = [np.mean(np.array(s) * d) for s in itertools.product((1, -1), repeat=len(d))]  # all 2^6
    want = np.mean(np.abs(flips) >= abs(d.mean()) - 1e-12)
    assert stats.sign_flip_p(a, b) == pytest.approx(want)
    assert stats.sign_flip_p(a + 10, a) == pytest.approx(2 / 2**6)  # every seed the same side: the floor 2 / 2^n
    assert stats.sign_flip_p(a, a) == 1.0


def test_holm_is_statsmodels_and_the_textbook_step_down():
    from statsmodels.stats.multitest import multipletests

    p = [0.01, 0.04, 0.03, 0.005]
    # Holm by hand: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1, running maximum, capped at 1
    assert stats.holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]))
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0]) and stats.holm([]) == []


def test_minimal_detectable_effect_has_the_stated_power():
    from statsmodels.stats.power import TTestPower

    sd, n, alpha = 0.4, 6, 0.01
    mde = stats.mde_paired(sd, n, alpha, 0.8)
    assert TTestPower().power(effect_size=mde / sd, nobs=n, alpha=alpha) == pytest.approx(0.8, abs=1e-6)
    # the same power from the noncentral t (scipy), independently of statsmodels
    crit = S.t.ppf(1 - alpha / 2, n - 1)
    nc = mde / sd * math.sqrt(n)
    power = S.nct.sf(crit, n - 1, nc) + S.nct.cdf(-crit, n - 1, nc)
    assert power == pytest.approx(0.8, abs=1e-6)
    assert stats.mde_paired(sd, 12, alpha) < mde  # more seeds see smaller effects
    assert math.isnan(stats.mde_paired(sd, 1, alpha)) and stats.mde_paired(0.0, 5, alpha) == 0.0


def test_seeds_needed_is_the_fewest_that_reach_the_power():
    n = stats.seeds_needed(1.0, 1.0, alpha=0.05)
    assert stats.mde_paired(1.0, n, 0.05) <= 1.0 < stats.mde_paired(1.0, n - 1, 0.05)
    with pytest.raises(ValueError):
        stats.seeds_needed(1.0, 0.0)


def test_paired_reports_t_permutation_and_mde():
    a = np.array([1.0, 1.2, 0.9, 1.1, 1.05])
    b = a + np.array([0.2, 0.25, 0.18, 0.3, 0.22])
    r = stats.paired(a, b, alpha=0.05)
    assert r["p"] == pytest.approx(S.ttest_rel(a, b).pvalue) and r["effect"] == pytest.approx((a - b).mean())
    assert r["p_perm"] == pytest.approx(2 / 2**5) and r["n"] == 5
    assert r["mde"] == pytest.approx(stats.mde_paired(np.std(a - b, ddof=1), 5, 0.05))
    three = stats.paired(a[:3], b[:3])
    assert math.isnan(three["p_perm"])  # below permutation_from seeds: no permutation p
    exact = stats.paired([2.0, 3.0], [1.0, 2.0])  # the same difference every seed: exact, no spread
    assert (exact["effect"], exact["p"], exact["low"]) == (1.0, 0.0, 1.0)


def test_gehan_scores_by_hand():
    # runs: reached at 100, reached at 300, censored at 500, censored at 500
    s = stats.gehan_scores([100, 300, 500, 500], [True, True, False, False])
    # 100 is certainly shorter than all three others: -3; 300 outlasts 100 and is shorter than both censored: 1 - 2
    # each censored run outlasts 100 and 300 and is undetermined against the other: +2
    assert list(s) == [-3, -1, 2, 2]


def test_censored_speed_test_on_a_group_that_never_reaches_the_level():
    n = 6
    fast = np.array([200.0, 260.0, 240.0, 300.0, 220.0, 280.0])
    never = np.full(n, 1500.0)
    r = stats.censored_paired(fast, np.ones(n, bool), never, np.zeros(n, bool))
    assert r["reached_a"] == n and r["reached_b"] == 0 and r["effect"] < 0
    assert r["p"] == pytest.approx(2 / 2**n) == r["min_p"]  # every seed on the claim's side: the exact floor
    tie = stats.censored_paired(never, np.zeros(n, bool), never, np.zeros(n, bool))
    assert tie["p"] == 1.0 and tie["effect"] == 0.0
    # against a brute-force permutation of the per-seed Gehan score differences
    ta = np.array([200.0, 900.0, 1500.0, 400.0, 700.0])
    ea = np.array([True, True, False, True, True])
    tb = np.array([300.0, 800.0, 1000.0, 1500.0, 1500.0])
    eb = np.array([True, True, True, False, False])
    sc = stats.gehan_scores(np.r_[ta, tb], np.r_[ea, eb])
    d = sc[:5] - sc[5:]
    flips = [abs(np.mean(np.array(f) * d)) for f in itertools.product((1, -1), repeat=5)]
    want = np.mean(np.array(flips) >= abs(d.mean()) - 1e-12)
    assert stats.censored_paired(ta, ea, tb, eb)["p"] == pytest.approx(want)
