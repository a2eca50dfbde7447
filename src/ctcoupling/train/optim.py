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
    """`train.betas` (optional): the optimiser's (beta1, beta2), e.g. sony/vct's ImageNet Adam (0.9, 0.99);
    unset or null: the optimiser's own defaults."""
    kind = spec["optimizer"]
    betas = {"betas": tuple(spec["betas"])} if spec.get("betas") else {}
    # foreach: one fused call per step over all tensors, on the CPU too (torch's CPU default is the
    # per-tensor loop, whose Python overhead dominates a small model's step); the same update math.
    if kind == "radam":
        return torch.optim.RAdam(params, lr=spec["lr"], foreach=True, **betas)
    if kind == "adam":
        return torch.optim.Adam(params, lr=spec["lr"], foreach=True, **betas)
    if kind == "lion":
        return Lion(params, lr=spec["lr"], **betas)
    raise ValueError(f"unknown optimizer {kind!r}")


def learning_rate(spec: dict, step: int) -> float:
    """Constant, or the ImageNet-style inverse-sqrt decay lr / sqrt(max(step / ref, 1))."""
    ref = spec.get("lr_ref_steps")
    return spec["lr"] if not ref else spec["lr"] / math.sqrt(max(step / ref, 1.0))


def ema_decay(spec: dict, step: int) -> float | None:
    """The EMA decay applied after training step `step` (0-based), or None where the EMA is not updated.

    - constant `ema`;
    - EDM2's power function (1 - 1/t)^(gamma + 1) at t = step + 1 (`ema_gamma`); with
      `ema_form: sony_vct`, 1 minus it, as sony/vct's `ema_type: power` applies it (lightning_cm.py
      ema_update: p_net.lerp(p_ema, 1 - power_function_beta(std, global_step))): its average tracks the
      online weights ever closer, the weight on the old average falling like (gamma + 1) / t;
    - ema-pytorch 0.2.3's warm-up (`ema_warmup`, as consistency_GC builds its EMA: EMA(beta, update_after_step
      = `ema_start`, update_every = `ema_update_every`)): update() is called once per step and counts calls,
      not updates; only every `ema_update_every`-th call k updates. Calls k <= ema_start copy the weights
      (decay 0), and so does the first update after them (the EMA initialises by a copy); later ones use
      min(1 - (1 + (k - ema_start) / inv_gamma)^(-power), ema) (ema_pytorch.py update,
      get_current_decay). consistency_GC's ema_start defaults to 10,000 (utils.py Train_config): the
      EMA then follows the online weights until step 10,000 and starts its warm-up over from there.
    """
    every = spec.get("ema_update_every", 1)
    if step % every:
        return None
    warmup, gamma = spec.get("ema_warmup"), spec.get("ema_gamma")
    if warmup is not None:
        start = spec.get("ema_start", 0)
        if step <= start + every - start % every:  # up to ema_start, and the first update after it: copies
            return 0.0
        return min(max(1 - (1 + (step - start) / warmup["inv_gamma"]) ** -warmup["power"], 0.0), spec["ema"])
    if gamma is None:
        return spec["ema"]
    beta = (1 - 1 / (step + 1)) ** (gamma + 1)
    return 1 - beta if spec.get("ema_form") == "sony_vct" else beta


def replace_nonfinite(params, mode: str) -> None:
    """Non-finite gradients replaced in place, as the official loops do before their optimiser step:
    `replace` (locuslab/ect ct_training_loop.py): NaN -> 0, +-inf -> +-1e5; `zero` (sony/vct
    lightning_cm.py): NaN and +-inf -> 0."""
    big = 1e5 if mode == "replace" else 0.0
    for p in params:
        if p.grad is not None:
            torch.nan_to_num(p.grad, nan=0.0, posinf=big, neginf=-big, out=p.grad)


class EMA:
    """ema <- decay ema + (1 - decay) model over the parameters (buffers copied), in one foreach call
    per step on tensor lists gathered once (the per-tensor loop, and walking the modules each step,
    were a measurable share of a small model's step); decay 0 copies exactly."""

    def __init__(self, ema: torch.nn.Module, model: torch.nn.Module):
        self.pe, self.pm = list(ema.parameters()), list(model.parameters())
        self.be, self.bm = list(ema.buffers()), list(model.buffers())

    @torch.no_grad()
    def update(self, decay: float) -> None:
        if decay == 0.0:
            torch._foreach_copy_(self.pe, self.pm)  # exactly, where lerp's rounding could differ
        else:
            torch._foreach_lerp_(self.pe, self.pm, 1 - decay)
        if self.be:
            torch._foreach_copy_(self.be, self.bm)
