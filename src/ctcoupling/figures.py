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


# ---------------------------------------------------------------------------------------------
# The GC paper's theory figures at CPU scale (rows from ctcoupling.measurements).


def discrepancy_figure(rows: list[dict], dataset: str) -> bytes:
    """GC paper Fig. 2: R~_t vs t per coupling (estimator, solid) and the exact value (IC, VC: dashed)."""
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6))
    couplings = list(dict.fromkeys(r["coupling"] for r in rows))
    for c, name in enumerate(couplings):
        rs = [r for r in rows if r["coupling"] == name]
        ts = [r["t"] for r in rs]
        axes[0].plot(ts, [max(r["estimator"], 1e-12) for r in rs], "o-", ms=3, c=f"C{c}", label=f"{name} (estimator)")
        if rs[0]["exact"] is not None:
            axes[0].plot(ts, [max(r["exact"], 1e-12) for r in rs], "--", c=f"C{c}", label=f"{name} (exact)")
            axes[1].plot(ts, [100 * r["relative_error"] if r["relative_error"] is not None else np.nan for r in rs],
                         "o-", ms=3, c=f"C{c}", label=name)
    axes[0].set(xscale="log", yscale="log", xlabel="t", ylabel="R~_t = E||xdot_t - v_t(x_t)||^2",
                title=f"{dataset}: discrepancy proxy per coupling")
    axes[0].legend(fontsize=6)
    axes[1].axhline(0, c="0.5", lw=0.8)
    axes[1].set(xscale="log", xlabel="t", ylabel="relative error (%)",
                title="denoiser estimator vs exact R~_t")
    axes[1].legend(fontsize=6)
    fig.tight_layout()
    return _png(fig)


def transport_figure(rows: list[dict], dataset: str) -> bytes:
    """GC paper Fig. 3: GC's c(t) = E_IC||f(x_t, t) - z||^2 against the couplings' E||x - z||^2."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    curve = [r for r in rows if r["coupling"] == "GC"]
    if curve:
        ax.errorbar([r["t"] for r in curve], [r["cost"] for r in curve], [2 * r["se"] for r in curve],
                    fmt="o-", ms=3, c="C3", label="GC c(t)")
    for c, r in enumerate(r for r in rows if r["t"] == 0.0):
        ax.axhline(r["cost"], ls="--", c=f"C{c}", label=f"{r['coupling']}: E||x - z||^2 = {r['cost']:.3g}")
    ax.set(xscale="log", xlabel="t", ylabel="mean quadratic transport cost", title=f"{dataset}: transport cost")
    ax.legend(fontsize=6)
    fig.tight_layout()
    return _png(fig)


def theorem1_figure(rows: list[dict], dataset: str) -> bytes:
    """Theorem 1 (alpha = 2): N^2 (L_CT - L_CD) converging to C T R(theta) as N grows."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    N = [r["N"] for r in rows]
    ax.errorbar(N, [r["scaled"] for r in rows], [2 * r["scaled_se"] for r in rows], fmt="o-", ms=3,
                label="N^2 (L_CT - L_CD), 2 s.e.")
    lim, se = rows[0]["limit"], rows[0]["limit_se"]
    ax.axhline(lim, c="C3", label=f"C T R(theta) = {lim:.3g}")
    ax.axhspan(lim - 2 * se, lim + 2 * se, color="C3", alpha=0.15)
    ax.set(xscale="log", xlabel="N (equally spaced times)", ylabel="scaled loss gap",
           title=f"{dataset}: Theorem 1, squared loss")
    ax.legend(fontsize=6)
    fig.tight_layout()
    return _png(fig)
