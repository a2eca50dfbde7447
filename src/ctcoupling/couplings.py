"""Couplings: how the (x, z) pair that the objective sees is formed (METHODS 4)."""
from __future__ import annotations

import torch

from .randomness import BatchRNG


class IndependentCoupling:
    """IC: z ~ N(0, I) independent of x, the baseline of every paper."""

    def __call__(self, x: torch.Tensor, rng: BatchRNG) -> tuple[torch.Tensor, torch.Tensor]:
        return x, rng.randn(*x.shape).to(x.device)


def build(spec: dict):
    """A coupling from its params spec (`couplings.<name>`)."""
    if spec["kind"] == "ic":
        return IndependentCoupling()
    raise ValueError(f"unknown coupling {spec['kind']!r}")
