"""The data behind DVC's plots (dvc.yaml `plots:`): one wide CSV per figure, x then one column per series.

DVC's stock Vega-Lite templates draw one line per y column (and, under `dvc plots diff`, one per git
revision), but cannot split a long table by the value of a column. So the long tables of analysis/
(curves.csv, the theory stage's records) are pivoted here into that shape, one file per figure:

- curves_{dataset}.csv: the data set's sample-quality metric against the training step, seed mean, one
  column per (objective, coupling) of the main runs (what analysis/curves_{dataset}.png draws);
- gc_mu_sweep.csv: the same for each mu of GC's sweep (GC paper Fig. 5; mu = 0 is IC);
- discrepancy_{dataset}.csv: R~_t against t per coupling (GC paper Fig. 2: the paper's denoiser estimator);
- transport_{dataset}.csv: c(t) against t: GC's curve, IC/OT/VC's constant cost (GC paper Fig. 3).

The column names come from the params alone (`*_series`), so `ctcoupling dag` can name them in dvc.yaml
before any result exists; the report stage writes the values. Seed means only: the 95% bands and the
per-seed values are in the figures and in curves.csv.
"""
from __future__ import annotations

import pandas as pd

from ctcoupling.config import params as P


def curve_metric(params: dict, dataset: str) -> str:
    """The metric a data set's curves are drawn in: FID where its runs score images on features, else W2."""
    scored = any(e.config["evaluate"]["fidelity"]["features"] != "none"
                 for e in P.experiments(params) if e.dataset == dataset)
    return "fid" if scored and not P.is_2d(params, dataset) else "w2"


def curve_series(params: dict, dataset: str) -> list[tuple[str, str, str]]:
    """(objective, coupling, column) of a data set's curves: its runs of the main names (all its runs
    where it has none), objectives in grid order, couplings in P.MAIN's order."""
    runs = [e for e in P.experiments(params) if e.dataset == dataset]
    runs = [e for e in runs if P.is_main(e)] or runs
    objectives = list(dict.fromkeys(e.objective for e in runs))
    pairs = {(e.objective, e.coupling) for e in runs}
    rank = {c: i for i, c in enumerate(P.MAIN)}
    ordered = sorted(pairs, key=lambda p: (objectives.index(p[0]), rank.get(p[1], len(rank)), p[1]))
    return [(o, c, f"{o} {P.LABEL.get(c, c)}") for o, c in ordered]


def mu_series(params: dict) -> tuple[str, str, list[tuple[str, str]]] | None:
    """(data set, objective, [(coupling, column)]) of GC's mu sweep (the first one, as its figure), by mu."""
    found = P.sweeps(params)["mu"]
    if not found:
        return None
    ds, obj = found[0]
    mus = P.mu_values(params["couplings"])
    names = {e.coupling for e in P.experiments(params) if (e.dataset, e.objective) == (ds, obj) and e.coupling in mus}
    return ds, obj, [(c, f"mu={mus[c]:g}") for c in sorted(names, key=lambda c: (mus[c], c))]


def theory_series(params: dict, dataset: str, table: str) -> list[str]:
    """The couplings the theory stage measures on a data set (its `measurements._couplings`): IC and OT
    always, VC, GC and VC+GC where the runs exist; the transport table has no VC+GC."""
    runs = P.theory_runs(params, dataset)
    kinds = ("vc", "gc") if table == "transport" else ("vc", "gc", "vcgc")
    return ["IC", "OT"] + [P.LABEL[k] for k in kinds if k in runs]


def _wide(long: pd.DataFrame, x: str, column: pd.Series, value: str, columns: list[str]) -> pd.DataFrame:
    """x, then the seed mean of `value` per column name, in `columns`' order (empty where unmeasured)."""
    table = long.assign(_col=column.values).groupby([x, "_col"])[value].mean().unstack("_col")
    return table.reindex(columns=columns).sort_index().reset_index()


def curves_table(curves: pd.DataFrame, params: dict, dataset: str) -> pd.DataFrame:
    series = curve_series(params, dataset)
    names = {(o, c): col for o, c, col in series}
    t = curves[curves.dataset == dataset]
    t = t[[(o, c) in names for o, c in zip(t.objective, t.coupling)]]
    column = pd.Series([names[(o, c)] for o, c in zip(t.objective, t.coupling)], dtype=object)
    return _wide(t, "step", column, curve_metric(params, dataset), [col for _, _, col in series])


def mu_table(curves: pd.DataFrame, params: dict) -> pd.DataFrame:
    ds, obj, series = mu_series(params)
    names = dict(series)
    t = curves[(curves.dataset == ds) & (curves.objective == obj) & curves.coupling.isin(list(names))]
    return _wide(t, "step", t.coupling.map(names), curve_metric(params, ds), [col for _, col in series])


def discrepancy_table(record: dict, columns: list[str]) -> pd.DataFrame:
    t = pd.DataFrame(record["tables"]["discrepancy"])
    return _wide(t, "t", t.coupling, "estimator", columns)


def transport_table(record: dict, columns: list[str]) -> pd.DataFrame:
    """c(t): GC's measured curve; IC, OT and VC have one cost, independent of t, drawn as a level line."""
    t = pd.DataFrame(record["tables"]["transport"])
    times = sorted(set(t.t[t.coupling == "GC"])) or [0.0]
    level = t[t.coupling != "GC"]
    flat = pd.concat([level.assign(t=s) for s in times], ignore_index=True)
    both = pd.concat([flat, t[t.coupling == "GC"]], ignore_index=True)
    return _wide(both, "t", both.coupling, "cost", columns)
