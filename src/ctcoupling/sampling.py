"""Sampling from a consistency model (METHODS 5): one step x = f(sigma_max z, sigma_max)."""
from __future__ import annotations

import torch
from tqdm import tqdm

from .kernels import ConsistencyModel


@torch.no_grad()
def one_step(model: ConsistencyModel, z: torch.Tensor) -> torch.Tensor:
    s_max = model.kernel.sigma_max
    return model(s_max * z, torch.full((len(z),), s_max))


@torch.no_grad()
def generate(model: ConsistencyModel, n: int, shape: tuple[int, ...], batch: int, seed: int,
             steps: int = 1, progress: bool = True) -> torch.Tensor:
    """n samples in batches; the noise comes from one generator seeded by `seed`."""
    if steps != 1:
        raise ValueError("only 1-step sampling is implemented")
    gen = torch.Generator().manual_seed(seed)
    out = []
    for start in tqdm(range(0, n, batch), desc="sample", disable=not progress, mininterval=1.0):
        z = torch.randn((min(batch, n - start), *shape), generator=gen)
        out.append(one_step(model, z))
    return torch.cat(out)
