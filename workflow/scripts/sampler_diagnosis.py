"""Why a coupling loses on an image set: its runs' final EMA models re-sampled three ways and scored
on the classifier's FID, with paired tests against IC.

    python workflow/scripts/sampler_diagnosis.py [--params params/default.yaml] [--dataset digits]
                                                 [--objective sct]

For each (coupling, seed) of the primary grid (`evidence.primary`; with `--objective` the continuous
family's `evidence.continuous`, whose oracle joins as a row of its own), the final checkpoint of
runs/DATASET-OBJECTIVE-COUPLING-sSEED/model.pt is sampled with
  1 step        one network evaluation from sigma_max,
  2 steps       the suite's sampler (`sample.t_mid`, fresh independent noise at the second step),
  2 re-paired   the same, the fresh noise re-paired to the first step's outputs by OT (sony/vct),
from the same noise as the sample stage (seed + sample.seed_offset, `evaluate.curve.n` samples), and
scored like the curve stage (FID on the data set's classifier features). Each coupling's per-seed
difference from IC under each sampler is tested with the suite's paired t (ctcoupling.results.stats.paired).
It separates the sampler's share of a gap (absent at 1 step) from the trained model's. Exploratory: it
decides no claim (analysis/claims.md decides them, on the suite's own sampler); it is the measurement
docs/evidence.md quotes for the digits claims that do not hold. Needs a finished `make run`; prints a
Markdown table; reads runs/, writes nothing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

import ctcoupling  # noqa: F401, E402  (first: it pins the CPU kernels before numpy and torch load, core/portable.py)
import numpy as np
import torch

from ctcoupling.data import datasets
from ctcoupling.measure import fidelity
from ctcoupling.results import stats
from ctcoupling.config import params as P
from ctcoupling.data.classifier import EXTRACTOR
from ctcoupling.core.errors import UserError
from ctcoupling.pipeline.stages import classifier_file, data_npz, draw_samples, load_run

SAMPLERS = {"1 step": ([], False), "2 steps": (None, False), "2 re-paired": (None, True)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params/default.yaml")
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--objective", default=None,
                    help="the objective whose couplings are re-sampled (default: evidence.primary's)")
    a = ap.parse_args(argv)

    params = P.load(a.params)
    torch.set_num_threads(params["threads"])
    ev = params["evidence"]
    objective = a.objective or ev["primary"]["objective"]
    if objective == ev["primary"]["objective"]:
        oracle = None
        couplings = ["ic"] + sorted({c[k] for c in ev["primary"]["claims"] for k in ("a", "b") if k in c} - {"ic"},
                                    key=list(params["couplings"]).index)
    elif objective == ev.get("continuous", {}).get("objective"):
        oracle = ev["continuous"]["oracle"]
        couplings = ["ic"] + [c for c in ev["continuous"]["couplings"] if c != "ic"]
    else:
        raise UserError(f"--objective {objective}: neither evidence.primary's nor evidence.continuous's objective")
    exps = {(e.coupling, e.seed): e for e in P.experiments(params)
            if e.dataset == a.dataset and e.objective == objective and e.coupling in couplings}
    if oracle:  # the oracle's row: its IC runs under the name `oracle`, tested against the objective's IC
        couplings.append("oracle")
        exps.update({("oracle", e.seed): e for e in P.experiments(params)
                     if e.dataset == a.dataset and e.objective == oracle and e.coupling == "ic"})
    seeds = sorted({s for c, s in exps if c == "ic"} - set(ev["pilot_seeds"]))
    prepared = datasets.load_prepared(data_npz(a.dataset))
    fid = {}
    for c in couplings:
        for s in seeds:
            e = exps.get((c, s))
            if e is None:
                raise UserError(f"{a.params}: no {a.dataset}-{oracle if c == 'oracle' else objective}-"
                                f"{'ic' if c == 'oracle' else c}-s{s} in the grid")
            fs = e.config["evaluate"]["fidelity"]
            if fs["features"] != "classifier":
                raise UserError(f"{a.params}: {e.name} is not scored on a classifier (evaluate.fidelity.features)")
            ref = fidelity.reference_uint8(prepared[f"x_{fs['reference']}"])
            run = load_run(e.name, True)
            for label, (t_mid, pair) in SAMPLERS.items():
                x = draw_samples(e, run, e.config["evaluate"]["curve"]["n"], t_mid, pair)
                fid[c, s, label] = fidelity.compute(
                    datasets.to_uint8(x), ref, EXTRACTOR, classifier_file(a.dataset), fidelity.cache_dir(),
                    f"{a.dataset}-{fs['reference']}", ["fid"], fs["batch"], "cpu")["fid"]
            print(f"{e.name}: " + ", ".join(f"{k} {fid[c, s, k]:.3f}" for k in SAMPLERS), file=sys.stderr)

    print(f"{a.dataset}, {objective}, final EMA checkpoints of seeds {', '.join(map(str, seeds))}: FID on the "
          f"classifier's features (lower is better); coupling - IC: paired mean [95% CI], paired t p (unadjusted)\n")
    print("| coupling | " + " | ".join(f"{k}: FID" for k in SAMPLERS) + " | "
          + " | ".join(f"{k}: - IC" for k in SAMPLERS) + " |")
    print("|---" * (1 + 2 * len(SAMPLERS)) + "|")
    for c in couplings:
        vals = {k: np.array([fid[c, s, k] for s in seeds]) for k in SAMPLERS}
        cells = [f"{v.mean():.3f} +- {v.std(ddof=1):.3f}" for v in vals.values()]
        for k in SAMPLERS:
            if c == "ic":
                cells.append("–")
                continue
            r = stats.paired(vals[k], np.array([fid["ic", s, k] for s in seeds]), permutation_from=len(seeds) + 1)
            cells.append(f"{r['effect']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}], p {r['p']:.2g}")
        print(f"| {c} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
