"""Consistency-training objectives. Each returns the unreduced per-sample loss; the loop reduces.

iCT (Song & Dhariwal 2023; METHODS 2): curriculum N(k), discretised lognormal index sampling,
lambda_i = 1/(sigma_{i+1} - sigma_i), pseudo-Huber metric, stop-gradient online teacher.
"""
from __future__ import annotations

import math

import torch

from .kernels import Kernel


def pseudo_huber(diff: torch.Tensor, c: float, per_element: bool = False) -> torch.Tensor:
    """sqrt(||d||^2 + c^2) - c on each sample's norm; per element (sony/vct) then summed, if asked."""
    flat = diff.reshape(diff.shape[0], -1)
    if per_element:
        return (torch.sqrt(flat**2 + c**2) - c).sum(1)
    return torch.sqrt((flat**2).sum(1) + c**2) - c


class ICTLoss:
    def __init__(self, kernel: Kernel, total_steps: int, s0: int = 10, s1: int = 1280, P_mean: float = -1.1,
                 P_std: float = 2.0, huber_c: float | None = None, huber_per_element: bool = False):
        self.kernel, self.total_steps = kernel, total_steps
        self.s0, self.s1, self.P_mean, self.P_std = s0, s1, P_mean, P_std
        self.huber_c, self.huber_per_element = huber_c, huber_per_element

    def num_scales(self, step: int) -> int:
        """N(k) = min(s0 * 2^floor(k/K'), s1) + 1, K' = floor(K / (log2(floor(s1/s0)) + 1))."""
        K_prime = max(1, math.floor(self.total_steps / (math.log2(math.floor(self.s1 / self.s0)) + 1)))
        return min(self.s0 * 2 ** (step // K_prime), self.s1) + 1

    def index_probs(self, sigmas: torch.Tensor) -> torch.Tensor:
        """p(i) over i = 0..N-2, proportional to the lognormal mass between sigma_i and sigma_{i+1}."""
        cdf = torch.erf((torch.log(sigmas) - self.P_mean) / (math.sqrt(2) * self.P_std))
        p = cdf[1:] - cdf[:-1]
        return p / p.sum()

    def __call__(self, model, x: torch.Tensor, z: torch.Tensor, step: int, generator: torch.Generator):
        N = self.num_scales(step)
        sigmas = self.kernel.karras(N)
        i = torch.multinomial(self.index_probs(sigmas), x.shape[0], replacement=True, generator=generator)
        s_lo, s_hi = sigmas[i].float(), sigmas[i + 1].float()
        rng = torch.get_rng_state()  # replayed so both passes draw the same dropout mask
        student = model(self.kernel.perturb(x, s_hi, z), s_hi)
        with torch.no_grad():
            torch.set_rng_state(rng)
            target = model(self.kernel.perturb(x, s_lo, z), s_lo)
        c = self.huber_c if self.huber_c is not None else 0.00054 * math.sqrt(x[0].numel())
        loss = pseudo_huber(student - target, c, self.huber_per_element) / (s_hi - s_lo)
        return loss, {"N": N}


def build(spec: dict, total_steps: int) -> ICTLoss:
    """An objective from its params spec (`objectives.<name>`)."""
    kernel = Kernel(**spec["kernel"])
    if spec["kind"] == "ict":
        return ICTLoss(kernel, total_steps, spec["s0"], spec["s1"], spec["P_mean"], spec["P_std"],
                       spec["huber_c"], spec["huber_per_element"])
    raise ValueError(f"unknown objective {spec['kind']!r}")
