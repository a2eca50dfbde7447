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
        out[f"{c}_std"] = g[c].std(ddof=1).fillna(0.0).values
    return out


def _md(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in r) + " |")
    return "\n".join(lines)


def markdown(table: pd.DataFrame, summary: pd.DataFrame, source: str) -> str:
    metric_cols = [c[:-5] for c in summary.columns if c.endswith("_mean")]
    shown = summary[GROUP + ["seeds"]].copy()
    for c in metric_cols:
        shown[c] = [f"{m:.4f} ± {s:.4f}" for m, s in zip(summary[f"{c}_mean"], summary[f"{c}_std"])]
    return (f"# Results ({source})\n\n"
            "W2: exact 2-Wasserstein distance between generated samples and held-out data "
            "(Hungarian matching; lower is better). NFE: network evaluations per sample.\n\n"
            "## Mean ± std over seeds\n\n" + _md(shown) + "\n\n## Per experiment\n\n" + _md(table) + "\n")


def metrics_json(summary: pd.DataFrame) -> dict:
    out = {}
    for _, r in summary.iterrows():
        key = f"{r['dataset']}/{r['objective']}/{r['coupling']}/nfe{r['nfe']}"
        out[key] = {c: float(r[c]) for c in summary.columns if c.endswith(("_mean", "_std"))}
    return out


def samples_figure(params: dict, points: dict[str, np.ndarray], refs: dict[str, np.ndarray]) -> bytes:
    """One panel per (2-D data set, objective, coupling): held-out data in grey, the lowest seed's samples on top."""
    from .params import experiments

    first = {}
    for e in experiments(params):
        if refs[e.dataset].ndim == 2 and refs[e.dataset].shape[1] == 2:
            key = (e.dataset, e.objective, e.coupling)
            if key not in first or e.seed < first[key].seed:
                first[key] = e
    if not first:
        return _empty_png("no 2-D data set in this grid")
    datasets = sorted({k[0] for k in first})
    methods = sorted({k[1:] for k in first})
    k = params["report"]["figure_points"]
    fig, axes = plt.subplots(len(datasets), len(methods), figsize=(3 * len(methods), 3 * len(datasets)),
                             squeeze=False)
    for i, ds in enumerate(datasets):
        for j, (obj, cpl) in enumerate(methods):
            ax = axes[i, j]
            ax.scatter(*refs[ds][:k].T, s=2, c="0.7", label="held-out data")
            if (ds, obj, cpl) in first:
                e = first[(ds, obj, cpl)]
                ax.scatter(*points[e.name][:k].T, s=2, c="C0", label=f"1-step samples (seed {e.seed})")
            ax.set(xlim=(-1.5, 1.5), ylim=(-1.5, 1.5), aspect="equal", title=f"{ds}\n{obj} / {cpl}")
            ax.tick_params(labelsize=7)
    axes[0, 0].legend(loc="lower left", fontsize=6, markerscale=3)
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
