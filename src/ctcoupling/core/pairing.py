"""The minibatch OT pairing in torch: the cost matrix ||x_i - z_j||^2 and the permutation that minimises
its sum (solved by core/assignment.py, which stays free of torch for its solver process). Used by the
batch-OT coupling (train/couplings.py), VCT's re-paired 2-step sampler (model/sampling.py) and the
theory's batch-OT estimates (measure/theory.py)."""
from __future__ import annotations

import numpy as np
import torch

from ctcoupling.core import assignment


def ot_cost(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The minibatch's cost matrix ||x_i - z_j||^2 in float64, on x's device."""
    return torch.cdist(x.reshape(len(x), -1).double(), z.reshape(len(z), -1).double()).square()


def ot_permutation(x: torch.Tensor, z: torch.Tensor) -> np.ndarray:
    """pi minimising sum_i ||x_i - z_pi(i)||^2 over permutations of the minibatch (assignment.solve)."""
    return assignment.solve(ot_cost(x, z).cpu().numpy())
