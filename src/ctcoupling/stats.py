"""Statistics over seeds for the claims: a mean with its 95% interval and tests of an effect.

Every number is scipy's (scipy.stats): the t interval of a mean, Welch's unequal-variance t-test
with its interval for a difference, the paired t-test over seeds that share an initialisation, and
a paired bootstrap interval. Nothing here reads or writes files.

A claim compares two groups of per-seed values a and b (a metric, lower is better unless said
otherwise). `compare` returns the effect mean(a) - mean(b) with its interval, the p-value and a
verdict: "holds" (significant in the claimed direction), "contradicted" (significant against it),
"not significant" otherwise.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats as S

LEVEL = 0.95
ALPHA = 1 - LEVEL


def _values(x) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    if not np.isfinite(a).all():
        raise ValueError("statistics of non-finite values: a run diverged or a metric is missing")
    return a


def mean_ci(x, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high): the t interval of the mean of x (NaN bounds with fewer than 2 values)."""
    a = _values(x)
    m = float(a.mean())
    if len(a) < 2:
        return m, math.nan, math.nan
    if np.ptp(a) == 0:
        return m, m, m
    lo, hi = S.t.interval(level, len(a) - 1, loc=m, scale=S.sem(a))
    return m, float(lo), float(hi)


def welch(a, b, alternative: str = "two-sided", level: float = LEVEL) -> dict:
    """Welch's t-test of mean(a) - mean(b): effect, its interval (Welch-Satterthwaite df), t, df, p."""
    a, b = _values(a), _values(b)
    if np.ptp(a) == 0 and np.ptp(b) == 0:  # no spread at all (scipy: NaN): the difference is exact
        d = float(a[0] - b[0])
        return {"test": "Welch t", "effect": d, "low": d, "high": d, "statistic": math.copysign(math.inf, d) if d else 0.0,
                "df": float(len(a) + len(b) - 2), "p": 0.0 if d else 1.0, "n": (len(a), len(b))}
    with warnings.catch_warnings():  # one group without spread (e.g. censored steps): exact, not imprecise
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        r = S.ttest_ind(a, b, equal_var=False, alternative=alternative)
        ci = S.ttest_ind(a, b, equal_var=False).confidence_interval(level)
    return {"test": "Welch t", "effect": float(a.mean() - b.mean()), "low": float(ci.low), "high": float(ci.high),
            "statistic": float(r.statistic), "df": float(r.df), "p": float(r.pvalue), "n": (len(a), len(b))}


def paired_t(a, b, alternative: str = "two-sided", level: float = LEVEL) -> dict:
    """Paired t-test of a - b over matched seeds: effect, its interval, t, df, p."""
    a, b = _values(a), _values(b)
    if a.shape != b.shape:
        raise ValueError(f"paired test needs matched values, got {len(a)} and {len(b)}")
    r = S.ttest_rel(a, b, alternative=alternative)
    ci = S.ttest_rel(a, b).confidence_interval(level)
    return {"test": "paired t", "effect": float((a - b).mean()), "low": float(ci.low), "high": float(ci.high),
            "statistic": float(r.statistic), "df": float(r.df), "p": float(r.pvalue), "n": (len(a), len(b))}


def paired_bootstrap(a, b, n_resamples: int = 9999, seed: int = 0, level: float = LEVEL) -> tuple[float, float]:
    """The percentile-BCa bootstrap interval of mean(a - b) over matched seeds (scipy.stats.bootstrap)."""
    d = _values(a) - _values(b)
    if np.ptp(d) == 0:
        return float(d[0]), float(d[0])
    r = S.bootstrap((d,), np.mean, n_resamples=n_resamples, confidence_level=level, method="BCa",
                    rng=np.random.default_rng(seed))
    return float(r.confidence_interval.low), float(r.confidence_interval.high)


def verdict(effect: float, p: float, lower_is_better: bool = True, alpha: float = ALPHA) -> str:
    """'holds' / 'contradicted' at level alpha (two-sided p), else 'not significant'."""
    if not p < alpha:
        return "not significant"
    good = effect < 0 if lower_is_better else effect > 0
    return "holds" if good else "contradicted"


def compare(a, b, lower_is_better: bool = True) -> dict:
    """Claim 'a beats b' on per-seed values: Welch's two-sided test and its verdict."""
    r = welch(a, b)
    return r | {"verdict": verdict(r["effect"], r["p"], lower_is_better)}


def trend(x, y) -> dict:
    """Monotone trend of y in x: Spearman's rho and its two-sided p-value."""
    r = S.spearmanr(_values(x), _values(y))
    return {"test": "Spearman", "rho": float(r.statistic), "p": float(r.pvalue)}
