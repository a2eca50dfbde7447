"""Training curves and the claims built on them: curves.py and evidence.py on fixed tables."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as S

from ctcoupling.results import curves
from ctcoupling.results import evidence
from ctcoupling.pipeline import dag


def test_best_and_final_pick_the_lowest_and_the_last():
    rows = [{"step": 10, "w2": 0.5}, {"step": 20, "w2": 0.2}, {"step": 30, "w2": 0.2}, {"step": 40, "w2": 0.3}]
    got = curves.best_and_final(rows, curves.primary_metric(rows[0]))
    assert got == {"metric": "w2", "best": {"step": 20, "value": 0.2}, "final": {"step": 40, "value": 0.3}}
    assert curves.primary_metric({"step": 1, "fid": 3.0, "w2": 1.0}) == "fid"


def test_steps_to_reach_interpolates_the_crossing_in_log_metric():
    want = 10 + 10 * (math.log(0.9) - math.log(0.5)) / (math.log(0.9) - math.log(0.4))
    assert curves.steps_to_reach([10, 20, 30], [0.9, 0.4, 0.1], 0.5) == pytest.approx(want)
    assert curves.steps_to_reach([10, 20, 30], [0.3, 0.2, 0.1], 0.5) == 10
    assert curves.steps_to_reach([10, 20, 30], [0.9, 0.8, 0.7], 0.5) == math.inf


def _table():
    rng = np.random.default_rng(0)
    rows = []
    for coupling, scale in (("ic", 1.0), ("gc", 0.6)):
        for seed in range(3):
            for step in (100, 200, 300, 400):
                rows.append({"dataset": "d", "objective": "ict", "coupling": coupling, "seed": seed, "step": step,
                             "w2": scale / step * 100 * (1 + 0.01 * rng.standard_normal())})
    return pd.DataFrame(rows)


def test_band_is_the_t_interval_over_seeds_at_each_step():
    t = _table()
    b = curves.band(t[t.coupling == "ic"], "w2", ["coupling"])
    assert list(b["step"]) == [100, 200, 300, 400] and set(b["seeds"]) == {3}
    v = t[(t.coupling == "ic") & (t.step == 200)]["w2"].to_numpy()
    lo, hi = S.t.interval(0.95, 2, loc=v.mean(), scale=S.sem(v))
    row = b[b.step == 200].iloc[0]
    assert row["mean"] == pytest.approx(v.mean()) and row["low"] == pytest.approx(lo) and row["high"] == pytest.approx(hi)


EV = evidence.DEFAULT_EVIDENCE | {"primary": {"objective": "ict", "datasets": ["d"], "claims": [
    {"question": "GC beats IC", "a": "gc", "b": "ic"},
    {"question": "GC converges faster than IC", "a": "gc", "b": "ic", "endpoint": "steps"}]}}


def test_speed_claim_finds_the_faster_coupling():
    t = _table()
    results = t[t.step == 400].drop(columns="step")
    row = evidence.measure_claim(EV["primary"]["claims"][1], "d", "ict", results, t, EV)
    # GC's curve is 0.6x IC's: it reaches 1.1x IC's final value near step 220, IC near step 360
    assert row["value a"].startswith("median 2") and "reached 3/3" in row["value a"]
    assert row["effect"] < 0 and row["p"] == pytest.approx(2 / 2**3)  # all 3 seeds faster: the exact floor


def test_flatness_tells_falling_from_flat_from_rising():
    steps = [100, 200, 300, 400]
    falling = evidence.flatness(steps, [100 / s for s in steps], 0.25, 0.10)  # 1/step: -25% from 300 to 400
    assert falling["change"] == pytest.approx(300 / 400 - 1) and not falling["flat"] and falling["points"] == 2
    assert evidence.flatness(steps, [1.0] * 4, 0.25, 0.10) == {"change": 0.0, "flat": True, "points": 2}
    rising = evidence.flatness([0, 100, 200, 300, 400, 500, 600, 700, 800], [1, 1, 1, 1, 1, 1, 1.0, 1.1, 1.21], 0.25, 0.1)
    assert rising["change"] == pytest.approx(0.21) and not rising["flat"]  # exact exponential growth: the fit is exact


def test_primary_claims_are_paired_and_holm_corrected_within_the_family():
    t = _table()
    results = t[t.step == 400].drop(columns="step")
    rows = evidence.primary_claims(results, t, EV)
    final = rows[0]
    a = results[results.coupling == "gc"].sort_values("seed")["w2"].to_numpy()
    b = results[results.coupling == "ic"].sort_values("seed")["w2"].to_numpy()
    assert final["p"] == pytest.approx(S.ttest_rel(a, b).pvalue)
    from statsmodels.stats.multitest import multipletests

    assert [r["p adj"] for r in rows] == pytest.approx(list(multipletests([r["p"] for r in rows], method="holm")[1]))
    assert final["verdict"] == "holds" and final["m"] == 2 and final["family"] == "primary, d"
    table = evidence.opening_table(rows, EV)
    assert table.splitlines()[0] == "| question | d |" and "**holds**" in table
    assert "GC converges faster than IC" in table



def test_run_summary_names_the_results_the_time_and_the_opening_table():
    t = _table()
    results = t[t.step == 400].drop(columns="step")
    table = evidence.opening_table(evidence.primary_claims(results, t, EV), EV)
    claims = (f"# Paper claims\n\n## The answers (primary claims)\n\nEach cell: ...\n\n{table}\n"
              "**What this mirror can say.** prose\n\n## Design\n\n| not | this |\n")
    text = dag.run_summary(claims, 3725.4, "analysis", ["a.png", "b.png"])
    first, *rest = text.splitlines()
    assert first.startswith("ctcoupling: done in 1:02:05 (h:mm:ss). Results in analysis/") and "a.png, b.png" in first
    assert rest == ["The answers (analysis/claims.md):", *table.strip().splitlines()]  # not the design's table
    assert dag.run_summary(None, 59.6, "analysis", []).splitlines()[0].startswith("ctcoupling: done in 0:01:00")
    # a study's params (the pilot's, a confirmatory test's) make one file: that file, not the suite's claims
    study = dag.run_summary(claims, 61, "analysis", ["a.png"], study="analysis/oracle_resolution.md")
    assert study == "ctcoupling: done in 0:01:01 (h:mm:ss). Results in analysis/oracle_resolution.md.\n"

def test_pilot_seeds_never_decide_a_primary_claim():
    t = _table()
    results = t[t.step == 400].drop(columns="step")
    ev = EV | {"pilot_seeds": [2]}
    (final, speed) = evidence.primary_claims(results, t, ev)
    assert final["seeds"] == [0, 1] and speed["seeds"] == [0, 1]


def test_not_significant_comes_with_the_smallest_detectable_effect():
    rows = [{"dataset": "d", "objective": "ict", "coupling": c, "seed": s, "w2": w}
            for c, ws in (("gc", [1.0, 1.2, 0.8]), ("ic", [1.05, 1.1, 0.9])) for s, w in enumerate(ws)]
    results = pd.DataFrame(rows)
    ev = EV | {"primary": EV["primary"] | {"claims": EV["primary"]["claims"][:1]}}
    (row,) = evidence.primary_claims(results, results.assign(step=1), ev)
    d = np.array([1.0, 1.2, 0.8]) - np.array([1.05, 1.1, 0.9])
    assert row["verdict"] == "not significant"
    assert row["mde"] == pytest.approx(evidence.stats.mde_paired(np.std(d, ddof=1), 3, 0.05))
    assert "too few seeds to say" in evidence.cell(row)  # an effect as large as IC's W2 itself could go unseen


def test_one_seed_is_not_tested():
    rows = [{"dataset": "d", "objective": "ict", "coupling": c, "seed": 0, "w2": w} for c, w in (("gc", 1.0), ("ic", 2.0))]
    results = pd.DataFrame(rows)
    ev = EV | {"primary": EV["primary"] | {"claims": EV["primary"]["claims"][:1]}}
    (row,) = evidence.primary_claims(results, results.assign(step=1), ev)
    assert row["verdict"] == "not tested" and "fewer than 2" in row["test"]


def test_ablation_claim_is_paired_on_the_same_seeds():
    t = _table()
    variant = t[t.coupling == "gc"].assign(objective="ict_s320", coupling="ic")  # 0.6x the reference's curve
    curves_t = pd.concat([t[t.coupling == "ic"], variant], ignore_index=True)
    results = curves_t[curves_t.step == 400].drop(columns="step")
    ab = {"dataset": "d", "objective": "ict_s320", "coupling": "ic", "ref_objective": "ict", "ref_coupling": "ic",
          "seeds": [0, 1, 2], "change": {"objective.s1": (320, 1280)}}
    (row,) = evidence.secondary_claims(results, curves_t, {"ic": {"kind": "ic"}}, EV, [ab])
    assert row["question"].startswith("objective.s1 = 320 (not 1280) helps (ict_s320/ic vs ict/ic")
    va = variant[variant.step == 400].sort_values("seed")["w2"].to_numpy()
    vb = t[(t.coupling == "ic") & (t.step == 400)].sort_values("seed")["w2"].to_numpy()
    assert row["p"] == pytest.approx(S.ttest_rel(va, vb).pvalue) and row["verdict"] == "holds"
    assert row["family"] == "exploratory ablations, d"


def test_ablations_figure_draws_one_panel_per_ablation():
    import io

    from matplotlib import image

    from ctcoupling.results import figures

    t = _table()
    variant = t[t.coupling == "gc"].assign(objective="ict_s320", coupling="ic")
    ab = {"dataset": "d", "objective": "ict_s320", "coupling": "ic", "ref_objective": "ict", "ref_coupling": "ic",
          "seeds": [0, 1, 2], "change": {"objective.s1": (320, 1280)}}
    png = figures.ablations_figure(pd.concat([t, variant]), [ab, ab | {"seeds": [0, 1]}], {"d": "w2"},
                                   evidence.describe_change)
    height, width, _ = image.imread(io.BytesIO(png)).shape
    assert width > 1.8 * height  # two panels side by side, the unused third removed


def _theory_record(scale_gc: float, rng) -> dict:
    ts = [0.1, 1.0, 10.0, 80.0]
    disc = []
    for c, f in (("IC", 1.0), ("OT", 0.7), ("GC", scale_gc)):
        for t in ts:
            disc.append({"coupling": c, "t": t, "estimator": f * (1 + 0.05 * rng.standard_normal()) / (1 + t) ** (c != "IC"),
                         "exact": None})
    trans = [{"coupling": "IC", "t": 0.0, "cost": 2.0}, {"coupling": "OT", "t": 0.0, "cost": 1.3}]
    trans += [{"coupling": "GC", "t": t, "cost": 1.1 + 0.01 * t} for t in ts]
    return {"tables": {"discrepancy": disc, "transport": trans}}


def test_theory_claims_over_seeds_test_each_seed_number_against_zero():
    rng = np.random.default_rng(1)
    recs = {"d": [_theory_record(0.5, rng) for _ in range(3)]}
    rows = {r["metric"]: r for r in evidence.theory_seed_claims(recs)}
    gc_ot = rows["log R~_GC / R~_OT (mean over t)"]
    per_seed = [evidence._theory_numbers(r)["log R~_GC / R~_OT (mean over t)"][0] for r in recs["d"]]
    want = S.ttest_1samp(per_seed, 0.0)
    assert gc_ot["verdict"] == "holds" and float(gc_ot["p"]) == pytest.approx(want.pvalue, rel=0.05)
    assert gc_ot["p adj. (Holm)"].endswith(f"(m = {len(rows)})")
    # GC's c(t) is 1.1-1.9 against c(0) = 2: below it; against c_OT = 1.3 it is above from t = 10 on
    assert rows["log c_GC(t) / c(0) (mean over t)"]["verdict"] == "holds"
    assert rows["Spearman rho(t, relative gap R~_IC vs R~_GC)"]["seeds"] == "3"
    assert float(rows["log R~_OT / R~_IC (mean over t)"]["seed mean [95% CI]"].split()[0]) < 0


def test_underflow_floor_leaves_rounding_level_discrepancies_out():
    floor = evidence.underflow_floor(64)
    assert floor == np.finfo(np.float64).eps * 64
    rec = {"tables": {"discrepancy": [
        {"coupling": "IC", "t": 0.02, "exact": 2.8e-28, "estimator": 60.0},
        {"coupling": "VC", "t": 0.02, "exact": 1.0e-19, "estimator": 50.0},
        {"coupling": "IC", "t": 1.0, "exact": 2.0, "estimator": 2.1}, {"coupling": "VC", "t": 1.0, "exact": 1.0, "estimator": 1.1}],
        "transport": []}}
    assert evidence.floored_times(rec, 64) == [0.02]
    got = evidence._theory_numbers(rec, 64)["log R~_VC / R~_IC exact (mean over t)"][0]
    assert got == pytest.approx(math.log(0.5))  # only t = 1; without the floor t = 0.02's log(3.6e8) would dominate
    unfloored = evidence._theory_numbers(rec)["log R~_VC / R~_IC exact (mean over t)"][0]
    assert unfloored == pytest.approx((math.log(1e-19 / 2.8e-28) + math.log(0.5)) / 2)


def test_kl_scale_trade_off_is_a_corrected_family_and_says_which_kl_scale_gives_both():
    """VCT Fig. 1's two claims per kl_scale, paired with IC on the test seeds and Holm within the family;
    kl_decisions names the kl_scale whose two claims both hold."""
    rng = np.random.default_rng(0)
    rows = []
    for s in range(5):
        rows.append({"dataset": "d", "objective": "ict", "coupling": "ic", "seed": s, "w2": 1.0,
                     "between_modes": 0.10 + 0.001 * s})
        for c, acc, bm in (("vc_kl1", 0.95, 0.30), ("vc_kl30", 0.9, 0.02)):
            rows.append({"dataset": "d", "objective": "ict", "coupling": c, "seed": s, "w2": 1.0,
                         "mode_accuracy": acc + 0.01 * rng.standard_normal(),
                         "between_modes": bm + 0.001 * rng.standard_normal(),
                         "aggregate_var_min": 0.5, "aggregate_var_max": 0.6, "posterior_kl": 1.0})
    results = pd.DataFrame(rows)
    couplings = {"ic": {"kind": "ic"}, "vc_kl1": {"kind": "vc", "kl_scale": 1}, "vc_kl30": {"kind": "vc", "kl_scale": 30}}
    sec = evidence.secondary_claims(results, results.assign(step=1), couplings, EV)
    kl = [r for r in sec if r["topic"] == "kl"]
    assert len(kl) == 4 and {r["family"] for r in kl} == {"exploratory kl, d"} and all(r["m"] == 4 for r in kl)
    verdict = {(r["a"], r["metric"]): r["verdict"] for r in kl}
    assert verdict == {("vc_kl1", "between_modes"): "contradicted", ("vc_kl1", "mode_accuracy"): "holds",
                       ("vc_kl30", "between_modes"): "holds", ("vc_kl30", "mode_accuracy"): "holds"}
    (_, text), = evidence.kl_decisions(results, {**couplings, "vc": couplings["vc_kl30"]}, sec)
    assert "kl_scale 30 gives both claims" in text
    a = results[results.coupling == "vc_kl30"].sort_values("seed")["between_modes"].to_numpy()
    b = results[results.coupling == "ic"].sort_values("seed")["between_modes"].to_numpy()
    row = next(r for r in kl if r["a"] == "vc_kl30" and r["metric"] == "between_modes")
    assert row["p"] == pytest.approx(S.ttest_rel(a, b).pvalue)
