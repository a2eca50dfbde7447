"""Training throughput of a params preset's first experiment, on synthetic data of its shape.

    python benchmarks/train_throughput.py --params params/cifar10_ict.yaml --steps 300 --device cuda

Runs the real training loop (ctcoupling.training.train) twice, for `warmup` and for `warmup + steps`
iterations, and reports the steady-state rate (steps x batch) / (difference of wall times) in
images per second. The data are uniform random uint8 images: throughput does not depend on them.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from ctcoupling import describe, training
from ctcoupling import params as P
from ctcoupling.cli import enable_fast_cuda


def timed(config, x, device) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    training.train(config, x, progress=False, device=device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--batch", type=int, help="override train.batch")
    ap.add_argument("--experiment", help="which experiment of the grid (default: the first)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    enable_fast_cuda()
    params = P.load(a.params)
    exp = P.experiment(params, a.experiment) if a.experiment else P.experiments(params)[0]
    batch = a.batch or exp.config["train"]["batch"]
    shape = describe.data_shape(params, exp.dataset)
    x = np.random.default_rng(0).integers(0, 256, (max(4 * batch, 1024), *shape), dtype=np.uint8)
    x = x.astype(np.float32) / 127.5 - 1
    base = P.deep_merge(exp.config, {"train": {"batch": batch, "checkpoint_every": 10**9, "log_every": 10**9}})
    t_warm = timed(P.deep_merge(base, {"train": {"steps": a.warmup}}), x, a.device)
    t_full = timed(P.deep_merge(base, {"train": {"steps": a.warmup + a.steps}}), x, a.device)
    rate = a.steps * batch / (t_full - t_warm)
    print(json.dumps({
        "params": a.params, "experiment": exp.name, "device": torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu",
        "network_parameters": describe.describe(params, exp.name)[0]["network_parameters"],
        "batch": batch, "steps": a.steps, "seconds": round(t_full - t_warm, 2),
        "img_per_s": round(rate, 1), "ms_per_step": round(1000 * (t_full - t_warm) / a.steps, 1),
    }))


if __name__ == "__main__":
    main()
