"""The pilot's rules (ctcoupling.results.pilot) on constructed runs whose right answers are known."""
import numpy as np
import pandas as pd
import pytest

from ctcoupling.results import evidence
from ctcoupling.results import pilot
from ctcoupling.results import stats

EV = evidence.DEFAULT_EVIDENCE | {"pilot_seeds": [100, 101, 102], "primary": {
    "objective": "ict", "datasets": ["d"], "claims": [
        {"question": "GC beats IC", "a": "gc", "b": "ic"},
        {"question": "GC converges faster than IC", "a": "gc", "b": "ic", "endpoint": "steps"}]}}


def _curve(objective, coupling, seed, finals, steps, shape):
    """A run's curve: `shape(frac)` times its final value at each of 8 snapshots."""
    return [{"dataset": "d", "objective": objective, "coupling": coupling, "seed": seed, "step": int(steps * f),
             "w2": finals * shape(f)} for f in np.linspace(0.125, 1, 8)]


def _runs(spec):
    """spec: (objective, coupling, steps, shape, finals per seed) -> (results, curves)."""
    rows = []
    for objective, coupling, steps, shape, finals in spec:
        for seed, final in zip((100, 101, 102), finals):
            rows += _curve(objective, coupling, seed, final, steps, shape)
    curves = pd.DataFrame(rows)
    results = curves[curves.step == curves.groupby(["objective", "coupling"]).step.transform("max")].drop(columns="step")
    return results, curves


def flat(f):
    return 1.0 if f > 0.5 else 2.0


def falling(f):
    return 1.0 / f  # -25% over the last quarter: not flat


def test_schedule_rule_takes_the_best_flat_candidate_and_fewer_steps_on_a_tie():
    results, curves = _runs([("short", "ic", 1000, flat, [1.02, 1.03, 1.01]),
                             ("long", "ic", 2000, flat, [1.0, 1.0, 1.0]),
                             ("unconverged", "ic", 1000, falling, [0.5, 0.5, 0.5])])
    steps = {("d", "short"): 1000, ("d", "long"): 2000, ("d", "unconverged"): 1000}
    spec = {"coupling": "ic", "tie": 0.05, "candidates": {"d": ["short", "long", "unconverged"]}}
    got = pilot.choose_schedule(results, curves, spec, steps, EV)["d"]
    # the unconverged candidate is lowest but fails the flatness test; short is within 5% of long, fewer steps
    assert got["choice"] == "short" and got["flat"]
    assert {r["objective"]: r["flat"] for r in got["rows"]} == {"short": 3, "long": 3, "unconverged": 0}
    strict = pilot.choose_schedule(results, curves, spec | {"tie": 0.0}, steps, EV)["d"]
    assert strict["choice"] == "long"
    none = pilot.choose_schedule(results, curves, spec | {"candidates": {"d": ["unconverged"]}}, steps, EV)["d"]
    assert none["choice"] == "unconverged" and not none["flat"] and "flagged" in none["why"]


def test_knob_rule_is_the_lowest_mean_final_metric_and_the_seed_count_detects_the_target():
    results, curves = _runs([("ict", "ic", 1000, flat, [1.0, 1.1, 0.9]),
                             ("ict", "gc", 1000, flat, [0.8, 0.95, 0.7]),
                             ("ict", "gc_mu1", 1000, flat, [0.9, 1.0, 0.85])])
    schedule = {"d": {"choice": "ict"}}
    couplings = {"gc": {"kind": "gc", "mu": 0.5}, "gc_mu1": {"kind": "gc", "mu": 1.0}, "ic": {"kind": "ic"}}
    knobs = pilot.choose_knobs(results, {"gc": ["gc", "gc_mu1"]}, schedule, couplings, 3)
    assert pilot.choose_knobs(results, {"gc": ["gc", "gc_mu1", "gc_mu03"]}, schedule, couplings, 3)[("d", "gc")][
        "choice"] is None  # a candidate that has not run: no choice yet
    assert knobs[("d", "gc")]["choice"] == "gc" and "mu = 0.5" in knobs[("d", "gc")]["why"]
    counts = pilot.seed_count(results, schedule, knobs, EV, max_seeds=10)
    final, speed = counts
    d = np.array([0.8, 0.95, 0.7]) - np.array([1.0, 1.1, 0.9])
    assert final["sd of differences"] == pytest.approx(np.std(d, ddof=1))
    assert final["effect to detect"] == pytest.approx(0.1 * 1.0) and final["alpha / m"] == pytest.approx(0.025)
    n = final["needed"]
    assert stats.mde_paired(np.std(d, ddof=1), n, 0.025) <= 0.1 < stats.mde_paired(np.std(d, ddof=1), n - 1, 0.025)
    assert speed["needed"] is None
    assert pilot.suite_seeds(counts, 10) == {"d": min(10, n)}
    assert pilot.suite_seeds(counts, 3) == {"d": 3}
