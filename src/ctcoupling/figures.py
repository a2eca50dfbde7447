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
        ax.set(xlim=(-1.2, 1.2), ylim=(-1.2, 1.2), aspect="equal")
        ax.set_title(f"{name}: {between:.0%} of samples between the modes", fontsize=8)
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
    ax.set(xlim=(-3.5, 3.5), ylim=(-3.5, 3.5), aspect="equal")
    ax.set_title("VC encoder posteriors over the prior", fontsize=8)
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


# ---------------------------------------------------------------------------------------------
# Training curves over seeds (tables from ctcoupling.curves / ctcoupling.evidence).

_COLOR = {"ic": "C0", "ot": "C1", "vc": "C2", "gc": "C3", "vcgc": "C4"}
LOG_METRICS = ("w2", "fid")  # positive, falling over decades; the others (energy, KID, fractions) linear


def _band(ax, b, color, label, log: bool = False):
    """The seed mean and its 95% interval; on a log axis a bound below zero is drawn at mean / 10."""
    ax.plot(b["step"], b["mean"], "o-", ms=3, c=color, label=label)
    if b["low"].notna().any():
        low = np.maximum(b["low"], b["mean"] / 10) if log else b["low"]
        ax.fill_between(b["step"], low, b["high"], color=color, alpha=0.2, lw=0)


def _curve_axes(ax, metric: str, title: str, title_size: float | None = None) -> None:
    """Labels, the title, a log axis for the metrics that fall over decades, and the legend."""
    ax.set(xlabel="training step", ylabel=metric, title=title)
    if title_size:
        ax.title.set_fontsize(title_size)
    if metric in LOG_METRICS:
        ax.set_yscale("log")
    ax.legend(fontsize=6)


def curves_figure(table, dataset: str, metrics: list[str], couplings: list[str]) -> bytes:
    """Metric vs training step per coupling on one data set: seed mean and 95% t interval (band),
    one column per metric, one row per objective."""
    from .curves import band

    objectives = list(dict.fromkeys(table["objective"]))
    fig, axes = plt.subplots(len(objectives), len(metrics), figsize=(4.6 * len(metrics), 3.5 * len(objectives)),
                             squeeze=False)
    for i, obj in enumerate(objectives):
        t = table[(table.objective == obj) & table.coupling.isin(couplings)]
        for j, metric in enumerate(metrics):
            ax = axes[i, j]
            for k, c in enumerate(x for x in couplings if x in set(t.coupling)):
                b = band(t[t.coupling == c], metric, ["coupling"])
                seeds = int(b["seeds"].max())
                _band(ax, b, _COLOR.get(c, f"C{5 + k}"), f"{c.upper()} ({seeds} seed{'s' * (seeds > 1)})",
                      log=metric in LOG_METRICS)
            _curve_axes(ax, metric, f"{dataset} / {obj}: {metric}")
    fig.suptitle("seed mean and 95% t interval over seeds", fontsize=8, y=0.995)
    fig.tight_layout()
    return _png(fig)


def ablations_figure(curves, ablations: list[dict], metric_of: dict[str, str], describe) -> bytes:
    """One panel per one-change ablation (`params.ablations`): the variant's and the reference's
    curves on the same seeds (seed mean, 95% t interval), titled with the change."""
    from .curves import band

    n = len(ablations)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.remove()
    for ax, ab in zip(axes.flat, ablations):
        ds, metric = ab["dataset"], metric_of[ab["dataset"]]
        t = curves[(curves.dataset == ds) & curves.seed.isin(ab["seeds"])]
        pairs = ((ab["objective"], ab["coupling"], "C3"), (ab["ref_objective"], ab["ref_coupling"], "C0"))
        for obj, cpl, color in pairs:
            b = band(t[(t.objective == obj) & (t.coupling == cpl)], metric, ["coupling"])
            _band(ax, b, color, f"{obj} / {cpl} ({len(ab['seeds'])} seeds)", log=metric in LOG_METRICS)
        _curve_axes(ax, metric, f"{ds}: {describe(ab['change'])}", title_size=8)
    fig.suptitle("one-change ablations: seed mean and 95% t interval over the same seeds", fontsize=8, y=0.995)
    fig.tight_layout()
    return _png(fig)


def mu_sweep_figure(sweep, metric: str) -> bytes:
    """GC paper Fig. 5 at small scale: the metric vs step for each mu (mu = 0 is IC), and the first,
    best and final values against mu (seed mean, 95% interval)."""
    from . import stats
    from .curves import band

    ds, obj = sweep[["dataset", "objective"]].iloc[0]  # the first sweep in the grid
    g = sweep[(sweep.dataset == ds) & (sweep.objective == obj)]
    mus = sorted(g.mu.unique())
    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for k, mu in enumerate(mus):
        _band(axes[0], band(g[g.mu == mu], metric, ["mu"]), cmap(k / max(1, len(mus) - 1)), f"mu = {mu:g}",
              log=True)
    axes[0].set(xlabel="training step", ylabel=metric, yscale="log", title=f"{ds} / {obj}: {metric} vs step per mu")
    axes[0].legend(fontsize=7)
    first, last = g.step.min(), g.step.max()
    for label, pick, marker in ((f"step {first} (first snapshot)", lambda d: d[d.step == first], "s"),
                                ("best over training", lambda d: d.loc[d.groupby("seed")[metric].idxmin()], "^"),
                                (f"step {last} (final)", lambda d: d[d.step == last], "o")):
        m, lo, hi = zip(*(stats.mean_ci(pick(g[g.mu == mu])[metric].to_numpy()) for mu in mus))
        err = np.array([np.subtract(m, lo), np.subtract(hi, m)])
        axes[1].errorbar(mus, m, yerr=np.nan_to_num(err), fmt=f"{marker}-", ms=4, capsize=3, label=label)
    axes[1].set(xlabel="mu (fraction of generator-induced pairs)", ylabel=metric, yscale="log",
                title="first, best and final vs mu (95% CI)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def kl_scale_figure(table, selected: float | None, configured: float | None, separated: float) -> bytes:
    """VC's kl_scale ablation on the two-Gaussian set: the posteriors' mode accuracy, their aggregate
    variance against the prior's 1, and the samples' W2 and between-modes fraction."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    k = table["kl_scale"]
    axes[0].plot(k, table["mode_accuracy"], "o-", c="C2")
    axes[0].axhline(separated, ls="--", c="0.5", lw=0.8, label=f"separation threshold {separated:g}")
    axes[0].axhline(0.5, ls=":", c="0.5", lw=0.8, label="chance (collapsed)")
    axes[0].set(title="posterior separation of the two modes", ylabel="mode accuracy of a classifier on z", ylim=(0.4, 1.02))
    axes[1].plot(k, table["aggregate_var_min"], "o-", c="C1", label="min over dims")
    axes[1].plot(k, table["aggregate_var_max"], "s-", c="C1", alpha=0.6, label="max over dims")
    axes[1].axhline(1.0, ls="--", c="0.5", lw=0.8, label="prior N(0, I)")
    axes[1].set(title="do the posteriors tile the prior?", ylabel="variance of all posterior draws z")
    axes[2].plot(k, table["w2"], "o-", c="C0", label="W2 to held-out data")
    if "between_modes" in table:
        axes[2].plot(k, table["between_modes"], "s-", c="C3", label="fraction between the modes")
    axes[2].set(title="1-step sample quality", ylabel="lower is better", yscale="log")
    for ax in axes:
        if selected is not None:
            ax.axvline(selected, c="C2", lw=1.5, alpha=0.4, label=f"selected kl_scale = {selected:g}")
        if configured is not None and configured != selected:
            ax.axvline(configured, c="C3", lw=1, ls="-.", label=f"configured kl_scale = {configured:g}")
        ax.set(xscale="log", xlabel="kl_scale\n(beta = kl_scale x the largest-time weight)")
        ax.legend(fontsize=6)
    seeds = ", ".join(f"{k:g}: {n}" for k, n in zip(table["kl_scale"], table["seeds"]))
    fig.suptitle(f"{table['dataset'].iloc[0]} / {table['objective'].iloc[0]}: kl_scale ablation, seed means "
                 f"(seeds per kl_scale: {seeds})", fontsize=9)
    fig.tight_layout()
    return _png(fig)
