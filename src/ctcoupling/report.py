"""Tables and figures for analysis/: per-experiment results, mean +- std over seeds, samples over data."""
from __future__ import annotations

import io
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

GROUP = ["dataset", "objective", "coupling", "nfe"]


def read_eval(path) -> dict:
    with open(path) as f:
        r = json.load(f)
    return {k: r[k] for k in ("experiment", *GROUP, "seed", "n")} | r["metrics"]


def results_table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows).sort_values(["dataset", "objective", "coupling", "seed"], kind="stable")


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample std over seeds of every metric column, per (dataset, objective, coupling, nfe)."""
    metric_cols = [c for c in table.columns if c not in ("experiment", *GROUP, "seed", "n")]
    g = table.groupby(GROUP, sort=True)
    out = g.size().rename("seeds").reset_index()
    for c in metric_cols:
        out[f"{c}_mean"] = g[c].mean().values
        out[f"{c}_std"] = g[c].std(ddof=1).values  # NaN with one seed: no spread to report
    return out


def _cell(v) -> str:
    if isinstance(v, float):
        return "–" if np.isnan(v) else f"{v:.4f}"
    return str(v)


def _md(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(_cell(v) for v in r) + " |")
    return "\n".join(lines)


def _mean_std(m: float, s: float) -> str:
    if np.isnan(m):
        return "–"
    return f"{m:.4f}" if np.isnan(s) else f"{m:.4f} ± {s:.4f}"


def by_coupling(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per (dataset, objective, nfe), one column per coupling: mean ± std of a metric."""
    summary = summary[summary[f"{metric}_mean"].notna()]
    cell = summary.assign(v=[_mean_std(m, s) for m, s in zip(summary[f"{metric}_mean"], summary[f"{metric}_std"])])
    wide = cell.pivot(index=["dataset", "objective", "nfe"], columns="coupling", values="v").fillna("")
    order = [c for c in ("ic", "ot", "vc", "gc", "vcgc") if c in wide.columns] + sorted(
        c for c in wide.columns if c not in ("ic", "ot", "vc", "gc", "vcgc"))
    return wide[order].reset_index()


def markdown(table: pd.DataFrame, summary: pd.DataFrame, source: str) -> str:
    metric_cols = [c[:-5] for c in summary.columns if c.endswith("_mean")]
    shown = summary[GROUP + ["seeds"]].copy()
    for c in metric_cols:
        shown[c] = [_mean_std(m, s) for m, s in zip(summary[f"{c}_mean"], summary[f"{c}_std"])]
    text = (f"# Results ({source})\n\n"
            "W2: exact 2-Wasserstein distance between generated samples and held-out data "
            "(Hungarian matching; lower is better; in pixel space for images). between_modes (two-Gaussian "
            "set only): fraction of samples with |y| < 0.25, in the gap between the modes (VCT Fig. 1; lower "
            "is better). energy (2-D sets): energy distance to held-out data (V-statistic; lower is better). fid, kid, "
            "is, precision, recall (images): torch-fidelity on the data set's own classifier's features (digits: "
            "see data/digits_classifier.json for its held-out accuracy) against the training images; comparable "
            "between couplings here, not with Inception FIDs; kid is not scaled by 100. NFE: network evaluations "
            "per sample. ± is the sample std over seeds (none with one seed). The paper claims measured by the "
            "theory stage are in claims.md, the published numbers in audit.md.\n\n")
    for c in metric_cols:
        text += f"## {c} by coupling (mean ± std over seeds)\n\n" + _md(by_coupling(summary, c)) + "\n\n"
    return text + "## Mean ± std over seeds\n\n" + _md(shown) + "\n\n## Per experiment\n\n" + _md(table) + "\n"


def claims_markdown(records: list[dict], source: str) -> str:
    """The GC paper's claims, each with the evidence measured here and whether it holds; the denoiser
    estimator's error against the exact R~_t; R(theta) per consistency model."""
    text = (f"# Paper claims, measured ({source})\n\n"
            "From `ctcoupling theory` on each data set's trained runs (METHODS 6). R~_t = E||xdot_t - v_t(x_t)||^2; "
            "IC and VC are exact on the finite training set, every coupling is also estimated with the GC paper's "
            "denoiser estimator (the only route for batch-OT and GC). A claim that does not hold is reported as "
            "measured: CPU-scale data and models are not CIFAR-10.\n\n")
    rows = [{"data set": c["dataset"], "claim": c["claim"], "holds here": "yes" if c["holds"] else "no",
             "evidence": c["evidence"]} for r in records for c in r["claims"]]
    text += "## Claims\n\n" + _md(pd.DataFrame(rows)) + "\n\n"
    err = []
    for r in records:
        for coupling in ("IC", "VC"):
            rows_c = [d for d in r["tables"]["discrepancy"] if d["coupling"] == coupling]
            rel = {d["t"]: abs(d["relative_error"]) for d in rows_c if d["relative_error"] is not None}
            if rows_c:
                memorised = [d["t"] for d in rows_c if d["relative_error"] is None]
                err.append({"data set": r["dataset"], "coupling": coupling, "times": f"{len(rel)}/{len(rows_c)}",
                            "median abs. rel. error": f"{np.median(list(rel.values())):.1%}" if rel else "-",
                            "max abs. rel. error": (f"{max(rel.values()):.1%} (t={max(rel, key=rel.get):g})"
                                                 if rel else "-"),
                            "exact ~ 0 (memorised) at t": ", ".join(f"{t:g}" for t in memorised) or "-"})
    text += ("## How far to trust the estimator (the paper's Fig. 2)\n\nRelative error of the denoiser "
             "estimator against the exact R~_t over the measured times. At small t the finite training set's "
             "posterior is one-hot, so the exact R~_t is ~0 (memorisation) while a generalising D_phi is not: "
             "no relative error is quoted at those times, which are listed.\n\n" + _md(pd.DataFrame(err)) + "\n\n")
    rt = [{"data set": r["dataset"], "model": k, "R(theta)": f"{v:.4g}"} for r in records for k, v in r["R_theta"].items()]
    text += ("## R(theta) of Theorem 1 (lambda = 1, over the measured times, exact velocity)\n\n"
             + _md(pd.DataFrame(rt)) + "\n")
    return text


def metrics_json(summary: pd.DataFrame) -> dict:
    out = {}
    for _, r in summary.iterrows():
        key = f"{r['dataset']}/{r['objective']}/{r['coupling']}/nfe{r['nfe']}"
        out[key] = {c: None if np.isnan(r[c]) else float(r[c]) for c in summary.columns
                    if c.endswith(("_mean", "_std"))}
    return out


def samples_figure(params: dict, points: dict[str, np.ndarray], refs: dict[str, np.ndarray]) -> bytes:
    """One panel per (2-D data set, objective, coupling): held-out data in grey, the lowest seed's samples on top."""
    from .params import experiments, is_2d

    first = {}
    for e in experiments(params):
        if is_2d(params, e.dataset):
            key = (e.dataset, e.objective, e.coupling)
            if key not in first or e.seed < first[key].seed:
                first[key] = e
    if not first:
        return _empty_png("no 2-D data set in this grid")
    datasets = sorted({k[0] for k in first})
    rows = {ds: sorted(k[1:] for k in first if k[0] == ds) for ds in datasets}  # only the panels that exist
    cols = max(len(r) for r in rows.values())
    k = params["report"]["figure_points"]
    fig, axes = plt.subplots(len(datasets), cols, figsize=(3 * cols, 3 * len(datasets)), squeeze=False)
    for i, ds in enumerate(datasets):
        for j in range(cols):
            ax = axes[i, j]
            if j >= len(rows[ds]):
                ax.remove()
                continue
            obj, cpl = rows[ds][j]
            e = first[(ds, obj, cpl)]
            ax.scatter(*refs[ds][:k].T, s=2, c="0.7", label="held-out data")
            ax.scatter(*points[e.name][:k].T, s=2, c="C0", label=f"1-step samples (seed {e.seed})")
            ax.set(xlim=(-1.5, 1.5), ylim=(-1.5, 1.5), aspect="equal", title=f"{ds}\n{obj} / {cpl}")
            ax.tick_params(labelsize=7)
    axes[0, 0].legend(loc="lower left", fontsize=6, markerscale=3)
    fig.tight_layout()
    return _png(fig)


def image_grids_figure(params: dict, dataset: str, points: dict[str, np.ndarray], ref: np.ndarray) -> bytes:
    """Held-out images next to the lowest seed's samples of every (objective, coupling) on one image set."""
    from .params import experiments
    from .sampling import image_grid

    first = {}
    for e in experiments(params):
        if e.dataset == dataset and ((e.objective, e.coupling) not in first or e.seed < first[(e.objective, e.coupling)].seed):
            first[(e.objective, e.coupling)] = e
    k = min(64, params["report"]["figure_points"])
    panels = [("held-out data", ref[:k])] + [
        (f"{obj} / {cpl} (seed {e.seed})", points[e.name][:k]) for (obj, cpl), e in sorted(first.items())]
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.3), squeeze=False)
    for ax, (title, imgs) in zip(axes[0], panels):
        grid = image_grid(imgs)
        ax.imshow(grid.squeeze(-1) if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=255,
                  interpolation="nearest")
        ax.set_title(f"{dataset}\n{title}", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    return _png(fig)


def preview_png(x: np.ndarray, title: str) -> bytes:
    """A quick look at one experiment's samples: an image grid, or a scatter of 2-D points."""
    from .sampling import image_grid

    fig, ax = plt.subplots(figsize=(3.5, 3.5))
    if x.ndim == 4:
        grid = image_grid(x[:64])
        ax.imshow(grid.squeeze(-1) if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=255,
                  interpolation="nearest")
        ax.axis("off")
    else:
        ax.scatter(*x[:2048, :2].T, s=2)
        ax.set(xlim=(-1.5, 1.5), ylim=(-1.5, 1.5), aspect="equal")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _empty_png(text: str) -> bytes:
    fig, ax = plt.subplots(figsize=(4, 1))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    return _png(fig)
