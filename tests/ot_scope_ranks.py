"""Batch-OT's pairs on the first steps of a two-Gaussian run, drawn and prepared as training.Run.iterate
does (step k+1 drawn and prepared before step k pairs). Imported by tests/test_couplings.py for the
1-process pairs, and run there under torchrun (2 CPU ranks, gloo):

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ot_scope_ranks.py CONFIGS OUT

where CONFIGS is a JSON object {name: experiment config}; each rank saves {name: its pairs} to OUT/rank<r>.pt.
"""
import json
import sys

import numpy as np
import torch

from ctcoupling.train import training
from ctcoupling.train.couplings import Context


def data() -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).standard_normal((256, 2)).astype(np.float32))


def pairs(config: dict, rank: int = 0, world: int = 1, steps: int = 3) -> list[dict]:
    """Per step: this rank's draws (x, eps) and the coupling's pair (x, z)."""
    run = training.Run(config, (2,), torch.device("cpu"), rank, world)
    points, out = data(), []
    draws = run.draw(points, 0)
    for step in range(steps):
        ahead = run.draw(points, step + 1)
        run.coupling.prepare(ahead)
        pair = run.coupling(draws.x, draws.eps, None, Context(step, run.loss_fn.kernel, 1.0))
        out.append({"x": draws.x, "eps": draws.eps, "pair_x": pair.x, "z": pair.z})
        draws = ahead
    return out


if __name__ == "__main__":
    configs = json.loads(open(sys.argv[1]).read())
    rank, world = training.distributed()
    torch.save({name: pairs(config, rank, world) for name, config in configs.items()}, f"{sys.argv[2]}/rank{rank}.pt")
