"""Training curves: a metric against the training step, per run and over seeds (no I/O).

A curve is the list of rows the curve stage writes, one per snapshot: {"step", metric: value, ...}.
Both papers report the best checkpoint along training; we report the best and the final one.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# pandas and .stats (scipy.stats) are imported inside the functions over seeds: the curve stage, which
# needs only primary_metric and best_and_final, starts 0.7 s sooner without them.

PRIMARY = ("fid", "w2")  # the first one a curve has is the metric runs are ranked by (lower is better)


def primary_metric(row: dict) -> str:
    for m in PRIMARY:
        if m in row:
            return m
    raise ValueError(f"a curve row has none of the metrics {PRIMARY}: {sorted(row)}")


def best_and_final(rows: list[dict], metric: str) -> dict:
    """The best (lowest; the earliest on ties) and the final snapshot's value of `metric`."""
    if not rows:
        raise ValueError("an empty curve")
    best = min(rows, key=lambda r: (r[metric], r["step"]))
    return {"metric": metric, "best": {"step": best["step"], "value": best[metric]},
            "final": {"step": rows[-1]["step"], "value": rows[-1][metric]}}


def steps_to_reach(steps, values, level: float) -> float:
    """The step at which the curve first gets down to `level`, interpolated linearly in log(metric)
    between the snapshots around the crossing (so that runs crossing within one snapshot interval
    still differ); the first snapshot's step if it is already there; inf where it never gets there."""
    prev = None
    for s, v in zip(steps, values):
        if v <= level:
            if prev is None or prev[1] <= 0 or v <= 0 or prev[1] == v:
                return float(s)
            frac = (math.log(prev[1]) - math.log(level)) / (math.log(prev[1]) - math.log(v))
            return float(prev[0] + frac * (s - prev[0]))
        prev = (s, v)
    return math.inf


def band(table: pd.DataFrame, metric: str, by: list[str]) -> pd.DataFrame:
    """Mean and 95% t interval over seeds of `metric` at each step, per group `by` (long curve table
    with a `seed` column). Columns: by..., step, seeds, mean, low, high."""
    import pandas as pd

    from ctcoupling.results import stats

    rows = []
    for key, g in table.groupby(by + ["step"], sort=True):
        m, lo, hi = stats.mean_ci(g[metric].to_numpy())
        rows.append(dict(zip(by + ["step"], key)) | {"seeds": len(g), "mean": m, "low": lo, "high": hi})
    return pd.DataFrame(rows)


def per_seed(table: pd.DataFrame, metric: str, level: float | None = None) -> pd.DataFrame:
    """Per (coupling, seed): best and final value of `metric`, and the steps to reach `level`."""
    import pandas as pd

    rows = []
    for (coupling, seed), g in table.sort_values("step").groupby(["coupling", "seed"], sort=True):
        v = g[metric].to_numpy()
        row = {"coupling": coupling, "seed": seed, "best": float(v.min()), "final": float(v[-1]),
               "best_step": int(g["step"].to_numpy()[int(np.argmin(v))])}
        if level is not None:
            row["steps_to_level"] = steps_to_reach(g["step"], v, level)
        rows.append(row)
    return pd.DataFrame(rows)
