"""Cost of one training step per coupling against IC (`make bench`), on the digits U-Net
(`networks.unet_digits` of params/default.yaml) at batch 512, CPU. Targets (issue 4): OT <= 1.05x IC, VC <= 1.10x, GC <= 1.30x (one extra
no-grad forward next to two forwards and a backward: about 1.25x in theory)."""
import numpy as np
import pytest
import torch

from ctcoupling import params as P
from ctcoupling.training import Run

TARGETS = {"ic": None, "ot": 1.05, "vc": 1.10, "gc": 1.30, "vcgc": None}
MEDIANS: dict[str, float] = {}


def digits_config(coupling: str) -> dict:
    params = P.load("params/default.yaml")
    params["grid"] = [{"dataset": ["digits"], "objective": ["ict"], "coupling": [coupling], "seed": [0]}]
    exp = P.experiments(params)[0]
    # the digits U-Net, the same for every coupling (the suite's GC runs drop dropout, which would flatter GC)
    config = P.deep_merge(exp.config, {"train": {"batch": 512}})
    config["network"] = dict(params["networks"]["unet_digits"], dropout=0.0)
    if "encoder_network" in config:
        config["encoder_network"] = params["networks"]["unet_encoder"]
    return config


@pytest.mark.parametrize("coupling", list(TARGETS))
def test_train_step(benchmark, coupling):
    torch.set_num_threads(1)
    run = Run(digits_config(coupling), (1, 8, 8), torch.device("cpu"))
    x = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (512, 1, 8, 8)).astype(np.float32))
    step = iter(range(10**6))
    benchmark.pedantic(lambda: run.step(x, next(step)), rounds=10, warmup_rounds=2)
    MEDIANS[coupling] = benchmark.stats.stats.median
    if coupling != "ic":
        ratio = MEDIANS[coupling] / MEDIANS["ic"]
        benchmark.extra_info["x_ic"] = round(ratio, 3)
        print(f"\n{coupling}: {ratio:.3f}x IC")
        if TARGETS[coupling]:
            assert ratio <= TARGETS[coupling], f"{coupling} costs {ratio:.2f}x IC, target {TARGETS[coupling]}x"
