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


def metrics_json(summary: pd.DataFrame) -> dict:
    """dvc.yaml's metrics (`dvc metrics show/diff`, `dvc exp show`): per data set/objective/coupling/nfe,
    the seed mean and std of each metric measured there (no std with one seed, no metric the set lacks)."""
    out = {}
    for _, r in summary.iterrows():
        key = f"{r['dataset']}/{r['objective']}/{r['coupling']}/nfe{r['nfe']}"
        out[key] = {c: float(r[c]) for c in summary.columns if c.endswith(("_mean", "_std")) and not np.isnan(r[c])}
    return out


def samples_figure(params: dict, points: dict[str, np.ndarray], refs: dict[str, np.ndarray]) -> bytes:
    """One panel per (2-D data set, objective, coupling) of the main names: held-out data in grey, the
    lowest seed's samples on top (seed and number of sampling steps in the title), at most 5 panels a
    row (evenly filled) and only the panels that exist; the legend under the panels. The sweeps' and
    the ablations' runs (gc_mu1, vc_kl30, ict_s320, ...) have figures of their own."""
    from ctcoupling.results.evidence import MAIN
    from ctcoupling.config.params import is_2d

    first = _lowest_seed(params, lambda e: is_2d(params, e.dataset))
    if not first:
        return _empty_png("no 2-D data set in this grid")
    panels = sorted(first, key=lambda k: (k[0], k[1], _rank(k[2], MAIN)))  # only real panels
    n_rows, cols = _layout(len(panels), 5)
    k = params["report"]["figure_points"]
    fig = plt.figure(figsize=(3 * cols, 3.3 * n_rows + 0.6), layout="constrained")
    for i, (ds, obj, cpl) in enumerate(panels):
        ax = fig.add_subplot(n_rows, cols, i + 1)
        e = first[(ds, obj, cpl)]
        ax.scatter(*refs[ds][:k].T, s=2, c="0.7", label="held-out data")
        ax.scatter(*points[e.name][:k].T, s=2, c="C0", label="samples of the run")
        ax.set(xlim=(-1.5, 1.5), ylim=(-1.5, 1.5), aspect="equal", xlabel="x_1", ylabel="x_2")
        ax.set_title(f"{ds}\n{obj} / {cpl}, seed {e.seed}, {e.config['sample']['steps']}-step", fontsize=9)
        ax.tick_params(labelsize=7)
    fig.legend(*fig.axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=2, fontsize=8, markerscale=4)
    fig.suptitle(f"the first {k} samples of one run per panel (the lowest seed), over {k} held-out points", fontsize=9)
    return _png(fig)


def _layout(n: int, most: int) -> tuple[int, int]:
    """(rows, columns) for n panels, at most `most` a row, the rows as evenly filled as they can be."""
    rows = -(-n // most)
    return rows, -(-n // rows)


def _rank(coupling: str, order) -> tuple:
    """Sort key: the couplings in `order` first, in that order, then the others by name."""
    return (order.index(coupling) if coupling in order else len(order), coupling)


def _lowest_seed(params: dict, keep) -> dict:
    """(dataset, objective, coupling) -> its lowest-seed run, over the runs of the main names that
    `keep` accepts; all runs where the grid has none of the main names."""
    from ctcoupling.config.params import experiments, is_main

    runs = [e for e in experiments(params) if keep(e)]
    first = {}
    for e in [e for e in runs if is_main(e)] or runs:
        key = (e.dataset, e.objective, e.coupling)
        if key not in first or e.seed < first[key].seed:
            first[key] = e
    return first


def image_grids_figure(params: dict, dataset: str, points: dict[str, np.ndarray], ref: np.ndarray) -> bytes:
    """Held-out images next to the lowest seed's samples of each (objective, coupling) of the main names on
    one image set, at most 6 panels a row."""
    from ctcoupling.results.evidence import MAIN
    from ctcoupling.model.sampling import image_grid

    first = _lowest_seed(params, lambda e: e.dataset == dataset)
    k = min(64, params["report"]["figure_points"])
    panels = [("held-out data", ref[:k])] + [
        (f"{obj} / {cpl} (seed {e.seed}, {e.config['sample']['steps']}-step)", points[e.name][:k])
        for (_, obj, cpl), e in sorted(first.items(), key=lambda kv: (kv[0][1], _rank(kv[0][2], MAIN)))]
    n_rows, cols = _layout(len(panels), 6)
    fig, axes = plt.subplots(n_rows, cols, figsize=(3 * cols, 3.6 * n_rows), squeeze=False, layout="constrained")
    for ax in axes.flat[len(panels):]:
        ax.remove()
    for ax, (title, imgs) in zip(axes.flat, panels):
        grid = image_grid(imgs)
        ax.imshow(grid.squeeze(-1) if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=255,
                  interpolation="nearest")
        ax.set_title(f"{dataset}\n{title}", fontsize=8)
        ax.axis("off")  # an image grid: no coordinates to label
    fig.suptitle(f"{dataset}: the first {k} images of each, one run per panel (the lowest seed)", fontsize=9)
    return _png(fig)


def preview_png(x: np.ndarray, title: str) -> bytes:
    """A quick look at one experiment's samples: an image grid, or a scatter of 2-D points."""
    from ctcoupling.model.sampling import image_grid

    fig, ax = plt.subplots(figsize=(3.5, 3.5))
    if x.ndim == 4:
        grid = image_grid(x[:64])
        ax.imshow(grid.squeeze(-1) if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=255,
                  interpolation="nearest")
        ax.axis("off")
    else:
        ax.scatter(*x[:2048, :2].T, s=2)
        ax.set(xlim=(-1.5, 1.5), ylim=(-1.5, 1.5), aspect="equal", xlabel="x_1", ylabel="x_2")
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
