"""Reproductions of the papers' 2-D figures from trained runs (pure: arrays and models in, PNG out).

- VCT Fig. 1: one-step samples of IC and VC on the two-Gaussian set, and the encoder's posteriors
  p(z | mode) drawn over the prior N(0, I): VC should separate the modes where IC falls between them.
- GC: the predicted endpoints x_hat = f(x + sigma z, sigma) at a few lower times, and the noise-data
  pairs (z, x) of IC against (z, x_hat) of GC, with their transport costs.
"""
from __future__ import annotations

import numpy as np
import torch

from .report import _png, plt


def vct_fig1(data: np.ndarray, samples: dict[str, np.ndarray], encoder, n: int = 512, seed: int = 0) -> bytes:
    """samples: {'IC': ..., 'VC': ...} one-step samples; encoder: the VC run's (mu, s) encoder."""
    fig, axes = plt.subplots(1, len(samples) + 1, figsize=(3.3 * (len(samples) + 1), 3.4))
    for ax, (name, x) in zip(axes, samples.items()):
        ax.scatter(*data[:n].T, s=3, c="0.7", label="data")
        ax.scatter(*x[:n].T, s=3, c="C0", label="1-step samples")
        between = float(np.mean(np.abs(x[:, 1]) < 0.25))
        ax.set(xlim=(-1.2, 1.2), ylim=(-1.2, 1.2), aspect="equal",
               title=f"{name}: {between:.0%} of samples between the modes")
        ax.legend(loc="lower left", fontsize=6, markerscale=3)
    ax = axes[-1]
    gen = torch.Generator().manual_seed(seed)
    prior = torch.randn((4 * n, 2), generator=gen).numpy()
    ax.scatter(*prior.T, s=2, c="0.85", label="prior N(0, I)")
    with torch.no_grad():
        x = torch.from_numpy(data[:2 * n])
        mu, s = encoder(x)
        z = (mu + s * torch.randn(mu.shape, generator=gen)).numpy()
    upper = data[:2 * n, 1] > 0
    ax.scatter(*z[upper].T, s=3, c="C1", label="p(z | upper mode)")
    ax.scatter(*z[~upper].T, s=3, c="C2", label="p(z | lower mode)")
    ax.set(xlim=(-3.5, 3.5), ylim=(-3.5, 3.5), aspect="equal", title="VC encoder posteriors over the prior")
    ax.legend(loc="lower left", fontsize=6, markerscale=3)
    fig.tight_layout()
    return _png(fig)


def gc_pairs(data: np.ndarray, model, sigmas=(0.1, 0.5, 2.0), n: int = 256, seed: int = 0) -> bytes:
    """Where GC's predictor sends x + sigma z, and the pairs IC and GC hand to training."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(data[:n])
    n = len(x)
    z = torch.randn(x.shape, generator=gen)
    fig, axes = plt.subplots(1, len(sigmas) + 1, figsize=(3.3 * (len(sigmas) + 1), 3.4))
    costs = {"IC": float(((x - z) ** 2).sum(1).mean())}
    with torch.no_grad():
        for ax, sigma in zip(axes, sigmas):
            s = torch.full((n,), float(sigma))
            x_hat = model(model.kernel.perturb(x, s, z), s)
            costs[f"GC sigma={sigma:g}"] = float(((x_hat - z) ** 2).sum(1).mean())
            ax.scatter(*x.numpy().T, s=3, c="0.6", label="data x")
            ax.scatter(*x_hat.numpy().T, s=3, c="C3", label="x_hat = f(x + sigma z, sigma)")
            for a, b in zip(x[:48].numpy(), x_hat[:48].numpy()):
                ax.plot([a[0], b[0]], [a[1], b[1]], c="C3", lw=0.4, alpha=0.6)
            ax.set(xlim=(-1.2, 1.2), ylim=(-1.2, 1.2), aspect="equal", title=f"predicted endpoints, sigma = {sigma:g}")
            ax.legend(loc="lower left", fontsize=6, markerscale=3)
        ax = axes[-1]
        s = torch.full((n,), float(sigmas[-1]))
        x_hat = model(model.kernel.perturb(x, s, z), s)
    for a, b in zip(z[:64].numpy(), x[:64].numpy()):
        ax.plot([a[0], b[0]], [a[1], b[1]], c="0.6", lw=0.4)
    for a, b in zip(z[:64].numpy(), x_hat[:64].numpy()):
        ax.plot([a[0], b[0]], [a[1], b[1]], c="C3", lw=0.4)
    ax.plot([], [], c="0.6", label=f"IC pairs (z, x): cost {costs['IC']:.2f}")
    key = f"GC sigma={sigmas[-1]:g}"
    ax.plot([], [], c="C3", label=f"GC pairs (z, x_hat), sigma = {sigmas[-1]:g}: cost {costs[key]:.2f}")
    ax.set(xlim=(-3, 3), ylim=(-3, 3), aspect="equal", title="noise-data pairs, E||x - z||^2")
    ax.legend(loc="lower left", fontsize=6)
    fig.tight_layout()
    return _png(fig)
