"""Training throughput of a params preset's experiment, on synthetic data of its shape, with its FLOPs
per step and the model FLOP utilisation (MFU) against the device's peak.

    python benchmarks/train_throughput.py --params params/cifar10_ict.yaml --steps 300 --device cuda \
        [--precision bf16] [--channels-last] [--compile]

Runs the real training loop (ctcoupling.train.training.train) twice, for `warmup` and for `warmup + steps`
iterations, and reports the steady-state rate (steps x batch) / (difference of wall times) in
images per second. The data are uniform random uint8 images: throughput does not depend on them.
FLOPs are counted by torch.utils.flop_counter.FlopCounterMode over one whole training step (the
coupling's passes, the student's forward and backward, the teacher's forward; matmuls and
convolutions, as MFU is defined); MFU = FLOPs per step x steps per second / peak, the peak of the
dense tensor cores in the precision the step runs in (bf16, or TF32 for fp32 on GPUs), from
PEAK_TFLOPS or --peak-tflops.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from ctcoupling.pipeline import describe
from ctcoupling.train import training
from ctcoupling.config import params as P
from ctcoupling.cli import enable_fast_cuda

# Dense tensor-core peaks in TFLOP/s (vendor data sheets: H100/H200 SXM, A100 SXM).
PEAK_TFLOPS = {("H100", "bf16"): 989.4, ("H100", "fp32"): 494.7, ("H200", "bf16"): 989.4, ("H200", "fp32"): 494.7,
               ("A100", "bf16"): 312.0, ("A100", "fp32"): 156.0}


def timed(config, x, y, device) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    training.train(config, x, progress=False, device=device, y_train=y)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def synthetic(shape: tuple[int, ...], config: dict, batch: int, n: int | None = None):
    """(x, y): n uniform random images of `shape` in model space (default max(4 x batch, 1024)), and
    random labels where the network is class-conditional (else None). Throughput does not depend on them."""
    n = n or max(4 * batch, 1024)
    x = np.random.default_rng(0).integers(0, 256, (n, *shape), dtype=np.uint8)
    x = x.astype(np.float32) / 127.5 - 1
    classes = training.label_dim(config)
    return x, (np.random.default_rng(1).integers(0, classes, n) if classes else None)


def bench_config(config: dict, batch: int, options: dict, gpus: int = 1) -> dict:
    """An experiment's config for timing: `batch` (over `gpus` processes), no checkpoints, logs or
    snapshots, and the GPU `options` (precision, channels_last, compile)."""
    return P.deep_merge(config, {"train": {"batch": batch, "checkpoint_every": 10**9, "log_every": 10**9,
                                           "snapshot_every": None, "gpus": gpus, **options}})


def tensors(x, y, device):
    """The data (and labels) on the device, as training.train puts them there."""
    return torch.from_numpy(x).to(device), (torch.from_numpy(y).to(device) if y is not None else None)


def count_flops(steps) -> int:
    """FLOPs of the next step of a `training.Run.iterate` generator (matmuls and convolutions)."""
    with FlopCounterMode(display=False) as counter:
        next(steps)
    return counter.get_total_flops()


def flops_per_step(config, x, y, device) -> int:
    """FLOPs of one training step (step 1: the first may differ, e.g. an EMA copy)."""
    run = training.Run(config, tuple(x.shape[1:]), torch.device(device))
    data, labels = tensors(x, y, device)
    steps = run.iterate(data, 0, 2, labels)
    next(steps)
    return count_flops(steps)


def peak(device: str, precision: str, override: float | None) -> float | None:
    if override:
        return override
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name()
    return next((v for (gpu, p), v in PEAK_TFLOPS.items() if gpu in name and p == precision), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--batch", type=int, help="override train.batch")
    ap.add_argument("--experiment", help="which experiment of the grid (default: the first)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", choices=["fp32", "bf16"], help="override train.precision")
    ap.add_argument("--channels-last", action="store_true", help="train.channels_last = true")
    ap.add_argument("--compile", action="store_true", help="train.compile = true")
    ap.add_argument("--peak-tflops", type=float, help="the device's peak for MFU (default: PEAK_TFLOPS by name)")
    a = ap.parse_args()
    enable_fast_cuda()
    params = P.load(a.params)
    exp = P.experiment(params, a.experiment) if a.experiment else P.experiments(params)[0]
    batch = a.batch or exp.config["train"]["batch"]
    # a class-conditional preset trains on random labels
    x, y = synthetic(describe.data_shape(params, exp.dataset), exp.config, batch)
    options = {"precision": a.precision or exp.config["train"].get("precision", "fp32"),
               "channels_last": a.channels_last or exp.config["train"].get("channels_last", False),
               "compile": a.compile or exp.config["train"].get("compile", False)}
    gpus = int(os.environ.get("WORLD_SIZE", "1"))  # the processes this runs as (torchrun for more), not the preset's
    base = bench_config(exp.config, batch, options, gpus)
    flops = flops_per_step(base, x, y, a.device)
    t_warm = timed(P.deep_merge(base, {"train": {"steps": a.warmup}}), x, y, a.device)
    t_full = timed(P.deep_merge(base, {"train": {"steps": a.warmup + a.steps}}), x, y, a.device)
    seconds = (t_full - t_warm) / a.steps
    top = peak(a.device, options["precision"], a.peak_tflops)
    print(json.dumps({
        "params": a.params, "experiment": exp.name, "device": torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu",
        "network_parameters": describe.describe(params, exp.name)[0]["network_parameters"], **options,
        "batch": batch, "steps": a.steps, "seconds": round(t_full - t_warm, 2),
        "img_per_s": round(batch / seconds, 1), "ms_per_step": round(1000 * seconds, 1),
        "gflop_per_step": round(flops / 1e9, 2), "tflop_per_s": round(flops / seconds / 1e12, 3),
        "mfu": round(flops / seconds / (top * 1e12), 4) if top else None,
    }))


if __name__ == "__main__":
    main()
