"""The pilot of the evidence protocol (params/pilot.yaml, docs/evidence.md): its rules applied to its runs.

Three phases, each a rule written in params `pilot` before its runs, on seeds no claim is decided on:
1. the schedule: per data set, the candidate objective (iCT's curriculum end s1, the steps) whose IC
   runs all pass the flatness test with the lowest seed-mean final metric (fewer steps on a tie);
2. each coupling's own knob (VC's kl_scale, GC's mu) by one rule: the lowest seed-mean final metric;
3. the seed count: per primary claim of the suite the pilot serves, the seeds its paired t-test needs
   to detect `evidence.target` of IC's metric at 80% power and Holm's strictest level alpha / m.

Inputs are tables (`results`: one row per run with its final metrics; `curves`: one row per snapshot)
and the params; nothing here reads files. `check` compares the suite's params with the choices.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ctcoupling.results import evidence as E
from ctcoupling.results import stats


def _final(results: pd.DataFrame, ds: str, obj: str, coupling: str, metric: str) -> np.ndarray:
    return E.values(results, ds, obj, coupling, metric)


def choose_schedule(results: pd.DataFrame, curves: pd.DataFrame, spec: dict, steps: dict, ev: dict) -> dict:
    """Phase 1. Per data set: {"rows": one per candidate, "choice": objective or None, "why": text}.
    `steps`: (data set, objective) -> the candidate's training steps."""
    out = {}
    for ds, candidates in spec["candidates"].items():
        metric = E.primary(results, ds)
        rows = []
        for obj in candidates:
            v = _final(results, ds, obj, spec["coupling"], metric)
            flat = E.run_flatness(curves, ds, obj, spec["coupling"], metric, ev["flatness"])
            if not len(v):
                continue
            changes = [f["change"] for f in flat.values()]
            rows.append({"objective": obj, "steps": steps[(ds, obj)], "runs": len(v),
                         "flat": sum(f["flat"] for f in flat.values()), "mean final": float(v.mean()),
                         "sd": float(v.std(ddof=1)) if len(v) > 1 else math.nan,
                         "worst change": max(changes, key=abs) if changes else math.nan})
        full = len(ev["pilot_seeds"])
        rows = [r | {"complete": r["runs"] == full} for r in rows]
        passing = [r for r in rows if r["flat"] == r["runs"] and r["complete"]]
        if passing:
            best = min(passing, key=lambda r: r["mean final"])
            near = [r for r in passing if r["mean final"] <= (1 + spec["tie"]) * best["mean final"]]
            choice = min(near, key=lambda r: (r["steps"], r["mean final"]))
            why = (f"{len(passing)} of {len(rows)} candidates flat in every run; lowest mean final {metric} "
                   f"{best['mean final']:.3g} ({best['objective']})"
                   + (f"; {choice['objective']} within {spec['tie']:.0%} of it with fewer steps"
                      if choice is not best else ""))
        elif any(r["complete"] for r in rows):
            choice = min((r for r in rows if r["complete"]), key=lambda r: abs(r["worst change"]))
            why = "no candidate flat in every run: the one whose worst run changes least (flagged)"
        else:
            out[ds] = {"rows": rows, "choice": None, "why": "no candidate has run on every pilot seed yet"}
            continue
        out[ds] = {"rows": rows, "choice": choice["objective"], "why": why, "flat": choice["flat"] == choice["runs"],
                   "metric": metric}
    return out


def choose_knobs(results: pd.DataFrame, knobs: dict, schedule: dict, couplings: dict, seeds: int) -> dict:
    """Phase 2. Per (data set, coupling kind): {"rows", "choice": coupling name, "why"}, at the data
    set's chosen objective. One rule for every knob: the candidate with the lowest seed-mean final metric,
    among those that ran on all `seeds` pilot seeds (no choice until every candidate has)."""
    out = {}
    for ds, sch in schedule.items():
        if sch["choice"] is None:
            continue
        metric = E.primary(results, ds)
        for kind, names in knobs.items():
            rows = []
            for name in names:
                v = _final(results, ds, sch["choice"], name, metric)
                if len(v):
                    rows.append({"coupling": name, "knob": _knob(couplings[name]), "runs": len(v),
                                 "mean final": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else math.nan})
            if rows and len(rows) == len(names) and all(r["runs"] == seeds for r in rows):
                best = min(rows, key=lambda r: r["mean final"])
                out[(ds, kind)] = {"rows": rows, "choice": best["coupling"], "metric": metric,
                                   "why": f"lowest mean final {metric}: {best['knob']}, {best['mean final']:.3g}"}
            else:
                out[(ds, kind)] = {"rows": rows, "choice": None, "metric": metric,
                                   "why": "not every candidate has run on every pilot seed yet"}
    return out


def _knob(coupling: dict) -> str:
    return (f"kl_scale = {coupling['kl_scale']:g}" if coupling["kind"] == "vc" else
            f"mu = {coupling['mu']:g}" if coupling["kind"] == "gc" else coupling["kind"])


def seed_count(results: pd.DataFrame, schedule: dict, knobs: dict, ev: dict, max_seeds: int) -> list[dict]:
    """Phase 3. Per primary claim with a paired t-test (the speed claim's censored test has no power
    formula): the pilot's sd of the per-seed differences, the effect to detect (`target` x IC's mean),
    Holm's strictest level alpha / m, and the seeds needed (at most `max_seeds`). A pilot run stands for
    a suite coupling by kind: the knob's choice for VC and GC, the coupling named as the kind otherwise."""
    out = []
    spec = ev["primary"]
    for ds in spec["datasets"]:
        sch = schedule.get(ds)
        if not sch or sch["choice"] is None:
            continue
        claims = [c for c in spec["claims"] if ds in c.get("datasets", [ds])]
        m = len(claims)
        for c in claims:
            if c.get("endpoint") == "steps":
                out.append({"data set": ds, "question": c["question"], "needed": None,
                            "why": "censored speed test: no power formula; it has the seeds of the others"})
                continue
            metric = c.get("metric") or E.primary(results, ds)
            a = (knobs.get((ds, c["a"])) or {}).get("choice") or c["a"]
            if "b" in c:
                b = (knobs.get((ds, c["b"])) or {}).get("choice") or c["b"]
                seeds, va, vb = E.matched(results, ds, sch["choice"], a, b, metric)
                ref = float(vb.mean()) if len(vb) else math.nan
            else:
                va = _final(results, ds, sch["choice"], a, metric)
                vb = np.full(len(va), float(c["against"]))
                ref = float(c["against"])
            if len(va) < 2:
                out.append({"data set": ds, "question": c["question"], "needed": None, "why": "not run yet"})
                continue
            ic = _final(results, ds, sch["choice"], "ic", metric)
            base = float(ic.mean()) if len(ic) and "b" in c else ref
            effect = ev["target"] * abs(base)
            sd = float(np.std(va - vb, ddof=1))
            alpha = ev["alpha"] / m
            needed = stats.seeds_needed(sd, effect, alpha, ev["power"]) if effect > 0 else None
            out.append({"data set": ds, "question": c["question"], "pilot runs": len(va), "sd of differences": sd,
                        "observed effect": float(np.mean(va - vb)), "effect to detect": effect,
                        "alpha / m": alpha, "needed": needed,
                        "why": ("" if needed is not None and needed <= max_seeds else
                                f"needs more than max_seeds = {max_seeds}: at {max_seeds} seeds it sees "
                                f"{stats.mde_paired(sd, max_seeds, alpha, ev['power']):.3g} "
                                f"({stats.mde_paired(sd, max_seeds, alpha, ev['power']) / abs(base):.0%} of IC)")})
    return out


COUNT_COLUMNS = ("data set", "question", "pilot runs", "sd of differences", "observed effect", "effect to detect",
                 "alpha / m", "needed", "why")


def suite_seeds(counts: list[dict], max_seeds: int) -> dict[str, int]:
    """Per data set: the seeds its primary runs need, the most any claim needs, capped at max_seeds."""
    out: dict[str, int] = {}
    for r in counts:
        if r.get("needed") is not None:
            out[r["data set"]] = min(max_seeds, max(out.get(r["data set"], 2), r["needed"]))
    return out


def check(suite: list, pilot_runs: list, schedule: dict, knobs: dict, seeds: dict[str, int], ev: dict) -> list[str]:
    """Whether the suite's params carry the pilot's choices: per primary data set its IC runs' objective
    and steps, its VC kl_scale and GC mu, and its seed count. `suite`, `pilot_runs`: params.Experiment
    lists. One line each, starting 'matches' or 'DIFFERS'."""
    lines = []
    obj = ev["primary"]["objective"]

    def find(exps, ds, objective, coupling):
        return next((e for e in exps if (e.dataset, e.objective, e.coupling) == (ds, objective, coupling)), None)

    for ds in ev["primary"]["datasets"]:
        sch = schedule.get(ds)
        if not sch or sch["choice"] is None:
            continue
        mine, chosen = find(suite, ds, obj, "ic"), find(pilot_runs, ds, sch["choice"], "ic")
        if mine is None or chosen is None:
            continue
        a = {k: v for k, v in mine.config["objective"].items()} | {"steps": mine.config["train"]["steps"]}
        b = {k: v for k, v in chosen.config["objective"].items()} | {"steps": chosen.config["train"]["steps"]}
        diff = {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
        lines.append(f"{'matches' if not diff else 'DIFFERS'}: {ds} schedule, the pilot's {sch['choice']} "
                     f"(s1 = {b.get('s1')}, {b['steps']} steps)"
                     + ("" if not diff else "; the suite has " + ", ".join(f"{k} = {x} (pilot {y})"
                                                                         for k, (x, y) in diff.items())))
        for kind, key in (("vc", "kl_scale"), ("gc", "mu")):
            k = knobs.get((ds, kind))
            run = find(suite, ds, obj, kind)
            if not k or k["choice"] is None or run is None:
                continue
            pilot_value = next(e for e in pilot_runs if e.coupling == k["choice"]).config["coupling"][key]
            ours = run.config["coupling"][key]
            lines.append(f"{'matches' if ours == pilot_value else 'DIFFERS'}: {ds} {kind} {key} = {ours:g} "
                         f"(the pilot's choice {pilot_value:g})")
        if ds in seeds:
            have = sorted({e.seed for e in suite if (e.dataset, e.objective, e.coupling) == (ds, obj, "ic")})
            lines.append(f"{'matches' if len(have) >= seeds[ds] else 'DIFFERS'}: {ds} seeds, {len(have)} in the "
                         f"suite, {seeds[ds]} needed")
    return lines


def _table(rows: list[dict]) -> str:
    return E.markdown_table([{k: "–" if v is None else E._fmt(v) if isinstance(v, float) else v for k, v in r.items()}
                             for r in rows])


def markdown(source: str, suite_source: str, spec: dict, ev: dict, schedule: dict, knobs: dict,
             counts: list[dict], seeds: dict[str, int], lines: list[str]) -> str:
    """analysis/pilot.md: each phase's rule, its table and choice, and whether the suite carries them."""
    text = (f"# The pilot ({source}) for {suite_source}\n\nSeeds {', '.join(map(str, ev['pilot_seeds']))}: no claim "
            "of the suite is decided on them. The rules are params `pilot`'s, written before these runs "
            "(docs/evidence.md).\n\n## Phase 1: the schedule\n\nPer data set, among the candidates whose every "
            f"{spec['schedule']['coupling'].upper()} run passes the flatness test (the fitted change of log(metric) "
            f"over the last {ev['flatness']['window']:.0%} within +-{ev['flatness']['max_change']:.0%}), the lowest "
            f"seed-mean final metric; a candidate with fewer steps within {spec['schedule']['tie']:.0%} of it wins.\n\n")
    for ds, s in schedule.items():
        text += f"### {ds}\n\n" + _table(s["rows"]) + f"\n**Choice: {s['choice']}**: {s['why']}.\n\n"
    text += ("## Phase 2: each coupling's own knob\n\nAt the chosen schedule, one rule for every knob: the candidate "
             "with the lowest seed-mean final metric. VC+GC takes both choices.\n\n")
    for (ds, kind), k in knobs.items():
        text += f"### {ds}, {kind}\n\n" + (_table(k["rows"]) if k["rows"] else "(not run)\n")
        text += f"\n**Choice: {k['choice']}**: {k['why']}.\n\n"
    text += (f"## Phase 3: the seed count\n\nPer primary claim: the seeds a paired t-test needs to detect "
             f"{ev['target']:.0%} of IC's metric at {ev['power']:.0%} power and Holm's strictest level alpha / m, "
             "from the pilot's sd of the per-seed differences.\n\n"
             + (_table([{k: r.get(k, "–") for k in COUNT_COLUMNS} for r in counts]) if counts else "(not run)\n"))
    text += ("\n**Seeds per data set**: " + (", ".join(f"{ds} {n}" for ds, n in seeds.items()) or "none yet")
             + f" (at most max_seeds = {spec['max_seeds']}).\n\n## Does the suite carry the choices?\n\n"
             + ("\n".join(f"- {x}" for x in lines) if lines else "(nothing to compare yet)") + "\n")
    return text
