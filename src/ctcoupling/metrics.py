"""Sample-quality metrics that need no pretrained features."""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist


def w2_exact(a: np.ndarray, b: np.ndarray) -> float:
    """Exact 2-Wasserstein distance between two equal-size empirical measures (Hungarian matching)."""
    if a.shape != b.shape:
        raise ValueError(f"w2_exact needs equal shapes, got {a.shape} and {b.shape}")
    cost = cdist(a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64), "sqeuclidean")
    rows, cols = linear_sum_assignment(cost)
    return float(np.sqrt(cost[rows, cols].mean()))


def between_modes(x: np.ndarray, threshold: float = 0.25) -> float:
    """Two-Gaussian set (modes at y = +-0.5): fraction of samples with |y| < threshold, i.e. in the
    gap between the modes, where VCT's Fig. 1 shows IC's one-step samples fall."""
    return float(np.mean(np.abs(x[:, 1]) < threshold))
