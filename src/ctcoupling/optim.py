"""Optimisers, the learning-rate schedule and the EMA of the weights."""
from __future__ import annotations

import math

import torch


class Lion(torch.optim.Optimizer):
    """Lion (Chen et al. 2023): update = sign(beta1 m + (1 - beta1) g); m <- beta2 m + (1 - beta2) g."""

    def __init__(self, params, lr: float = 1e-4, betas=(0.9, 0.99), weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                m = self.state[p].setdefault("exp_avg", torch.zeros_like(p))
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(torch.sign(m * beta1 + p.grad * (1 - beta1)), alpha=-group["lr"])
                m.lerp_(p.grad, 1 - beta2)


def make_optimizer(params, spec: dict) -> torch.optim.Optimizer:
    kind = spec["optimizer"]
    if kind == "radam":
        return torch.optim.RAdam(params, lr=spec["lr"])
    if kind == "adam":
        return torch.optim.Adam(params, lr=spec["lr"])
    if kind == "lion":
        return Lion(params, lr=spec["lr"])
    raise ValueError(f"unknown optimizer {kind!r}")


def learning_rate(spec: dict, step: int) -> float:
    """Constant, or the ImageNet-style inverse-sqrt decay lr / sqrt(max(step / ref, 1))."""
    ref = spec.get("lr_ref_steps")
    return spec["lr"] if not ref else spec["lr"] / math.sqrt(max(step / ref, 1.0))


def ema_decay(spec: dict, step: int) -> float:
    """Constant decay, or EDM2's power function (1 - 1/t)^(gamma + 1) at t = step + 1."""
    gamma = spec.get("ema_gamma")
    return spec["ema"] if gamma is None else (1 - 1 / (step + 1)) ** (gamma + 1)


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm, 1 - decay)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)
