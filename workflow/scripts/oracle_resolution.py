"""Does the oracle beat sCT on W2 once W2 can see it? sCT's two-Gaussian runs per coupling and their oracle
sCD-exact scored at a resolution where the empirical W2's own floor is below the gaps between the runs.

    python workflow/scripts/oracle_resolution.py --params params/oracle.yaml --out analysis/oracle_resolution.md
    python workflow/scripts/oracle_resolution.py [--params params/default.yaml] [--n 8192]   # exploratory

The suite's W2 (the evaluate stage) compares 2048 samples with the 2048 held-out points; two independent
2048-point draws of the two-Gaussian mixture itself are ~0.07 apart in W2, the same order as every
run's score (0.11-0.14), so W2 at that n cannot rank the oracle (docs/evidence.md). Here each final EMA
model draws n samples with the suite's own sampler (the sample stage's: `stages.draw_samples`), and each
is compared by exact W2 (`ctcoupling.measure.distances.w2_exact`) with n fresh points of the exact mixture
(the data set's means and std, seed `reference_seed` + the run's seed, the same for every run of a seed:
paired), drawn stratified: each mode holds its exact share n / K. Between modes 1 apart W2 is dominated by
the modes' weights, and an i.i.d. reference's binomial share (off by ~ sqrt(n) / 2 points) would add its
own ~ n^(-1/4) to every score; the stratified one adds only the within-mode noise. The floor row is what a
perfect model scores: an i.i.d. draw of the exact mixture (`ctcoupling.data.datasets.toy_2d`, as the
prepare stage draws it) against the same reference. Oracle - coupling per seed is tested with the suite's
paired t (ctcoupling.results.stats.paired, the exact sign-flip p beside it), Holm-adjusted over the
couplings (stats.holm); a result that is not significant carries its minimal detectable effect.

Two modes. With a params file that has a `resolution` section (params/oracle.yaml: the confirmatory test,
its design written there before its runs) the design, seeds and level come from it, the table decides its
claims and goes to --out (the pipeline's `oracle_resolution` rule: `make oracle`). Without one
(params/default.yaml) the runs of `evidence.continuous` are re-scored at --n: exploratory, those seeds'
n = 2048 scores having been seen; the table is printed. Scoring runs in --jobs processes (default: the
params' `threads` per job times the jobs Snakemake gave the rule, i.e. its threads).
"""
from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

import ctcoupling  # noqa: F401, E402  (first: it pins the CPU kernels before numpy and torch load, core/portable.py)
import numpy as np
import torch

from ctcoupling.config import params as P
from ctcoupling.core import artifacts
from ctcoupling.core.errors import UserError
from ctcoupling.data import datasets
from ctcoupling.measure import distances
from ctcoupling.pipeline.stages import draw_samples, load_run
from ctcoupling.results import stats

DEFAULT_REFERENCE_SEED = 10_000  # the exploratory mode's: the exact mixture's draw for seed s is default_rng(10_000 + s)


def design(params: dict, source: str, n: int | None) -> dict:
    """The study's design: from the `resolution` section (confirmatory), else `evidence.continuous`'s runs on
    the two Gaussians at --n (exploratory, the level and correction of `evidence`)."""
    if "resolution" in params:
        d = dict(params["resolution"], confirmatory=True)
        if n is not None and n != d["n"]:
            raise UserError(f"--n {n}: {source} pre-registers n = {d['n']}; a confirmatory test's n is not changed")
        return d
    ev = params.get("evidence", {})
    if "continuous" not in ev:
        raise UserError(f"{source}: neither a `resolution` section (a confirmatory test) nor evidence.continuous "
                        "(the sCT family and its oracle)")
    cont = ev["continuous"]
    return {"dataset": "two_gaussians", "objective": cont["objective"], "oracle": cont["oracle"],
            "couplings": cont["couplings"], "n": n or 8192, "reference_seed": DEFAULT_REFERENCE_SEED,
            "alpha": ev["alpha"], "power": ev["power"], "permutation_from": ev["permutation_from"],
            "exclude_seeds": ev["pilot_seeds"], "confirmatory": False}


def stratified(means: np.ndarray, std: float, n: int, seed: int) -> np.ndarray:
    """n points of the exact mixture, each mode its exact share n / K (toy_2d's draw, the modes fixed)."""
    rng = np.random.default_rng(seed)
    k = np.repeat(np.arange(len(means)), n // len(means))
    return (means[k] + std * rng.standard_normal((n, 2))).astype(np.float32)


def score(job: tuple) -> float:
    """One W2 (a process-pool task): ('floor', spec, seed) or ('run', experiment, seed), against the seed's
    stratified reference."""
    kind, what, seed, d, means, std, threads = job
    torch.set_num_threads(threads)
    ref = stratified(means, std, d["n"], d["reference_seed"] + seed)
    if kind == "floor":
        x = datasets.toy_2d(what["source"], d["n"], np.random.default_rng(d["reference_seed"] + seed + 1000), std)
    else:
        spec = what.config["sample"]
        x = draw_samples(what, load_run(what.name, spec["use_ema"]), n=d["n"])
    return distances.w2_exact(x, ref)


def table(d: dict, seeds: list[int], w2: dict, source: str) -> str:
    oracle = np.array([w2["oracle", s] for s in seeds])
    floor = np.array([w2["floor", s] for s in seeds])
    tests = {c: stats.paired(oracle, np.array([w2[c, s] for s in seeds]), alpha=d["alpha"],
                             permutation_from=d["permutation_from"]) for c in d["couplings"]}
    adjusted = dict(zip(tests, stats.holm([r["p"] for r in tests.values()], d["alpha"])))
    kind = "Confirmatory" if d["confirmatory"] else "Exploratory"
    lines = [f"# sCD-exact (the oracle) against sCT per coupling: W2 at a resolution that sees it ({d['dataset']})",
             "",
             f"{kind}. Design ({source}" + (", `resolution`, written before its runs" if d["confirmatory"] else
                                            ", `evidence.continuous`: its seeds' n = 2048 scores were seen") + "): "
             f"for each coupling c of {', '.join(P.LABEL.get(c, c) for c in d['couplings'])}, the claim 'the oracle "
             f"reaches a lower W2 than sCT-c'. Endpoint: exact W2 of the final EMA model's n = {d['n']} samples (the "
             f"suite's sampler) to n = {d['n']} points of the exact mixture, each mode its exact share (seed "
             f"{d['reference_seed']} + the run's seed: one reference per seed, shared by its runs). Test: paired t on "
             f"the per-seed differences oracle - sCT-c (exact sign-flip p from {d['permutation_from']} seeds), Holm "
             f"over the {len(tests)} claims at family-wise alpha {d['alpha']}; a claim that is not significant "
             f"carries the smallest difference its seeds detect with power {d['power']} (MDE). Seeds: "
             f"{', '.join(map(str, seeds))}. Floor: an i.i.d. draw of the exact mixture against the same reference "
             "(what a perfect model scores).",
             "",
             "| run | W2 mean +- sd | seeds the oracle is lower | oracle - run [95% CI] | p | p sign-flip | p Holm "
             "| verdict: the oracle is lower | MDE |",
             "|---|---|---|---|---|---|---|---|---|",
             f"| floor (an i.i.d. exact draw) | {floor.mean():.4f} +- {floor.std(ddof=1):.4f} | | | | | | | |",
             f"| sCD-exact (the oracle) | {oracle.mean():.4f} +- {oracle.std(ddof=1):.4f} | | | | | | | |"]
    for c, r in tests.items():
        v = np.array([w2[c, s] for s in seeds])
        verdict = stats.verdict(r["effect"], adjusted[c], alpha=d["alpha"])
        mde = f"{stats.mde_paired(r['sd'], r['n'], d['alpha'], d['power']):.4f}" if verdict == "not significant" \
            else ""
        perm = f"{r['p_perm']:.2g}" if np.isfinite(r["p_perm"]) else ""
        lines.append(f"| sCT-{P.LABEL.get(c, c)} | {v.mean():.4f} +- {v.std(ddof=1):.4f} | {int((oracle < v).sum())}/"
                     f"{len(seeds)} | {r['effect']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}] | {r['p']:.2g} | {perm} "
                     f"| {adjusted[c]:.2g} | {verdict} | {mde} |")
    lines += ["", "Per seed (W2):", "", "| seed | floor | oracle | " + " | ".join(
        f"sCT-{P.LABEL.get(c, c)}" for c in d["couplings"]) + " |", "|---" * (3 + len(d["couplings"])) + "|"]
    for s in seeds:
        lines.append(f"| {s} | " + " | ".join(f"{w2[k, s]:.4f}" for k in ["floor", "oracle", *d["couplings"]]) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params/default.yaml")
    ap.add_argument("--n", type=int, default=None, help="samples per run and reference points (exploratory mode; "
                    "default 8192)")
    ap.add_argument("--out", default=None, help="write the Markdown table here (atomically) instead of printing it")
    ap.add_argument("--jobs", type=int, default=1, help="scoring processes (default 1)")
    a = ap.parse_args(argv)

    params = P.load(a.params)
    d = design(params, a.params, a.n)
    spec = params["datasets"].get(d["dataset"], {"source": ""})
    mix = datasets.mixture(spec)
    if mix is None:
        raise UserError(f"{a.params}: {d['dataset']} is not a Gaussian mixture (its exact law is needed)")
    means, std = mix
    if d["n"] % len(means):
        raise UserError(f"n = {d['n']}: not a multiple of the {len(means)} modes (the reference holds each mode's "
                        "exact share)")
    rows = {c: (d["objective"], c) for c in d["couplings"]} | {"oracle": (d["oracle"], "ic")}
    exps = {(label, e.seed): e for e in P.experiments(params) for label, (obj, c) in rows.items()
            if e.dataset == d["dataset"] and e.objective == obj and e.coupling == c}
    seeds = sorted({s for c, s in exps if c == "oracle"} - set(d.get("exclude_seeds", [])))
    missing = [f"{obj}/{c} seed {s}" for s in seeds for label, (obj, c) in rows.items() if (label, s) not in exps]
    if missing or len(seeds) < 2:
        raise UserError(f"{a.params}: the grid lacks {d['dataset']} runs of " + (", ".join(missing) or
                        "two seeds of the oracle"))

    jobs = [("floor", spec, s, d, means, std, params["threads"]) for s in seeds] + \
        [("run", exps[label, s], s, d, means, std, params["threads"]) for s in seeds for label in rows]
    keys = [("floor", s) for s in seeds] + [(label, s) for s in seeds for label in rows]
    with ProcessPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        w2 = dict(zip(keys, pool.map(score, jobs)))
    text = table(d, seeds, w2, a.params)
    if a.out:
        artifacts.write_text(a.out, text)
        print(f"oracle_resolution: {len(keys)} W2 at n = {d['n']} -> {a.out}", file=sys.stderr)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as e:
        sys.exit(f"oracle_resolution: {e}")
