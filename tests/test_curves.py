"""Training curves and the claims built on them: curves.py and evidence.py on fixed tables."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as S

from ctcoupling import curves, evidence


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


def test_speed_claim_finds_the_faster_coupling():
    t = _table()
    results = t[t.step == 400].drop(columns="step")
    rows = evidence.speed_claims(t, results)
    (gc_ic,) = [r for r in rows if r["claim"].startswith("GC") and "than IC" in r["claim"]]
    assert gc_ic["verdict"] == "holds"  # GC's curve is 0.6x IC's: it reaches 1.1x IC's final value near step 220
    assert 200 < float(gc_ic["a"].split()[0]) < 240


def test_convergence_diagnosis_tells_falling_from_flat():
    t = _table()
    assert "still falling" in evidence.convergence(t, "d", "ict", "ic", "w2")
    flat = t.assign(w2=1.0)
    assert "flat" in evidence.convergence(flat, "d", "ict", "ic", "w2")
    rising = t.assign(w2=t.step.map({100: 1.0, 200: 0.5, 300: 0.5, 400: 0.8}))
    assert "got worse over the last quarter (+60%; seed-mean best at step 200)" in evidence.convergence(
        rising, "d", "ict", "ic", "w2")


def test_kl_scale_rule_picks_the_best_sampler_among_the_separated():
    table = pd.DataFrame({"kl_scale": [0.3, 3.0, 30.0], "mode_accuracy": [0.99, 0.7, 0.52], "w2": [0.3, 0.12, 0.11]})
    assert evidence.select_kl_scale(table) == 3.0  # 30 samples slightly better but its encoder collapsed
    assert evidence.select_kl_scale(table.assign(mode_accuracy=0.5)) is None


def test_kl_scale_selection_changes_the_main_runs_only_when_significantly_better():
    couplings = {"vc": {"kind": "vc", "kl_scale": 3}, "vc_kl1": {"kind": "vc", "kl_scale": 1}}

    def results(w2_kl1, w2_kl3):
        rows = [{"dataset": "d", "objective": "ict", "coupling": c, "seed": s, "w2": w}
                for c, ws in (("vc_kl1", w2_kl1), ("vc", w2_kl3)) for s, w in enumerate(ws)]
        return pd.DataFrame(rows)

    close = evidence._kl_decision(results([0.14, 0.16, 0.15], [0.15, 0.17, 0.16]), couplings, "d", "ict", 1.0, 3.0)
    assert close.endswith("not significantly lower, so the main runs' kl_scale stands.") and "3/3 seeds" in close
    far = evidence._kl_decision(results([0.10, 0.11, 0.10], [0.20, 0.21, 0.22]), couplings, "d", "ict", 1.0, 3.0)
    assert far.endswith("significantly lower, change `couplings.vc.kl_scale`.")
    one = evidence._kl_decision(results([0.10], [0.20, 0.21, 0.22]), couplings, "d", "ict", 1.0, 3.0)
    assert "too few seeds" in one
    assert evidence._kl_decision(results([0.1], [0.2]), couplings, "d", "ict", 3.0, 3.0).endswith("use it.")


def test_claim_with_one_seed_is_not_tested():
    row = evidence.claim_row("d", "X beats Y", "w2", np.array([1.0]), np.array([2.0]))
    assert row["verdict"] == "not tested" and row["p"] == "–"


def test_ablation_claim_compares_the_variant_with_its_reference_on_the_same_seeds():
    t = _table()
    variant = t[t.coupling == "gc"].assign(objective="ict_s320", coupling="ic")  # 0.6x the reference's curve
    curves_t = pd.concat([t[t.coupling == "ic"], variant], ignore_index=True)
    results = curves_t[curves_t.step == 400].drop(columns="step")
    ab = {"dataset": "d", "objective": "ict_s320", "coupling": "ic", "ref_objective": "ict", "ref_coupling": "ic",
          "seeds": [0, 1, 2], "change": {"objective.s1": (320, 1280)}}
    final, best = evidence.ablation_claims(results, curves_t, [ab])
    assert final["claim"].startswith("objective.s1 = 320 (not 1280) beats the reference")
    va = variant[variant.step == 400].sort_values("seed")["w2"].to_numpy()
    vb = t[(t.coupling == "ic") & (t.step == 400)].sort_values("seed")["w2"].to_numpy()
    want = S.ttest_ind(va, vb, equal_var=False)
    assert final["verdict"] == "holds" and float(final["p"]) == pytest.approx(want.pvalue, rel=1e-2)
    assert best["seeds"] == "3/3" and "ict_s320/ic" in final["claim"] and "vs ict/ic" in final["claim"]


def test_ablations_figure_draws_one_panel_per_ablation():
    import io

    from matplotlib import image

    from ctcoupling import figures

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
    assert gc_ot["verdict"] == "holds" and float(gc_ot["p"]) == pytest.approx(want.pvalue, rel=1e-2)
    # GC's c(t) is 1.1-1.9 against c(0) = 2: below it; against c_OT = 1.3 it is above from t = 10 on
    assert rows["log c_GC(t) / c(0) (mean over t)"]["verdict"] == "holds"
    assert rows["Spearman rho(t, relative gap R~_IC vs R~_GC)"]["seeds"] == "3"
    assert float(rows["log R~_OT / R~_IC (mean over t)"]["a"].split()[0]) < 0


def test_a_claim_without_a_measured_diagnosis_gets_the_spread_against_the_effect():
    a, b = np.array([1.0, 1.2, 0.8]), np.array([1.05, 1.25, 0.85])
    row = evidence.claim_row("d", "X beats Y", "w2", a, b)
    assert row["verdict"] == "not significant"
    assert row["diagnosis"] == f"seed-to-seed sd {np.std(a, ddof=1):.3g} against an effect of -0.05 (4.0x)"
