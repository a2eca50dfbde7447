"""Forward kernels and the consistency parametrisation with its boundary condition (METHODS 1).

VE (EDM, iCT, GC):  x_sigma = x + sigma z.
LI (flow matching): x_t = (1 - t/sigma_max) x + t z, t in sigma units.
f(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma)), f(x, sigma_min) = x.
TrigFlow (sCT; trigflow.py): x_t = cos(t) x + sin(t) sigma_data z, t in radians; its time runs up to
t_max = arctan(sigma_max / sigma_data), EDM's sigma_max in TrigFlow time (Lu & Song 2025, App. G.2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Kernel:
    kind: str = "ve"
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    sigma_data: float = 0.5
    rho: float = 7.0

    def __post_init__(self):
        if self.kind not in ("ve", "li", "trigflow"):
            raise ValueError(f"unknown kernel {self.kind!r}")

    @property
    def t_max(self) -> float:
        """The time sampling starts from: sigma_max, or arctan(sigma_max / sigma_data) in TrigFlow."""
        return math.atan(self.sigma_max / self.sigma_data) if self.kind == "trigflow" else self.sigma_max

    def prior(self, z: torch.Tensor) -> torch.Tensor:
        """The starting point of sampling from standard normal z: sigma_max z (VE, LI), sigma_data z
        (TrigFlow: x_{t_max} ~ N(0, sigma_data^2 I), Lu & Song 2025 Sec. 3)."""
        return (self.sigma_data if self.kind == "trigflow" else self.sigma_max) * z

    def alpha(self, sigma: torch.Tensor) -> torch.Tensor:
        """Signal scale: 1 for VE, 1 - t/sigma_max for LI, cos(t) for TrigFlow."""
        if self.kind == "trigflow":
            return torch.cos(sigma)
        return torch.ones_like(sigma) if self.kind == "ve" else 1 - sigma / self.sigma_max

    def noise_scale(self, sigma: torch.Tensor) -> torch.Tensor:
        """The standard normal noise's scale: sigma (VE, LI), sin(t) sigma_data (TrigFlow)."""
        return torch.sin(sigma) * self.sigma_data if self.kind == "trigflow" else sigma

    def perturb(self, x: torch.Tensor, sigma: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """A point of the path at `sigma` from standard normal z (broadcast over x's trailing dims)."""
        return _bcast(self.alpha(sigma), x) * x + _bcast(self.noise_scale(sigma), x) * z

    def velocity(self, x: torch.Tensor, sigma: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Single-sample velocity d x_sigma / d sigma: z (VE), z - x/sigma_max (LI) (METHODS 6),
        cos(t) sigma_data z - sin(t) x (TrigFlow, Lu & Song 2025 Alg. 1)."""
        if self.kind == "trigflow":
            return _bcast(torch.cos(sigma), x) * self.sigma_data * z - _bcast(torch.sin(sigma), x) * x
        return z if self.kind == "ve" else z - x / self.sigma_max

    def precond(self, sigma: torch.Tensor, boundary: bool = True):
        """(c_skip, c_out, c_in, c_noise) with the boundary condition at sigma_min; `boundary=False`: the
        form without it, which ECT trains with: EDM's c_skip = sd^2/(s^2 + sd^2), c_out = s sd c_in (VE),
        and sony/vct's conditional-OT `get_scaling_factors` c_skip = sd^2 a/(s^2 + sd^2 a^2) (LI)."""
        sd, smin = self.sigma_data, self.sigma_min
        if not boundary:
            a = self.alpha(sigma)
            c_in = 1 / torch.sqrt(sd**2 * a**2 + sigma**2)
            return sd**2 * a / (sigma**2 + sd**2 * a**2), sigma * sd * c_in, c_in, torch.log(sigma) / 4
        if self.kind == "ve":
            c_in = 1 / torch.sqrt(sd**2 + sigma**2)
            c_skip = sd**2 / ((sigma - smin) ** 2 + sd**2)
        else:
            a = 1 - sigma / self.sigma_max
            a_bc = 1 - (sigma - smin) / (self.sigma_max - smin)
            c_in = 1 / torch.sqrt(sd**2 * a**2 + sigma**2)
            c_skip = sd**2 * a_bc / ((sigma - smin) ** 2 + sd**2 * a_bc**2)
        c_out = (sigma - smin) * sd * c_in
        c_noise = torch.log(sigma) / 4
        return c_skip, c_out, c_in, c_noise

    def karras(self, n: int, device=None) -> torch.Tensor:
        """Karras grid of n points, increasing from sigma_min to sigma_max (float64)."""
        i = torch.arange(n, dtype=torch.float64, device=device)
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        return (lo + i / (n - 1) * (hi - lo)) ** self.rho


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (like.ndim - 1)))


class ConsistencyModel(torch.nn.Module):
    """f_theta(x, sigma): a raw network F wrapped in the kernel's preconditioning. With
    `boundary_in_training=False` (ECT's official form) train mode uses EDM's preconditioning and only
    eval mode (sampling, the EMA, GC's predictor) the boundary form, as locuslab/ect's ECMPrecond."""

    def __init__(self, net: torch.nn.Module, kernel: Kernel, boundary_in_training: bool = True):
        super().__init__()
        self.net, self.kernel, self.boundary_in_training = net, kernel, boundary_in_training

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """`labels`: class indices (B,) for a class-conditional network (see `net_input`), else None."""
        sigma = sigma.to(torch.float32).reshape(-1).expand(x.shape[0])
        c_skip, c_out, c_in, c_noise = self.kernel.precond(sigma, self.boundary_in_training or not self.training)
        F = self.net(_bcast(c_in, x) * x, c_noise, *net_labels(self.net, labels)).to(x.dtype)  # fp32 out of bf16
        return _bcast(c_skip, x) * x + _bcast(c_out, x) * F


def label_args(labels: torch.Tensor | None) -> tuple:
    """The optional labels argument of a model call: passed only where there are labels, so that an
    unconditional model (or any callable f(x, sigma)) is called as before."""
    return () if labels is None else (labels,)


def net_labels(net: torch.nn.Module, labels: torch.Tensor | None) -> tuple:
    """The class-label argument of a network call: () for an unconditional network, else the one-hot
    labels (EDM's and EDM2's label input; none given: the all-zero label, as the official
    preconditioning passes). Labels handed to an unconditional network are an error, never ignored."""
    dim = getattr(net, "label_dim", 0)
    if not dim:
        if labels is not None:
            raise ValueError("class labels given to an unconditional network (its label_dim is 0)")
        return ()
    return (None,) if labels is None else (torch.nn.functional.one_hot(labels.long(), dim).float(),)
