"""Statistics over seeds for the claims (the evidence protocol, docs/evidence.md): no files.

The libraries' numbers: the t interval of a mean and the paired t-test with its interval (scipy),
the exact sign-flip permutation test (scipy.stats.permutation_test), Holm's correction
(statsmodels' multipletests), the minimal detectable effect and the seed count of a paired t-test
(statsmodels' TTestPower), Spearman's trend (scipy). Written here, with the reason in its docstring:
Gehan's scores of censored times.

A claim compares per-seed values a and b of matched seeds (a metric, lower is better unless said
otherwise): `paired` gives the effect mean(a - b) with its interval and p-values; the verdict comes
from the p adjusted within the claim's family: "holds" (significant in the claimed direction),
"contradicted" (significant against it), "not significant" otherwise.
"""
from __future__ import annotations

import math

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


def paired_t(a, b, alternative: str = "two-sided", level: float = LEVEL) -> dict:
    """Paired t-test of a - b over matched seeds: effect, its interval, t, df, p."""
    a, b = _values(a), _values(b)
    if a.shape != b.shape:
        raise ValueError(f"paired test needs matched values, got {len(a)} and {len(b)}")
    r = S.ttest_rel(a, b, alternative=alternative)
    ci = S.ttest_rel(a, b).confidence_interval(level)
    return {"test": "paired t", "effect": float((a - b).mean()), "low": float(ci.low), "high": float(ci.high),
            "statistic": float(r.statistic), "df": float(r.df), "p": float(r.pvalue), "n": (len(a), len(b))}


def verdict(effect: float, p: float, lower_is_better: bool = True, alpha: float = ALPHA) -> str:
    """'holds' / 'contradicted' at level alpha (two-sided p), else 'not significant'."""
    if not p < alpha:
        return "not significant"
    good = effect < 0 if lower_is_better else effect > 0
    return "holds" if good else "contradicted"


def trend(x, y) -> dict:
    """Monotone trend of y in x: Spearman's rho and its two-sided p-value."""
    r = S.spearmanr(_values(x), _values(y))
    return {"test": "Spearman", "rho": float(r.statistic), "p": float(r.pvalue)}


# --- The evidence protocol (docs/evidence.md): paired tests, multiplicity, power, censoring ---------

POWER = 0.8


def sign_flip_p(a, b) -> float:
    """Exact two-sided permutation p of mean(a - b) over matched seeds: every one of the 2^n sign flips of
    the per-seed differences (scipy.stats.permutation_test, permutation_type="samples"). No normality
    assumed; its smallest attainable value is 2 / 2^n, so it is a robustness check from 5 seeds on."""
    a, b = _values(a), _values(b)
    if a.shape != b.shape:
        raise ValueError(f"paired test needs matched values, got {len(a)} and {len(b)}")
    d = a - b
    if not np.any(d):
        return 1.0
    r = S.permutation_test((a, b), lambda x, y, axis: np.mean(x - y, axis=axis), permutation_type="samples",
                           n_resamples=np.inf, alternative="two-sided", vectorized=True)
    return float(min(1.0, r.pvalue))


def holm(pvalues, alpha: float = ALPHA) -> list[float]:
    """Holm's step-down adjusted p-values of one family of claims (statsmodels' multipletests): a claim
    holds at family-wise error alpha when its adjusted p is below alpha."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=np.float64)
    if len(p) == 0:
        return []
    return [float(x) for x in multipletests(p, alpha=alpha, method="holm")[1]]


def mde_paired(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The minimal detectable effect of a two-sided paired t-test: the smallest mean difference that n
    seeds whose differences have standard deviation sd detect with the given power at level alpha
    (statsmodels' TTestPower, solved for the standardised effect, times sd). NaN below 2 seeds."""
    from statsmodels.stats.power import TTestPower

    if n < 2 or not np.isfinite(sd):
        return math.nan
    if sd == 0:
        return 0.0
    d = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power, alternative="two-sided")
    return float(np.asarray(d).ravel()[0] * sd)  # statsmodels returns a 1-element array for some inputs


def seeds_needed(sd: float, effect: float, alpha: float = ALPHA, power: float = POWER, most: int = 1000) -> int:
    """The fewest seeds (at least 2) whose paired t-test detects `effect` at level alpha with the given
    power when the per-seed differences have standard deviation sd (statsmodels' TTestPower)."""
    if effect <= 0:
        raise ValueError("seeds_needed: the effect to detect must be positive")
    n = 2
    while n < most and mde_paired(sd, n, alpha, power) > effect:
        n += 1
    return n


def paired(a, b, lower_is_better: bool = True, alpha: float = ALPHA, permutation_from: int = 5) -> dict:
    """Claim 'a beats b' over matched seeds: the paired t-test of the per-seed differences a - b (effect,
    its 95% interval, two-sided p), the exact sign-flip p from `permutation_from` seeds on, and the
    minimal detectable effect at 80% power and level alpha. The verdict comes later, from the p adjusted
    within the claim's family (`holm`)."""
    a, b = _values(a), _values(b)
    if a.shape != b.shape:
        raise ValueError(f"paired test needs matched values, got {len(a)} and {len(b)}")
    d = a - b
    n = len(d)
    if np.ptp(d) == 0:  # every seed the same difference (scipy: NaN): exact
        e = float(d[0])
        r = {"effect": e, "low": e, "high": e, "statistic": math.copysign(math.inf, e) if e else 0.0,
             "df": float(n - 1), "p": 0.0 if e else 1.0}
    else:
        r = paired_t(a, b)
    sd = float(np.std(d, ddof=1)) if n > 1 else math.nan
    return r | {"test": "paired t", "n": n, "sd": sd, "lower_is_better": lower_is_better,
                "p_perm": sign_flip_p(a, b) if n >= permutation_from else math.nan,
                "mde": mde_paired(sd, n, alpha)}


def gehan_scores(time, reached) -> np.ndarray:
    """Gehan's scores of right-censored times (Gehan 1965): for each run, how many runs it certainly
    outlasted minus how many certainly outlasted it. A run that reached the level at t certainly took
    longer than one that reached it before t; a run censored at c (never reached it by c) certainly took
    longer than one that reached it at or before c; two censored runs, or a censored run against a later
    event, are undetermined (0). Written here: neither scipy nor statsmodels has the scores themselves."""
    t, e = np.asarray(time, dtype=np.float64), np.asarray(reached, dtype=bool)
    longer = ((t[:, None] > t[None, :]) & e[None, :]) | ((t[:, None] >= t[None, :]) & ~e[:, None] & e[None, :])
    return longer.sum(1).astype(np.float64) - longer.sum(0).astype(np.float64)


def censored_paired(time_a, reached_a, time_b, reached_b) -> dict:
    """Claim 'a reaches the level in fewer steps than b' over matched seeds, with censoring: Gehan's scores
    of all 2n runs pooled, and the exact sign-flip permutation test of the per-seed score differences
    (a's label swapped with b's within a seed). Two-sided p; effect: the mean score difference (below 0: a
    faster); how many runs of each reached the level."""
    ta, tb = np.asarray(time_a, dtype=np.float64), np.asarray(time_b, dtype=np.float64)
    ea, eb = np.asarray(reached_a, dtype=bool), np.asarray(reached_b, dtype=bool)
    if not (ta.shape == tb.shape == ea.shape == eb.shape):
        raise ValueError("censored_paired needs matched seeds")
    n = len(ta)
    s = gehan_scores(np.concatenate([ta, tb]), np.concatenate([ea, eb]))
    d = s[:n] - s[n:]
    p = sign_flip_p(d, np.zeros(n)) if n else math.nan
    return {"test": "paired Gehan, exact sign-flip", "n": n, "effect": float(d.mean()) if n else math.nan,
            "p": p, "reached_a": int(ea.sum()), "reached_b": int(eb.sum()), "min_p": 2.0 / 2**n if n else math.nan}
