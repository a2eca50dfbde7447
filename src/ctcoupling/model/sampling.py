"""Sampling from a consistency model (METHODS 5).

1 step: x = f(sigma_max z, sigma_max). Multi-step: then, for each t in t_mid (decreasing),
x = f(kernel(x, t, n), t) with fresh noise n; with a VC encoder, n = mu(x) + s(x) eps is drawn
from its posterior at the current sample. TrigFlow (sCT): x = f(sigma_data z, t_max) with
t_max = arctan(sigma_max / sigma_data), then the same steps at t_mid in TrigFlow time (the paper's
2-step sampler: t_mid = [1.1]; Lu & Song 2025 Sec. 5.2, App. G.2).
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from ctcoupling.core.pairing import ot_permutation
from ctcoupling.model.kernels import ConsistencyModel

LABEL_MODES = ("balanced", "uniform")


def class_labels(mode: str, n: int, label_dim: int, seed: int, offset: int = 0) -> torch.Tensor | None:
    """The class labels of n samples of a class-conditional model (None for label_dim 0).

    - `balanced`: sample i (counting from `offset`, its index in the whole set) gets class i mod K, so
      any n that K divides holds exactly n / K of each class (FID-50k on ImageNet: 50 per class);
    - `uniform`: independent uniform draws from a generator seeded with `seed`, as sony/vct's FID
      callback (torch.randint per batch).
    """
    if not label_dim:
        return None
    if mode == "balanced":
        return (torch.arange(n) + offset) % label_dim
    if mode == "uniform":
        return torch.randint(label_dim, (n,), generator=torch.Generator().manual_seed(seed))
    raise ValueError(f"unknown label mode {mode!r} (known: {', '.join(LABEL_MODES)})")


@torch.no_grad()
def multistep(model: ConsistencyModel, z: torch.Tensor, t_mid=(), generator: torch.Generator | None = None,
              encoder=None, ot_pairing: bool = False, labels: torch.Tensor | None = None):
    """`ot_pairing` (OT runs, sony/vct models/cm_base.py): each later step's fresh noises are re-assigned
    to the batch's current samples by the exact assignment on squared distances, as in training.
    `labels`: each sample's class (a class-conditional model), kept through every step."""
    kernel = model.kernel
    n = len(z)
    x = model(kernel.prior(z), torch.full((n,), kernel.t_max, device=z.device), labels)
    for t in t_mid:
        noise = torch.randn(z.shape, generator=generator).to(z.device)
        if encoder is not None:
            mu, s = encoder(x, labels)
            noise = mu + s * noise
        if ot_pairing:
            noise = noise[torch.from_numpy(ot_permutation(x, noise)).to(z.device)]
        sigma = torch.full((n,), float(t), device=z.device)
        x = model(kernel.perturb(x, sigma, noise), sigma, labels)
    return x


@torch.no_grad()
def generate(model: ConsistencyModel, n: int, shape: tuple[int, ...], batch: int, seed: int, t_mid=(),
             progress: bool = True, device: str | torch.device = "cpu", encoder=None,
             ot_pairing: bool = False, labels: str = "balanced", label_offset: int = 0) -> torch.Tensor:
    """n samples in batches with 1 + len(t_mid) network evaluations each, from one seeded generator;
    a class-conditional model samples the classes of `class_labels(labels, n, K, seed, label_offset)`."""
    gen = torch.Generator().manual_seed(seed)
    model = model.to(device)
    encoder = encoder.to(device) if encoder is not None else None
    y = class_labels(labels, n, getattr(model.net, "label_dim", 0), seed + 1, label_offset)
    out = []
    for start in tqdm(range(0, n, batch), desc="sample", disable=not progress, mininterval=1.0):
        z = torch.randn((min(batch, n - start), *shape), generator=gen).to(device)
        y_batch = y[start:start + len(z)].to(device) if y is not None else None
        out.append(multistep(model, z, t_mid, gen, encoder, ot_pairing, y_batch).cpu())
    return torch.cat(out)


def image_grid(images: np.ndarray, cols: int = 8) -> np.ndarray:
    """uint8 (N, C, H, W) images tiled into one (rows*H, cols*W, C) array with a 1-pixel border."""
    n, c, h, w = images.shape
    rows = -(-n // cols)
    grid = np.zeros((rows * (h + 1) + 1, cols * (w + 1) + 1, c), dtype=np.uint8)
    for i, img in enumerate(images):
        r, k = divmod(i, cols)
        grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + k * (w + 1):1 + k * (w + 1) + w] = img.transpose(1, 2, 0)
    return grid
