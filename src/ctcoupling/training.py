"""The training loop: one function, read top to bottom (EDM's training_loop in spirit).

Everything random is drawn from generators seeded by the experiment's seed, so a run is a pure
function of (params, data, seed, threads).
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
from tqdm import trange

from . import couplings, networks, objectives
from .errors import UserError
from .kernels import ConsistencyModel, Kernel


def build_model(config: dict, data_shape: tuple[int, ...]) -> ConsistencyModel:
    net = networks.build(config["network"], data_shape)
    return ConsistencyModel(net, Kernel(**config["objective"]["kernel"]))


def make_optimizer(params, spec: dict) -> torch.optim.Optimizer:
    if spec["optimizer"] == "radam":
        return torch.optim.RAdam(params, lr=spec["lr"])
    if spec["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=spec["lr"])
    raise ValueError(f"unknown optimizer {spec['optimizer']!r}")


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm, 1 - decay)


def train(config: dict, x_train: np.ndarray, progress: bool = True) -> tuple[dict, list[dict]]:
    """Train a consistency model on `x_train` (model space). Returns (checkpoint, per-step log)."""
    seed, spec = config["seed"], config["train"]
    torch.manual_seed(seed)  # initialisation and dropout
    gen = torch.Generator().manual_seed(seed + 1)  # minibatches, noise, time indices
    data = torch.from_numpy(x_train)
    model = build_model(config, tuple(data.shape[1:]))
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = make_optimizer(model.parameters(), spec)
    loss_fn = objectives.build(config["objective"], spec["steps"])
    coupling = couplings.build(config["coupling"])

    log = []
    bar = trange(spec["steps"], desc=f"train seed={seed}", disable=not progress, mininterval=1.0)
    for step in bar:
        x = data[torch.randint(len(data), (spec["batch"],), generator=gen)]
        x, z = coupling(x, gen)
        loss, stats = loss_fn(model, x, z, step, gen)
        loss = loss.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), math.inf)
        if not (torch.isfinite(loss) and torch.isfinite(grad_norm)):
            raise UserError(f"training diverged at step {step} (loss {loss.item()}, grad norm {grad_norm.item()}); "
                            "lower train.lr or check the data")
        opt.step()
        ema_update(ema, model, spec["ema"])
        if step % spec["log_every"] == 0 or step == spec["steps"] - 1:
            row = {"step": step, "loss": loss.item(), "grad_norm": grad_norm.item(),
                   "lr": opt.param_groups[0]["lr"], **stats}
            log.append(row)
            bar.set_postfix(loss=f"{row['loss']:.4g}", N=stats.get("N"))
    checkpoint = {
        "config": config,
        "data_shape": list(data.shape[1:]),
        "step": spec["steps"],
        "model": model.state_dict(),
        "ema": ema.state_dict(),
    }
    return checkpoint, log


def load_model(checkpoint: dict, use_ema: bool = True) -> ConsistencyModel:
    model = build_model(checkpoint["config"], tuple(checkpoint["data_shape"]))
    model.load_state_dict(checkpoint["ema" if use_ema else "model"])
    return model.eval().requires_grad_(False)
