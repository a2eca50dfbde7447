"""Frechet distance, feature statistics, energy distance and exact W2 (distances.py) against independent formulas."""
import math

import numpy as np
import pytest
import scipy.linalg
import scipy.stats

from ctcoupling.measure import distances


def random_psd(rng, d: int, rank: int | None = None) -> np.ndarray:
    """A random covariance: full rank (SPD) by default, rank-deficient PSD when rank < d."""
    x = rng.standard_normal((d, rank or d + 4)) / math.sqrt(d)
    return x @ x.T + (0 if rank else 0.1 * np.eye(d))


def frechet_sqrtm(mu1, sigma1, mu2, sigma2) -> float:
    """The pytorch-fid / torch-fidelity formula with scipy.linalg.sqrtm, the reference."""
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("d, rank1, rank2", [(1, None, None), (2, None, None), (16, None, None),
                                             (128, None, None), (64, 20, None), (64, None, 10), (48, 30, 12)])
def test_frechet_matches_sqrtm_formula(d, rank1, rank2):
    rng = np.random.default_rng(d + (rank1 or 0) + 7 * (rank2 or 0))
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    sigma1, sigma2 = random_psd(rng, d, rank1), random_psd(rng, d, rank2)
    ours, ref = distances.frechet_distance(mu1, sigma1, mu2, sigma2), frechet_sqrtm(mu1, sigma1, mu2, sigma2)
    assert abs(ours - ref) <= 1e-6 * abs(ref)


def test_frechet_zero_for_identical_statistics():
    rng = np.random.default_rng(1)
    mu, sigma = rng.standard_normal(64), random_psd(rng, 64)
    assert abs(distances.frechet_distance(mu, sigma, mu, sigma)) <= 1e-9 * np.trace(sigma)
    low = random_psd(rng, 64, rank=8)  # rank-deficient: the eigh route, sqrt(eps) per null direction
    assert abs(distances.frechet_distance(mu, low, mu, low)) <= 1e-6 * np.trace(low)


def test_frechet_is_symmetric():
    rng = np.random.default_rng(2)
    a = rng.standard_normal(32), random_psd(rng, 32)
    b = rng.standard_normal(32), random_psd(rng, 32, rank=5)
    assert math.isclose(distances.frechet_distance(*a, *b), distances.frechet_distance(*b, *a), rel_tol=1e-8)


def test_frechet_diagonal_closed_form():
    """Commuting (diagonal) covariances: sum (sqrt a - sqrt b)^2 + ||mu1 - mu2||^2."""
    rng = np.random.default_rng(3)
    a, b = rng.uniform(0.1, 3.0, 10), rng.uniform(0.0, 3.0, 10)
    mu1, mu2 = rng.standard_normal(10), rng.standard_normal(10)
    expected = ((np.sqrt(a) - np.sqrt(b)) ** 2).sum() + ((mu1 - mu2) ** 2).sum()
    assert math.isclose(distances.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)), expected, rel_tol=1e-12)


@pytest.mark.parametrize("args, message", [
    ((np.zeros((2, 2)), np.eye(2), np.zeros(2), np.eye(2)), "mu1"),
    ((np.zeros(2), np.eye(2), np.zeros(3), np.eye(2)), "mu2"),
    ((np.zeros(2), np.eye(3), np.zeros(2), np.eye(2)), "sigma1"),
    ((np.zeros(2), np.eye(2), np.zeros(2), np.ones(2)), "sigma2"),
    ((np.zeros(2), np.eye(2), np.array([0.0, np.nan]), np.eye(2)), "mu2: contains NaN"),
    ((np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]), np.zeros(2), np.eye(2)), "sigma1: .* not symmetric"),
])
def test_frechet_rejects_bad_inputs(args, message):
    with pytest.raises(ValueError, match=message):
        distances.frechet_distance(*args)


def test_feature_statistics_match_numpy_and_fid_of_gaussians():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((500, 8)).astype(np.float32)
    mu, sigma = distances.feature_statistics(x)
    assert mu.dtype == sigma.dtype == np.float64 and sigma.shape == (8, 8)
    np.testing.assert_allclose(sigma, np.cov(x.astype(np.float64).T, ddof=1), rtol=1e-12)
    np.testing.assert_allclose(mu, x.astype(np.float64).mean(0), rtol=1e-12)
    with pytest.raises(ValueError, match="features"):
        distances.feature_statistics(x[:1])


def test_energy_distance_zero_for_identical_and_positive_for_shifted():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((400, 2))
    assert distances.energy_distance(a, a[rng.permutation(400)]) == pytest.approx(0.0, abs=1e-12)
    assert distances.energy_distance(a, a + [1.0, 0.0]) > 0.1


def test_energy_distance_is_square_of_scipy_in_1d():
    """scipy.stats.energy_distance is sqrt(2E|X-Y| - E|X-X'| - E|Y-Y'|) over the empirical measures."""
    rng = np.random.default_rng(6)
    u, v = rng.standard_normal(300), 0.5 + 2 * rng.standard_normal(170)
    assert math.isclose(distances.energy_distance(u, v), scipy.stats.energy_distance(u, v) ** 2, rel_tol=1e-10)
    assert math.isclose(distances.energy_distance(u[:, None], v[:, None]), distances.energy_distance(u, v), rel_tol=1e-12)


def test_energy_distance_blocks_give_the_unblocked_value(monkeypatch):
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((333, 2)), rng.standard_normal((250, 2)) + 0.2
    full = distances.energy_distance(a, b)
    monkeypatch.setattr(distances, "ENERGY_BLOCK", 1000)  # four rows per block
    assert math.isclose(distances.energy_distance(a, b), full, rel_tol=1e-12)
    with pytest.raises(ValueError, match="one dimension"):
        distances.energy_distance(a, b[:, :1])


def _hungarian_w2(a: np.ndarray, b: np.ndarray) -> float:
    """W2 of the optimal matching by scipy's Hungarian solver on squared distances written out, the reference."""
    from scipy.optimize import linear_sum_assignment

    cost = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    return math.sqrt(cost[rows, cols].mean())


@pytest.mark.parametrize("n, d", [(400, 2), (150, 64)])
def test_w2_exact_equals_the_hungarian_matching(n, d):
    """POT's network simplex (w2_exact) against scipy's linear_sum_assignment: two-Gaussian points (the
    modes at y = +-0.5, as the evaluate stage scores) and digits-sized vectors."""
    rng = np.random.default_rng(n + d)
    if d == 2:
        a, b = (0.1 * rng.standard_normal((n, 2)) + [0.0, 0.5] * rng.choice([-1, 1], (n, 1)) for _ in range(2))
    else:
        a, b = rng.standard_normal((n, d)), rng.standard_normal((n, d)) + 0.3
    assert abs(distances.w2_exact(a, b) - _hungarian_w2(a, b)) <= 1e-12
    a32 = a.astype(np.float32)  # float32 points (samples.npz) are measured in float64
    assert abs(distances.w2_exact(a32, b) - _hungarian_w2(a32.astype(np.float64), b)) <= 1e-12


def test_w2_exact_raises_where_the_simplex_stops_short(monkeypatch):
    import ot

    emd2 = ot.emd2
    monkeypatch.setattr(ot, "emd2", lambda *args, **kw: emd2(*args, **(kw | {"numItermax": 10})))
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((100, 2)), rng.standard_normal((100, 2))
    with pytest.warns(UserWarning, match="numItermax"), pytest.raises(RuntimeError, match="did not reach the optimum"):
        distances.w2_exact(a, b)
