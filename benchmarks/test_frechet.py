"""Frechet distance at Inception's 2048 dims (`make bench`): distances.frechet_distance (Cholesky +
eigvalsh) against the pytorch-fid / torch-fidelity route through scipy.linalg.sqrtm, on the same
statistics of 4096 x 2048 Gaussian features, one BLAS thread (the machine may be shared). Target: at
most half the sqrtm route's time."""
import numpy as np
import pytest
import scipy.linalg
from threadpoolctl import threadpool_limits

from ctcoupling.measure import distances

DIM, N = 2048, 4096
TARGET = 0.5
MEDIANS: dict[str, float] = {}
VALUES: dict[str, float] = {}


def frechet_sqrtm(mu1, sigma1, mu2, sigma2) -> float:
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


@pytest.fixture(scope="module")
def stats():
    rng = np.random.default_rng(0)
    mix = np.eye(DIM) + 0.05 * rng.standard_normal((DIM, DIM))  # correlated features, unlike the first set
    a = distances.feature_statistics(rng.standard_normal((N, DIM)))
    b = distances.feature_statistics(rng.standard_normal((N, DIM)) @ mix + 0.1)
    return (*a, *b)


@pytest.mark.benchmark(group="frechet-2048")
@pytest.mark.parametrize("route", ["sqrtm", "ours"])  # sqrtm first: the reference for the ratio
def test_frechet_2048(benchmark, stats, route):
    fn = {"ours": distances.frechet_distance, "sqrtm": frechet_sqrtm}[route]
    with threadpool_limits(limits=1):
        value = benchmark.pedantic(fn, args=stats, rounds=3, warmup_rounds=1 if route == "ours" else 0)
    MEDIANS[route], VALUES[route] = benchmark.stats.stats.median, value
    benchmark.extra_info["fid"] = value
    if route == "ours":
        assert abs(value - VALUES["sqrtm"]) <= 1e-6 * abs(VALUES["sqrtm"])
        ratio = MEDIANS["ours"] / MEDIANS["sqrtm"]
        benchmark.extra_info["x_sqrtm"] = round(ratio, 3)
        print(f"\nfrechet_distance: {MEDIANS['ours']:.3f} s, sqrtm route: {MEDIANS['sqrtm']:.3f} s ({ratio:.3f}x)")
        assert ratio <= TARGET, f"frechet_distance takes {ratio:.2f}x the sqrtm route, target {TARGET}x"
