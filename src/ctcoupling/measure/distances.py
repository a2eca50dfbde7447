"""Sample-quality metrics: exact W2 and the mode-gap fraction for toy sets, the energy distance, and
the Frechet distance between Gaussian feature statistics (FID's formula, METHODS 8)."""
from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

ENERGY_BLOCK = 1 << 22  # pairwise distances held at once by energy_distance (32 MiB of float64)
W2_ITER_PER_ARC = 10  # w2_exact's cap on network-simplex pivots, per arc of the n x n problem (the
                      # evaluate stage's 2048 two-Gaussian points need 64k pivots, 0.015 per arc)


def w2_exact(a: np.ndarray, b: np.ndarray) -> float:
    """Exact 2-Wasserstein distance between two equal-size empirical measures, in float64.

    The optimal matching, solved as the transport problem between uniform weights by POT's exact
    network simplex (`ot.emd2`), whose optimum on uniform weights is a permutation (Birkhoff), so its
    cost is that of the optimal matching. POT is the field's OT library (and batch-OT's solver here,
    assignment.py); it is 4-6x faster than scipy's Hungarian `linear_sum_assignment` on the evaluate
    stage's 2048 two-Gaussian points (0.6 s against 3.5 s here) and agrees with it to 1e-12
    (tests/test_metrics.py). A solve that stops short of optimality raises instead of returning
    an upper bound."""
    import ot  # here, not at the top: `import ot` takes ~1 s (sklearn, networkx), paid by the stages with W2 only

    if a.shape != b.shape:
        raise ValueError(f"w2_exact needs equal shapes, got {a.shape} and {b.shape}")
    n = len(a)
    cost = cdist(a.reshape(n, -1).astype(np.float64), b.reshape(n, -1).astype(np.float64), "sqeuclidean")
    weights = np.full(n, 1.0 / n)
    value, log = ot.emd2(weights, weights, cost, numItermax=max(100_000, W2_ITER_PER_ARC * n * n), log=True)
    if log["result_code"] != 1:  # 1: optimal (POT's ot/lp/emd_wrap.pyx, check_result)
        raise RuntimeError(f"w2_exact: POT's network simplex did not reach the optimum on {n} points: "
                           f"{log['warning']}")
    return float(np.sqrt(value))


def between_modes(x: np.ndarray, threshold: float = 0.25) -> float:
    """Two-Gaussian set (modes at y = +-0.5): fraction of samples with |y| < threshold, i.e. in the
    gap between the modes, where VCT's Fig. 1 shows IC's one-step samples fall."""
    return float(np.mean(np.abs(x[:, 1]) < threshold))


def posterior_separation(mu: np.ndarray, s: np.ndarray, z: np.ndarray, labels: np.ndarray) -> dict:
    """How much a VC encoder's posterior N(mu(x), s(x)^2) says about which mode x came from.

    mode_accuracy: a logistic regression (scikit-learn) fit on posterior draws z of the first half of
    the points and scored on the second half: 0.5 when the posteriors of the modes are one cloud (the
    encoder collapsed to the prior), 1 when they are apart. posterior_kl: mean KL(N(mu, s^2) || N(0, I));
    aggregate_mean / aggregate_var: the first two moments of all draws, which are 0 and 1 when the
    posteriors tile the prior.
    """
    from sklearn.linear_model import LogisticRegression

    z, labels = np.asarray(z, dtype=np.float64).reshape(len(z), -1), np.asarray(labels).astype(int)
    h = len(z) // 2
    if len(set(labels[:h])) < 2 or len(set(labels[h:])) < 2:
        raise ValueError("posterior_separation needs both modes in each half of the points")
    accuracy = LogisticRegression().fit(z[:h], labels[:h]).score(z[h:], labels[h:])
    kl = 0.5 * (mu**2 + s**2 - 1) - np.log(s)
    var = np.var(z, axis=0)
    return {"mode_accuracy": float(accuracy), "posterior_kl": float(kl.reshape(len(kl), -1).sum(1).mean()),
            "posterior_mu_rms": float(np.sqrt(np.mean(mu**2))), "posterior_s": float(np.mean(s)),
            "aggregate_mean": float(np.linalg.norm(z.mean(0))), "aggregate_var_min": float(var.min()),
            "aggregate_var_max": float(var.max())}


def _finite(name: str, x: np.ndarray) -> np.ndarray:
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or inf")
    return x


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (divisor n - 1) of (n, d) features, in float64, as torch-fidelity
    and pytorch-fid compute them for FID."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"features: expected shape (n, d) with n >= 2, got shape {x.shape}")
    _finite("features", x)
    return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def _sqrt_factor(sigma: np.ndarray) -> np.ndarray:
    """B with B B^T = sigma: Cholesky when sigma is numerically positive definite (fast), else the
    symmetric square root from eigh with roundoff-negative eigenvalues clipped to zero."""
    try:
        return np.linalg.cholesky(sigma)
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh(sigma)
        return v * np.sqrt(np.clip(w, 0.0, None))


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2), the Frechet distance between two Gaussians
    (FID when the statistics are Inception features; METHODS 8).

    tr sqrt(S1 S2) is the sum of the square roots of the eigenvalues of S1 S2, which equal those of
    the symmetric PSD matrix B^T S2 B for any B B^T = S1. `eigvalsh` of that is an order of magnitude
    faster than scipy.linalg.sqrtm at 2048-d (benchmarks/test_frechet.py) and needs no complex
    arithmetic or eps offset. Rank-deficient covariances are fine: each null direction of S1 S2 adds
    roundoff of order sqrt(eps ||S1 S2||), the conditioning of the square root at zero (sqrtm's error
    there is larger).
    """
    mu1, mu2 = (np.asarray(m, dtype=np.float64) for m in (mu1, mu2))
    sigma1, sigma2 = (np.asarray(s, dtype=np.float64) for s in (sigma1, sigma2))
    if mu1.ndim != 1 or len(mu1) == 0:
        raise ValueError(f"mu1: expected a vector of shape (d,) with d >= 1, got shape {mu1.shape}")
    d = mu1.shape[0]
    for name, x, shape in [("mu2", mu2, (d,)), ("sigma1", sigma1, (d, d)), ("sigma2", sigma2, (d, d))]:
        if x.shape != shape:
            raise ValueError(f"{name}: expected shape {shape} to match mu1 of shape {(d,)}, got shape {x.shape}")
    for name, x in [("mu1", mu1), ("mu2", mu2), ("sigma1", sigma1), ("sigma2", sigma2)]:
        _finite(name, x)
    for name, s in [("sigma1", sigma1), ("sigma2", sigma2)]:
        if np.abs(s - s.T).max() > 1e-6 * np.abs(s).max():  # float32 roundoff passes, a wrong matrix not
            raise ValueError(f"{name}: covariance matrix is not symmetric")
    sigma1, sigma2 = (sigma1 + sigma1.T) / 2, (sigma2 + sigma2.T) / 2  # eigh reads one triangle only
    b = _sqrt_factor(sigma1)
    eig = np.linalg.eigvalsh(b.T @ sigma2 @ b)
    tr_covmean = np.sqrt(np.clip(eig, 0.0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def _mean_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Euclidean distance over all pairs (a_i, b_j), in row blocks of at most ENERGY_BLOCK pairs."""
    rows = max(1, ENERGY_BLOCK // len(b))
    total = sum(cdist(a[i:i + rows], b).sum() for i in range(0, len(a), rows))
    return total / (len(a) * len(b))


def energy_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Energy distance 2 E|X - Y| - E|X - X'| - E|Y - Y'| between the empirical measures of two point
    sets (n, d) and (m, d) (1-D arrays are points on the line).

    The V-statistic: every pair counts, the zero self-pairs included, so the value is >= 0 and 0 only
    for identical empirical measures. In 1-D it is the square of scipy.stats.energy_distance.
    Memory stays bounded by ENERGY_BLOCK distances at a time.
    """
    a, b = (np.asarray(x, dtype=np.float64) for x in (a, b))
    a, b = (x[:, None] if x.ndim == 1 else x for x in (a, b))
    for name, x in [("a", a), ("b", b)]:
        if x.ndim != 2 or len(x) == 0:
            raise ValueError(f"{name}: expected points of shape (n, d) or (n,), got shape {x.shape}")
        _finite(name, x)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"energy_distance needs points of one dimension, got {a.shape[1]} and {b.shape[1]}")
    return float(max(2.0 * _mean_distance(a, b) - _mean_distance(a, a) - _mean_distance(b, b), 0.0))
