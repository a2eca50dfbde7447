"""Reproductions of the papers' figures from trained runs and the theory stage's tables (pure: arrays,
tables and models in, PNG out).

- VCT Fig. 1: one-step samples of IC and VC on the two-Gaussian set, and the encoder's posteriors
  p(z | mode) drawn over the prior N(0, I), one row per seed: VC should separate the modes where IC
  falls between them. Each panel quotes the evaluation's measured numbers (eval.json).
- GC: the predicted endpoints x_hat = f(x + sigma z, sigma) at a few times, and the noise-data pairs
  (z, x) of IC against (z, x_hat) of GC, with the theory stage's transport costs of the same run.
- The GC paper's theory figures (Fig. 2, Fig. 3, Theorem 1) from the theory stage's rows.
- Training curves, ablations and sweeps over seeds.

Over seeds a line is the seed mean and its band the 95% percentile-bootstrap interval of that mean
(`seed_interval`), drawn only where there are 2 or more seeds: every metric drawn with a band here
(W2, FID, KID, energy, fractions, accuracies) is non-negative, and a bootstrap mean lies within the
seeds' own range, so a band never goes below 0 (a t interval on 3 seeds does). The claims in
analysis/claims.md test with t intervals; the figures' bands are for reading, not for the verdicts.
"""
from __future__ import annotations

import numpy as np
import torch

from ctcoupling.config.params import LABEL
from ctcoupling.results.runs import _png, plt

OBJECTIVE_LABEL = {"ict": "iCT", "ect": "ECT", "sct": "sCT", "scd_exact": "sCD-exact"}  # the papers' names
BAND = "band: 95% percentile-bootstrap interval of the seed mean (within the seeds' range, never below 0)"
BETWEEN = 0.25  # metrics.between_modes' threshold: |y| below it is between the two modes


def seed_interval(values, seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high) over seeds: the mean and its 95% percentile-bootstrap interval
    (scipy.stats.bootstrap, 9999 resamples, a fixed generator: the same numbers on every call). The
    resampled means are means of the seeds' own values, so the interval lies within their range: a
    non-negative metric's interval never goes below 0. Under 2 finite values: no interval (NaN)."""
    from scipy.stats import bootstrap

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return np.nan, np.nan, np.nan
    m = float(v.mean())
    if len(v) < 2:
        return m, np.nan, np.nan
    if np.ptp(v) == 0:
        return m, m, m
    ci = bootstrap((v,), np.mean, confidence_level=0.95, n_resamples=9999, method="percentile",
                   rng=np.random.default_rng(seed)).confidence_interval
    low, high = np.clip([ci.low, ci.high], v.min(), v.max())  # the mean of equal values rounds past them
    return m, float(low), float(high)


def seed_band(table, metric: str, by: list[str]):
    """Per group `by` and step: the number of seeds, the seed mean and its bootstrap interval
    (`seed_interval`) of `metric`. Columns: by..., step, seeds, mean, low, high."""
    g = table.groupby(by + ["step"], sort=True)[metric]
    out = g.count().rename("seeds").reset_index()
    out[["mean", "low", "high"]] = [seed_interval(v.to_numpy()) for _, v in g]
    return out


def _seeds(n: int) -> str:
    return f"mean over {n} seeds" if n > 1 else "1 seed, no band"


def _legend_right(ax, **kw) -> None:
    """The legend outside the axes, to their right: it covers no data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=kw.pop("fontsize", 7), **kw)


def _legend_below(ax, ncol: int = 2, **kw) -> None:
    """The legend outside the axes, under the x label: it covers no data."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), borderaxespad=0.0, ncol=ncol,
              fontsize=kw.pop("fontsize", 7), **kw)


def _mode_panel(ax, data: np.ndarray, x: np.ndarray, n: int, label: str) -> None:
    """Held-out data and samples of the two-Gaussian set, with the counted gap |y| < BETWEEN shaded."""
    ax.axhspan(-BETWEEN, BETWEEN, color="gold", alpha=0.25, lw=0, label=f"counted as between: |x_2| < {BETWEEN:g}")
    ax.scatter(*data[:n].T, s=3, c="0.65", label="held-out data")
    ax.scatter(*x[:n].T, s=3, c="C0", label=label)
    ax.set(xlim=(-1.2, 1.2), ylim=(-1.2, 1.2), aspect="equal", xlabel="x_1", ylabel="x_2")


def vct_fig1(data: np.ndarray, runs: list[dict], n: int = 512) -> bytes:
    """VCT Fig. 1, one row per seed. data: held-out points; runs: one dict per seed,
    {"seed", "samples": {"IC": x, "VC": x}, "between_modes": {"IC": f, "VC": f}, "mode_accuracy": a,
    "encoder": the VC run's (mu, s) encoder}: the between-mode fractions and the posterior mode accuracy
    are the evaluation's (eval.json, all samples), quoted in each panel; the panels draw the first n."""
    rows = len(runs)
    fig, axes = plt.subplots(rows, 3, figsize=(12.5, 3.9 * rows), squeeze=False, layout="constrained")
    for row, r in zip(axes, runs):
        for ax, name in zip(row, ("IC", "VC")):
            x = r["samples"][name]
            _mode_panel(ax, data, x, n, "1-step samples (the column's coupling: IC, VC)")
            title = f"{name}, seed {r['seed']}: measured between-mode fraction {r['between_modes'][name]:.1%}"
            if name == "VC":
                title += f"\nVC posterior mode accuracy {r['mode_accuracy']:.3f}"
            ax.set_title(title, fontsize=8)
        ax = row[2]
        gen = torch.Generator().manual_seed(int(r["seed"]))
        prior = torch.randn((4 * n, 2), generator=gen).numpy()
        ax.scatter(*prior.T, s=2, c="0.85", label="prior N(0, I)")
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(data[:2 * n]))
            mu, s = r["encoder"](x)
            z = (mu + s * torch.randn(mu.shape, generator=gen)).numpy()
        upper = data[:2 * n, 1] > 0
        ax.scatter(*z[upper].T, s=3, c="C1", label="z ~ p(z | x), x in the upper mode")
        ax.scatter(*z[~upper].T, s=3, c="C2", label="z ~ p(z | x), x in the lower mode")
        ax.set(xlim=(-3.5, 3.5), ylim=(-3.5, 3.5), aspect="equal", xlabel="z_1", ylabel="z_2")
        ax.set_title(f"VC encoder posteriors, seed {r['seed']}\nmeasured mode accuracy {r['mode_accuracy']:.3f} "
                     "(0.5: collapsed, 1: separated)", fontsize=8)
    _legend_below(axes[-1, 0], ncol=1, markerscale=3)
    _legend_below(axes[-1, 2], ncol=1, markerscale=3)
    fig.suptitle(f"VCT Fig. 1 on the two-Gaussian set, {rows} seed{'s' * (rows > 1)} (one row each): the first {n} "
                 "samples drawn; the fractions and accuracies are the evaluation's (eval.json, all samples)",
                 fontsize=9)
    return _png(fig)


def gc_pairs(data: np.ndarray, model, costs: list[dict] | None = None, source: str = "", run: str = "GC",
             sigmas=(0.1, 0.5, 2.0), n: int = 256, seed: int = 0, lines: int = 40) -> bytes:
    """Where GC's predictor sends x + sigma z (top row), and the pairs IC and GC hand to training (bottom
    row), on n IC pairs (x, z) of `data` drawn with `seed`; the first `lines` of them as lines.

    costs: the theory stage's transport table of this GC run (rows coupling, t, cost, se: fig3_transport
    and theory_<ds>_transport.csv, n_theory Monte Carlo pairs each), quoted as they are, `source` saying
    where from; None: the mean costs of the n pairs drawn here, said so in the figure."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(data[:n]))
    n = len(x)
    z = torch.randn(x.shape, generator=gen)
    x_hat = {}
    with torch.no_grad():
        for sigma in sigmas:
            s = torch.full((n,), float(sigma))
            x_hat[sigma] = model(model.kernel.perturb(x, s, z), s)
    if costs is None:
        def mean_se(c):
            return float(c.mean()), float(c.std() / np.sqrt(n))
        costs = [{"coupling": "IC", "t": 0.0, **dict(zip(("cost", "se"), mean_se(((x - z) ** 2).sum(1))))}]
        costs += [{"coupling": "GC", "t": float(s), **dict(zip(("cost", "se"), mean_se(((h - z) ** 2).sum(1))))}
                  for s, h in x_hat.items()]
        source = f"the {n} pairs drawn here"
    cost = {(r["coupling"], float(r["t"])): (r["cost"], r["se"]) for r in costs}

    def quote(coupling: str, t: float) -> str:
        c = cost.get((coupling, float(t)))
        return "not measured" if c is None else f"{c[0]:.3f} ± {2 * c[1]:.3f}"

    fig, axes = plt.subplots(2, 3, figsize=(14, 9.5), layout="constrained")
    xn, zn = x.numpy(), z.numpy()
    for ax, sigma in zip(axes[0], sigmas):
        h = x_hat[sigma].numpy()
        ax.scatter(*xn.T, s=4, c="0.6", label="data x")
        ax.scatter(*h.T, s=4, c="C3", label="x_hat = f(x + sigma z, sigma)")
        for a, b in zip(xn[:lines], h[:lines]):
            ax.plot([a[0], b[0]], [a[1], b[1]], c="C3", lw=0.5, alpha=0.6)
        ax.set(xlim=(-1.2, 1.2), ylim=(-1.2, 1.2), aspect="equal", xlabel="x_1", ylabel="x_2")
        ax.set_title(f"predicted endpoints, sigma = {sigma:g}\nc({sigma:g}) = E||x_hat - z||^2 = {quote('GC', sigma)}",
                     fontsize=9)
    _legend_right(axes[0, -1], markerscale=3)
    last = sigmas[-1]
    for ax, ends, title in ((axes[1, 0], xn, f"IC pairs (z, x)\nE||x - z||^2 = {quote('IC', 0.0)}"),
                            (axes[1, 1], x_hat[last].numpy(),
                             f"GC pairs (z, x_hat), sigma = {last:g}\nc({last:g}) = {quote('GC', last)}")):
        upper = ends[:lines, 1] > 0
        for a, b, up in zip(zn[:lines], ends[:lines], upper):
            ax.plot([a[0], b[0]], [a[1], b[1]], c="C0" if up else "C1", lw=0.6, alpha=0.8)
        ax.scatter(*zn[:lines].T, s=8, c="k", marker="x", lw=0.6, label="noise z")
        ax.scatter(*ends[:lines].T, s=8, c="C3", label="data end of the pair")
        ax.plot([], [], c="C0", label="pair ending in the upper mode")
        ax.plot([], [], c="C1", label="pair ending in the lower mode")
        ax.set(xlim=(-3, 3), ylim=(-3, 3), aspect="equal", xlabel="coordinate 1", ylabel="coordinate 2")
        ax.set_title(title, fontsize=9)
    _legend_below(axes[1, 1], ncol=2, markerscale=2)
    ax = axes[1, 2]
    bars = [(c, t) for c, t in (("IC", 0.0), ("OT", 0.0), ("VC", 0.0)) if (c, t) in cost]
    bars += [("GC", float(s)) for s in sigmas if ("GC", float(s)) in cost]
    values = [cost[b] for b in bars]
    ax.bar(range(len(bars)), [v[0] for v in values], yerr=[2 * v[1] for v in values], capsize=3,
           color=[{"IC": "C0", "OT": "C1", "VC": "C2", "GC": "C3"}[c] for c, _ in bars])
    ax.set_xticks(range(len(bars)), [c if c != "GC" else f"GC\nt = {t:g}" for c, t in bars], fontsize=8)
    ax.set(xlabel="coupling (GC: c(t) at the predictor's time t)", ylabel="mean quadratic cost E||x - z||^2",
           title="transport cost of the pairs, ± 2 s.e.")
    ax.title.set_fontsize(9)
    fig.suptitle(f"{run}: the points are {n} IC pairs (x, z) of the training set (generator seed {seed}), the lines "
                 f"the first {lines}\nthe costs (± 2 s.e.): {source}", fontsize=9)
    return _png(fig)


# ---------------------------------------------------------------------------------------------
# The GC paper's theory figures at CPU scale (rows from ctcoupling.measure.theory_runs).


def discrepancy_figure(rows: list[dict], dataset: str, dim: int, seed: int | None = None) -> bytes:
    """GC paper Fig. 2: R~_t vs t per coupling (estimator, solid) and the exact value (IC, VC: dashed).

    An exact value at or below float64's resolution eps * d (d = `dim`, the data dimension: E||xdot||^2 = d
    under the VE kernel, as evidence.underflow_floor) is rounding, not a number: it is drawn as an open
    triangle at that floor (IC pointing down, VC up: they coincide), with the floor as a dotted line,
    never clipped silently."""
    floor = float(np.finfo(np.float64).eps * dim)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), layout="constrained")
    couplings = list(dict.fromkeys(r["coupling"] for r in rows))
    below_any, undefined = False, False
    for c, name in enumerate(couplings):
        rs = [r for r in rows if r["coupling"] == name]
        ts = np.array([r["t"] for r in rs])
        est = np.array([r["estimator"] for r in rs])
        pos = est > 0
        axes[0].plot(ts[pos], est[pos], "o-", ms=3, c=f"C{c}",
                     label=f"{name}: estimator" + (f" ({(~pos).sum()} t at <= 0 left out)" if (~pos).any() else ""))
        if rs[0]["exact"] is None:
            continue
        ex = np.array([r["exact"] for r in rs])
        above = ex > floor
        axes[0].plot(ts[above], ex[above], "s--", ms=3, mfc="none", c=f"C{c}", label=f"{name}: exact")
        if (~above).any():
            below_any = True
            axes[0].plot(ts[~above], np.full((~above).sum(), floor), "v^"[name != "IC"], ms=7, mfc="none", c=f"C{c}",
                         ls="none",
                         label=f"{name}: exact below float64 resolution ({(~above).sum()} t), drawn at the floor")
        err = np.array([np.nan if r["relative_error"] is None else 100 * r["relative_error"] for r in rs])
        undefined |= bool(np.isnan(err).any())
        axes[1].plot(ts, err, "o-", ms=3, c=f"C{c}", label=name)
    if below_any:
        axes[0].axhline(floor, c="0.3", ls=":", lw=0.9, label=f"float64 resolution eps * d = {floor:.2g} (d = {dim})")
    tail = f", runs of seed {seed}" if seed is not None else ""
    axes[0].set(xscale="log", yscale="log", xlabel="t (noise level)", ylabel="R~_t = E||xdot_t - v_t(x_t)||^2",
                title=f"{dataset}: discrepancy proxy per coupling{tail}")
    axes[0].title.set_fontsize(10)
    _legend_right(axes[0], fontsize=6.5)
    axes[1].axhline(0, c="0.5", lw=0.8)
    if np.nanmax(np.abs([100 * r["relative_error"] for r in rows if r["relative_error"] is not None] or [0])) > 100:
        axes[1].set_yscale("symlog", linthresh=10)  # errors of 1e4 % beside 5 %: linear within +-10 %, log beyond
    axes[1].set(xscale="log", xlabel="t (noise level)", ylabel="relative error 100 (estimator - exact) / exact (%)",
                title="denoiser estimator against the exact R~_t" +
                      ("\n(no point: exact < 0.1% of the estimate, the memorising regime)" if undefined else ""))
    axes[1].title.set_fontsize(9)
    _legend_right(axes[1])
    return _png(fig)


def transport_figure(rows: list[dict], dataset: str, seed: int | None = None, n: int | None = None) -> bytes:
    """GC paper Fig. 3: GC's c(t) = E_IC||f(x_t, t) - z||^2 against the couplings' E||x - z||^2, each a
    Monte Carlo mean over n pairs of the training set with +- 2 standard errors (bars, bands)."""
    fig, ax = plt.subplots(figsize=(7.8, 4), layout="constrained")
    curve = [r for r in rows if r["coupling"] == "GC"]
    if curve:
        ax.errorbar([r["t"] for r in curve], [r["cost"] for r in curve], [2 * r["se"] for r in curve],
                    fmt="o-", ms=3, c="C3", capsize=2, label="GC c(t) = E||f(x_t, t) - z||^2, ± 2 s.e.")
    for c, r in enumerate(r for r in rows if r["t"] == 0.0):
        ax.axhline(r["cost"], ls="--", c=f"C{c}",
                   label=f"{r['coupling']}: E||x - z||^2 = {r['cost']:.3g} ± {2 * r['se']:.2g} (2 s.e.)")
        ax.axhspan(r["cost"] - 2 * r["se"], r["cost"] + 2 * r["se"], color=f"C{c}", alpha=0.12, lw=0)
    ax.set(xscale="log", xlabel="t (the time GC's predictor f(x_t, t) is called at)",
           ylabel="mean quadratic transport cost", title=f"{dataset}: transport cost"
           + (f", runs of seed {seed}" if seed is not None else "")
           + (f"\n{n} Monte Carlo pairs of the training set per value" if n else ""))
    ax.title.set_fontsize(10)
    _legend_right(ax)
    return _png(fig)


def continuous_discrepancy_figure(rows: list[dict], dataset: str, seed: int | None = None) -> bytes:
    """sCT's tangent against its oracle's along TrigFlow time, per coupling: left the velocity gap
    E||xdot - v*||^2 / D (no model), right the tangent gap E||J_f (xdot - v*)||^2 / D with the oracle's f;
    sCD-exact is 0 by construction (its tangent uses v*), drawn as the line at 0 on a symlog axis.
    Bands: +- 2 standard errors of the Monte Carlo mean."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), layout="constrained")
    if not rows:
        for ax in axes:
            ax.text(0.5, 0.5, "no sCT and sCD-exact runs of this seed (params evidence.continuous)",
                    ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
        return _png(fig)
    for ax, key, ylabel in ((axes[0], "velocity_gap", "E||xdot_t - v*(x_t)||^2 / D"),
                            (axes[1], "tangent_gap", "E||J_f(x_t) (xdot_t - v*(x_t))||^2 / D")):
        top = 0.0
        for c, name in enumerate(dict.fromkeys(r["coupling"] for r in rows)):
            rs = [r for r in rows if r["coupling"] == name]
            t, m, se = (np.array([r[k] for r in rs]) for k in ("t", key, f"{key}_se"))
            ax.plot(t, m, "o-", ms=3, c=f"C{c}", label=f"sCT-{name}")
            ax.fill_between(t, m - 2 * se, m + 2 * se, color=f"C{c}", alpha=0.15, lw=0)
            top = max(top, float(np.max(m + 2 * se)))
        ax.axhline(0, c="k", lw=1.2, label="sCD-exact (the oracle): 0")
        small = min((r[key] for r in rows if r[key] > 0), default=1e-6)
        ax.set_yscale("symlog", linthresh=max(small, top * 1e-6))
        ax.set_ylim(bottom=0)  # a squared norm: nothing below the oracle's 0
        ax.set(xlabel="TrigFlow time t = arctan(sigma / sigma_data)", ylabel=ylabel)
        _legend_right(ax)
    axes[0].set_title(f"{dataset}: pair velocity against the exact one" + (f", seed {seed}" if seed is not None else ""),
                      fontsize=10)
    axes[1].set_title("sCT's tangent minus the oracle's, through the oracle's f", fontsize=10)
    return _png(fig)


def theorem1_figure(rows: list[dict], dataset: str, seed: int | None = None) -> bytes:
    """Theorem 1 (alpha = 2): N^2 (L_CT - L_CD) converging to C T R(theta) as N grows, +- 2 s.e."""
    fig, ax = plt.subplots(figsize=(7.5, 4), layout="constrained")
    N = [r["N"] for r in rows]
    ax.errorbar(N, [r["scaled"] for r in rows], [2 * r["scaled_se"] for r in rows], fmt="o-", ms=3, capsize=2,
                label="N^2 (L_CT - L_CD), ± 2 s.e.")
    lim, se = rows[0]["limit"], rows[0]["limit_se"]
    ax.axhline(lim, c="C3", label=f"limit C T R(theta) = {lim:.3g}")
    ax.axhspan(lim - 2 * se, lim + 2 * se, color="C3", alpha=0.15, lw=0, label="limit ± 2 s.e.")
    ax.set(xscale="log", xlabel="N (equally spaced times)", ylabel="scaled loss gap N^2 (L_CT - L_CD)",
           title=f"{dataset}: Theorem 1, squared loss" + (f", IC run of seed {seed}" if seed is not None else ""))
    _legend_right(ax)
    return _png(fig)


# ---------------------------------------------------------------------------------------------
# Training curves over seeds (tables from ctcoupling.results.curves / ctcoupling.results.evidence).

_COLOR = {"ic": "C0", "ot": "C1", "vc": "C2", "gc": "C3", "vcgc": "C4"}
_MARKER = ("o", "s", "^", "D", "v", "P", "X")
LOG_METRICS = ("w2", "fid")  # positive, falling over decades; the others (energy, KID, fractions) linear
METRIC_LABEL = {"w2": "W2 to held-out data", "fid": "FID (data set's classifier features)", "kid": "KID",
                "energy": "energy distance to held-out data", "between_modes": "between-mode fraction, |x_2| < 0.25"}


def _band(ax, b, color, label: str, marker: str = "o", ls: str = "-") -> None:
    """The seed mean and, with 2 or more seeds, its bootstrap interval (`seed_band`'s rows) as a band."""
    seeds = int(b["seeds"].max())
    ax.plot(b["step"], b["mean"], marker=marker, ms=3, c=color, ls=ls, label=f"{label} ({_seeds(seeds)})")
    if seeds >= 2:
        ax.fill_between(b["step"], b["low"], b["high"], color=color, alpha=0.18, lw=0)


def _curve_axes(ax, metric: str, title: str, title_size: float | None = None) -> None:
    """Labels, the title, a log axis for the metrics that fall over decades."""
    ax.set(xlabel="training step", ylabel=METRIC_LABEL.get(metric, metric), title=title)
    if title_size:
        ax.title.set_fontsize(title_size)
    if metric in LOG_METRICS:
        ax.set_yscale("log")


def curves_figure(table, dataset: str, metrics: list[str], couplings: list[str],
                  oracle: tuple[str, str] | None = None) -> bytes:
    """Metric vs training step per coupling on one data set, one column per metric, one row per
    objective: the seed mean, and with 2+ seeds its 95% percentile-bootstrap band (`seed_interval`).
    `oracle` (objective, its oracle's objective): the oracle's IC run is drawn in that objective's row as
    the black dashed reference (sCT per coupling against sCD-exact), not in a row of its own."""
    objectives = [o for o in dict.fromkeys(table["objective"]) if not oracle or o != oracle[1]
                  or oracle[0] not in set(table["objective"])]
    fig, axes = plt.subplots(len(objectives), len(metrics), figsize=(4.4 * len(metrics) + 2.4, 3.6 * len(objectives)),
                             squeeze=False, layout="constrained")
    for i, obj in enumerate(objectives):
        t = table[(table.objective == obj) & table.coupling.isin(couplings)]
        ref = table[(table.objective == oracle[1]) & (table.coupling == "ic")] if oracle and obj == oracle[0] else None
        for j, metric in enumerate(metrics):
            ax = axes[i, j]
            for k, c in enumerate(x for x in couplings if x in set(t.coupling)):
                _band(ax, seed_band(t[t.coupling == c], metric, ["coupling"]), _COLOR.get(c, f"C{5 + k}"),
                      LABEL.get(c, c.upper()), _MARKER[couplings.index(c) % len(_MARKER)])
            if ref is not None and not ref.empty:
                _band(ax, seed_band(ref, metric, ["coupling"]), "k",
                      f"{OBJECTIVE_LABEL.get(oracle[1], oracle[1])} (the oracle)", "", "--")
            _curve_axes(ax, metric, f"{dataset} / {OBJECTIVE_LABEL.get(obj, obj)}: {metric}")
        _legend_right(axes[i, -1])
    fig.suptitle(f"{dataset}: line = seed mean (seeds in the legend; 1 seed: line only)\n{BAND}", fontsize=8)
    return _png(fig)


def ablations_figure(curves, ablations: list[dict], metric_of: dict[str, str], describe) -> bytes:
    """One panel per one-change ablation (`params.ablations`): the variant's and the reference's
    curves on the same seeds (seed mean, bootstrap band), titled with the change."""
    n = len(ablations)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.6 * rows), squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.remove()
    for ax, ab in zip(axes.flat, ablations):
        ds, metric = ab["dataset"], metric_of[ab["dataset"]]
        t = curves[(curves.dataset == ds) & curves.seed.isin(ab["seeds"])]
        pairs = ((ab["objective"], ab["coupling"], "C3", "s"), (ab["ref_objective"], ab["ref_coupling"], "C0", "o"))
        for obj, cpl, color, marker in pairs:
            b = seed_band(t[(t.objective == obj) & (t.coupling == cpl)], metric, ["coupling"])
            _band(ax, b, color, f"{obj} / {cpl}", marker)
        _curve_axes(ax, metric, f"{ds}: {describe(ab['change'])}", title_size=8)
        _legend_below(ax, ncol=1)
    fig.suptitle(f"one-change ablations on the same seeds: line = seed mean\n{BAND}", fontsize=8)
    return _png(fig)


def mu_sweep_figure(sweep, metric: str) -> bytes:
    """GC paper Fig. 5 at small scale: the metric vs step for each mu (mu = 0 is IC), and the first,
    best and final values against mu (seed mean, 95% bootstrap interval)."""
    ds, obj = sweep[["dataset", "objective"]].iloc[0]  # the first sweep in the grid
    g = sweep[(sweep.dataset == ds) & (sweep.objective == obj)]
    mus = sorted(g.mu.unique())
    names = {mu: ", ".join(sorted(g[g.mu == mu].coupling.unique())) for mu in mus}
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.4), layout="constrained")
    for k, mu in enumerate(mus):
        _band(axes[0], seed_band(g[g.mu == mu], metric, ["mu"]), f"C{k}", f"mu = {mu:g} ({names[mu]})",
              _MARKER[k % len(_MARKER)])
    axes[0].set(xlabel="training step", ylabel=METRIC_LABEL.get(metric, metric), yscale="log",
                title=f"{ds} / {obj}: {metric} vs step per mu")
    _legend_below(axes[0], ncol=2)
    first, last = g.step.min(), g.step.max()
    picks = ((f"step {first} (first snapshot)", lambda d: d[d.step == first], "s"),
             ("best over training", lambda d: d.loc[d.groupby("seed")[metric].idxmin()], "^"),
             (f"step {last} (final)", lambda d: d[d.step == last], "o"))
    width = 0.012 * (max(mus) - min(mus) or 1)
    for j, (label, pick, marker) in enumerate(picks):
        m, lo, hi = zip(*(seed_interval(pick(g[g.mu == mu])[metric].to_numpy()) for mu in mus))
        err = np.nan_to_num(np.array([np.subtract(m, lo), np.subtract(hi, m)]))
        axes[1].errorbar(np.add(mus, (j - 1) * width), m, yerr=err, fmt=f"{marker}-", ms=5, capsize=3,
                         c=("C5", "C4", "k")[j], label=label)
    axes[1].set_xticks(mus, [f"{mu:g}" for mu in mus])
    axes[1].set(xlabel="mu (fraction of generator-induced pairs; 0 = IC)", ylabel=METRIC_LABEL.get(metric, metric),
                yscale="log", title="first, best and final value vs mu")
    _legend_below(axes[1], ncol=3)
    seeds = g.groupby("mu").seed.nunique()
    fig.suptitle(f"GC's mu sweep ({', '.join(f'mu = {mu:g}: {seeds[mu]} seeds' for mu in mus)}): "
                 f"seed means\n{BAND}", fontsize=8)
    return _png(fig)


def kl_scale_figure(runs, selected: float | None, configured: float | None, separated: float) -> bytes:
    """VC's kl_scale ablation on the two-Gaussian set from its runs (one row per run: dataset, objective,
    kl_scale, seed and the evaluation's metrics): the posteriors' mode accuracy, their aggregate variance
    against the prior's 1, the samples' W2 and between-modes fraction; per kl_scale the seed mean with
    its 95% bootstrap interval (`seed_interval`) as error bars."""
    ks = sorted(runs["kl_scale"].unique())

    def draw(ax, metric, color, marker, label, alpha=1.0):
        m, lo, hi = zip(*(seed_interval(runs[runs.kl_scale == k][metric].to_numpy()) for k in ks))
        err = np.nan_to_num(np.array([np.subtract(m, lo), np.subtract(hi, m)]))
        ax.errorbar(ks, m, yerr=err, fmt=f"{marker}-", c=color, capsize=3, alpha=alpha, label=label)

    fig, axes = plt.subplots(1, 4, figsize=(17, 4.6), layout="constrained")
    draw(axes[0], "mode_accuracy", "C2", "o", "mode accuracy")
    axes[0].axhline(separated, ls="--", c="0.5", lw=0.8, label=f"separation threshold {separated:g}")
    axes[0].axhline(0.5, ls=":", c="0.5", lw=0.8, label="chance (collapsed)")
    axes[0].set(title="posterior separation of the two modes", ylabel="mode accuracy of a classifier on z",
                ylim=(0.4, 1.02))
    draw(axes[1], "aggregate_var_min", "C1", "o", "min over dims")
    draw(axes[1], "aggregate_var_max", "C1", "s", "max over dims", alpha=0.6)
    axes[1].axhline(1.0, ls="--", c="0.5", lw=0.8, label="prior N(0, I)")
    axes[1].set(title="do the posteriors tile the prior?", ylabel="variance of all posterior draws z")
    draw(axes[2], "w2", "C0", "o", "W2 to held-out data")
    axes[2].set(title="1-step sample quality: W2", ylabel="W2 to held-out data (lower is better)", yscale="log")
    if "between_modes" in runs:
        draw(axes[3], "between_modes", "C3", "s", "fraction between the modes")
    axes[3].set(title="1-step samples between the modes", ylabel=f"fraction with |x_2| < {BETWEEN:g} (lower is better)")
    for ax in axes:
        if selected is not None:
            ax.axvline(selected, c="C2", lw=1.5, alpha=0.4, label=f"selected kl_scale = {selected:g}")
        if configured is not None and configured != selected:
            ax.axvline(configured, c="C3", lw=1, ls="-.", label=f"configured kl_scale = {configured:g}")
        ax.set(xscale="log", xlabel="kl_scale\n(beta = kl_scale x the largest-time weight)")
        ax.title.set_fontsize(9)
        _legend_below(ax, ncol=1, fontsize=6.5)
    seeds = ", ".join(f"{k:g}: {runs[runs.kl_scale == k].seed.nunique()}" for k in ks)
    fig.suptitle(f"{runs['dataset'].iloc[0]} / {runs['objective'].iloc[0]}: kl_scale ablation; seed means (seeds per "
                 f"kl_scale: {seeds}); error bars: 95% percentile-bootstrap interval of the seed mean", fontsize=9)
    return _png(fig)
