"""Throughput of the exact marginal velocity field (`make bench`): theory.marginal_velocity on the
digits (1,500 training images, 64-d) and on a synthetic 10,000-point 3,072-d set (CIFAR-10's
dimension), against a plain matmul of the same shape, one thread. Target (issue 5): at least 50% of
the matmul's GFLOP/s. FLOPs counted: the two GEMMs (logits and weighted mean), 4 n N d."""
import numpy as np
import pytest
import torch

from ctcoupling.data import datasets
from ctcoupling.measure import theory

TARGET = 0.5
CASES = {  # name: (queries n, data points N, dims d, dtype)
    "digits-f64": (2048, None, 64, torch.float64),  # what the theory stage runs on the digits
    "digits-f32": (2048, None, 64, torch.float32),
    "synthetic3072-f32": (1024, 10_000, 3072, torch.float32),
    "synthetic3072-f64": (512, 10_000, 3072, torch.float64),
}
GFLOPS: dict[str, float] = {}


def points(name: str):
    n, N, d, dtype = CASES[name]
    gen = torch.Generator().manual_seed(0)
    if N is None:
        images, _ = datasets.digits_uint8()
        X = torch.from_numpy(datasets.to_model_space(images[:1500])).reshape(1500, -1).to(dtype)
    else:
        X = torch.randn(N, d, generator=gen, dtype=dtype)
    x_t = X[torch.randint(len(X), (n,), generator=gen)] + torch.randn(n, d, generator=gen, dtype=dtype)
    return X, x_t


@pytest.mark.benchmark(group="velocity")
@pytest.mark.parametrize("route", ["matmul", "velocity"])  # matmul first: the reference
@pytest.mark.parametrize("name", list(CASES))
def test_velocity_gflops(benchmark, name, route):
    torch.set_num_threads(1)
    X, x_t = points(name)
    n, N, d = len(x_t), len(X), X.shape[1]
    if route == "matmul":
        benchmark.pedantic(lambda: x_t @ X.T, rounds=5, warmup_rounds=1)
        flops = 2 * n * N * d
    else:
        benchmark.pedantic(lambda: theory.marginal_velocity(x_t, 1.0, X), rounds=5, warmup_rounds=1)
        flops = 4 * n * N * d
    GFLOPS[(name, route)] = flops / benchmark.stats.stats.median / 1e9
    benchmark.extra_info["gflops"] = round(GFLOPS[(name, route)], 2)
    if route == "velocity":
        ratio = GFLOPS[(name, "velocity")] / GFLOPS[(name, "matmul")]
        benchmark.extra_info["of_matmul"] = round(ratio, 3)
        print(f"\n{name}: velocity {GFLOPS[(name, 'velocity')]:.1f} GFLOP/s, matmul "
              f"{GFLOPS[(name, 'matmul')]:.1f} GFLOP/s ({ratio:.0%})")
        assert ratio >= TARGET, f"{name}: {ratio:.0%} of matmul GFLOP/s, target {TARGET:.0%}"
        assert np.isfinite(GFLOPS[(name, "velocity")])
