"""Does GC's predictor run away? The range of each run's EMA endpoints over its training, against the data's.

    python workflow/scripts/predictor_range.py [--params params/default.yaml] [--dataset two_gaussians]
                                               [--objective sct] [--couplings gc vcgc ic] [--n 2048]

GC trains on pairs whose data point is, with probability mu, the EMA model's own predicted endpoint
f_ema(x_t, t) (ctcoupling.train.couplings.GeneratorCoupling). That is a loop: an endpoint outside the data's
range becomes training data, which the model learns to produce, which the EMA feeds back. On the digits the
iCT VC+GC run diverged that way until `prediction_range` clamped the endpoint to the images' box
(params/default.yaml, `digits_gc_range`); on the two Gaussians nothing clamps it. For every run of the
params' grid with the data set, objective and couplings asked for (seeds as the grid has them; params/oracle.yaml
for the confirmatory seeds 5-14), each EMA snapshot (snapshots.pt) and the final EMA model (model.pt) map a
fixed draw, x_t = perturb(x, t, z) for the first --n training points x and standard normal z (seed 0, the
same for every run), at --times points of the kernel's range (TrigFlow: t from 0.05 to t_max; VE: sigma
log-spaced from sigma_min to sigma_max). The table gives, per run and step, the largest |coordinate| of the
endpoints over all times, divided by the data's own largest |coordinate|: 1 is the data's range; a run whose
final ratio exceeds --factor is flagged. VC+GC's predictor sees the encoder's z in training; here it sees the
standard normal z of every other run (the encoder's posterior is close to it, the KL term keeps it so).

Exploratory: it decides no claim; it is the measurement docs/evidence.md quotes for the sCT GC runs that
diverged. Needs the runs trained (`make run`, `make oracle`); prints a Markdown table; reads runs/, writes
nothing.
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

from ctcoupling.config import params as P
from ctcoupling.core.errors import UserError
from ctcoupling.data import datasets
from ctcoupling.pipeline.dag import data_npz
from ctcoupling.pipeline.stages import snapshot_points
from ctcoupling.train import training


def times(kernel, count: int) -> torch.Tensor:
    """`count` times across the kernel's range: TrigFlow t in [0.05, t_max], VE sigma log-spaced."""
    if kernel.kind == "trigflow":
        return torch.linspace(0.05, kernel.t_max, count)
    return torch.from_numpy(np.geomspace(kernel.sigma_min, kernel.sigma_max, count).astype(np.float32))


@torch.no_grad()
def endpoint_range(model, x: torch.Tensor, z: torch.Tensor, grid: torch.Tensor) -> float:
    """The largest |coordinate| of model(perturb(x, t, z), t) over the draw and the times in `grid`."""
    out = 0.0
    for t in grid:
        sigma = torch.full((len(x),), float(t))
        out = max(out, model(model.kernel.perturb(x, sigma, z), sigma).abs().max().item())
    return out


def run_ranges(name: str, x: torch.Tensor, z: torch.Tensor, count: int) -> dict[int, float]:
    """{step: endpoint range} over the run's EMA snapshots and its final EMA model (the curve stage's points)."""
    ckpt, points = snapshot_points(name)
    out = {}
    for point in points:
        model = training.load_model(ckpt, weights=point["ema"])
        out[point["step"]] = endpoint_range(model, x, z, times(model.kernel, count))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", default="params/default.yaml")
    ap.add_argument("--dataset", default="two_gaussians")
    ap.add_argument("--objective", default="sct")
    ap.add_argument("--couplings", nargs="+", default=["gc", "vcgc", "ic"])
    ap.add_argument("--n", type=int, default=2048, help="training points in the fixed draw")
    ap.add_argument("--times", type=int, default=8, help="times across the kernel's range")
    ap.add_argument("--factor", type=float, default=10.0, help="flag a final ratio above this")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        params = P.load(args.params)
        runs = [e for e in P.experiments(params) if (e.dataset, e.objective) == (args.dataset, args.objective)
                and e.coupling in args.couplings]
        if not runs:
            raise UserError(f"{args.params}: no run of {args.dataset} / {args.objective} with couplings "
                            f"{' '.join(args.couplings)} in its grid")
        x = torch.from_numpy(datasets.to_model_space(datasets.load_prepared(data_npz(args.dataset))["x_train"][:args.n]))
        z = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
        scale = x.abs().max().item()
        table = {e: run_ranges(e.name, x, z, args.times) for e in sorted(runs, key=lambda e: (e.coupling, e.seed))}
    except UserError as e:
        sys.exit(f"error: {e}")
    steps = sorted({s for r in table.values() for s in r})
    print(f"Largest |coordinate| of the EMA endpoints over {args.times} times and {len(x)} training points, "
          f"divided by the data's ({scale:.3g}); runs of {args.params} ({args.dataset}, {args.objective}).\n")
    print("| run | " + " | ".join(f"step {s}" for s in steps) + " | runaway |")
    print("|---|" + "---:|" * len(steps) + "---|")
    for e, r in table.items():
        final = r[max(r)] / scale
        cells = " | ".join(f"{r[s] / scale:.3g}" if s in r else "" for s in steps)
        print(f"| {e.name} | {cells} | {'yes' if final > args.factor else ''} |")


if __name__ == "__main__":
    main()
