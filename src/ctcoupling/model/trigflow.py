"""Continuous-time consistency models in TrigFlow: sCT and sCD (Lu & Song, "Simplifying, Stabilizing
and Scaling Continuous-Time Consistency Models", ICLR 2025, arXiv 2410.11081 v2; METHODS 9).
Equation numbers are the paper's (arXiv v2).

- Path (Sec. 3): x_t = cos(t) x_0 + sin(t) z, z ~ N(0, sd^2 I), t in [0, pi/2]; its velocity
  dx_t/dt = cos(t) z - sin(t) x_0 (Alg. 1, consistency training).
- Consistency model (Eq. 5): f(x_t, t) = cos(t) x_t - sin(t) sd F(x_t / sd, c_noise(t)), with
  c_noise(t) = t (Sec. 4.1), so f(x, 0) = x exactly.
- Tangent of the stop-gradient model along the flow (Eq. 6):
  df-/dt = -cos(t) (sd F- - dx_t/dt) - sin(t) (x_t + sd dF-/dt),
  dF-/dt by forward-mode autodiff (`torch.func.jvp`) of F(x_t / sd, t) in (x_t, t) along
  (cos(t) sin(t) dx_t/dt, cos(t) sin(t)) (Sec. 5.1, "JVP rearrangement"), which gives
  cos(t) sin(t) dF-/dt directly.
- Target (Alg. 1): g = -cos^2(t) (sd F- - dx_t/dt) - r cos(t) sin(t) (x_t + sd dF-/dt), i.e.
  cos(t) df-/dt with the prior weighting 1/(sd tan t) absorbed (Sec. 4.2) and the second term scaled
  by the tangent warm-up r = min(1, step / H); normalised g / (||g|| + c) per sample.
- Loss (Eq. 8): e^{w(t)} / D ||F - F- - g||^2 - w(t) with the learned adaptive weight w = -logvar
  (EDM2's uncertainty head: MPFourier then MPConv to one channel, the form of NVlabs/edm2
  training/networks_edm2.py Precond; the paper does not state w's architecture).
- Proposal (Sec. 4.2, App. C.2): log(sd tan t) ~ N(P_mean, P_std^2), t = arctan(e^tau / sd).
- sCD with an exact teacher: dx_t/dt replaced by the exact probability-flow velocity
  v(x_t, t) = E[cos(t) z - sin(t) x_0 | x_t] = (cos(t) x_t - D(x_t, t)) / sin(t), D = E[x_0 | x_t]
  in closed form on a Gaussian mixture or a finite data set (the oracle sCT estimates).

Pure math on tensors; no files.
"""
from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from ctcoupling.model.edm2 import MPConv, MPFourier
from ctcoupling.model.kernels import Kernel, _bcast, net_labels


def proposal_times(tau: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """t = arctan(e^tau / sd) for tau ~ N(P_mean, P_std^2): EDM's log-normal sigma in TrigFlow time."""
    return torch.atan(torch.exp(tau) / sigma_data)


def flow_velocity(x0: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """dx_t/dt = cos(t) z - sin(t) x_0 (z already scaled: z ~ N(0, sd^2 I))."""
    return _bcast(torch.cos(t), x0) * z - _bcast(torch.sin(t), x0) * x0


def consistency_output(x_t: torch.Tensor, t: torch.Tensor, F: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """f = cos(t) x_t - sin(t) sd F (Eq. 5)."""
    return _bcast(torch.cos(t), x_t) * x_t - _bcast(torch.sin(t), x_t) * sigma_data * F


def tangent_target(F_minus: torch.Tensor, jvp_out: torch.Tensor, x_t: torch.Tensor, v: torch.Tensor,
                   t: torch.Tensor, sigma_data: float, r: float = 1.0) -> torch.Tensor:
    """g = -cos^2(t) (sd F- - v) - r (cos(t) sin(t) x_t + sd jvp_out) (Alg. 1), where
    jvp_out = cos(t) sin(t) dF-/dt, the JVP along (cos t sin t v, cos t sin t). With r = 1 this is
    cos(t) df-/dt of Eq. 6."""
    c, s = _bcast(torch.cos(t), x_t), _bcast(torch.sin(t), x_t)
    return -c * c * (sigma_data * F_minus - v) - r * (c * s * x_t + sigma_data * jvp_out)


def normalize_tangent(g: torch.Tensor, c: float) -> torch.Tensor:
    """g / (||g||_2 + c), each sample's norm over all its dimensions (Sec. 4.2; c = 0.1 in the paper).
    c = 0 or None: no normalisation."""
    if not c:
        return g
    norm = g.reshape(len(g), -1).norm(dim=1)
    return g / _bcast(norm + c, g)


def sct_loss(F: torch.Tensor, F_minus: torch.Tensor, g: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per sample e^{w}/D ||F - F- - g||^2 - w with w = -logvar (Eq. 8): mean square / e^logvar + logvar."""
    sq = (F - F_minus - g).reshape(len(F), -1).square().mean(1)
    return sq / torch.exp(logvar) + logvar


@contextlib.contextmanager
def forward_mode_attention():
    """Scaled dot-product attention in its composite (math) form, which forward-mode autodiff can
    differentiate: the fused CPU and flash kernels have no forward derivative in torch. The paper
    writes a flash-attention JVP for ImageNet (App. F); on CIFAR-10 it uses autograd's JVP of EDM's
    attention, as here."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.MATH]):
        yield


def jvp_passes(model, x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor, labels=None):
    """(F-, cos(t) sin(t) dF-/dt): the stop-gradient network output at (x_t, t) and its JVP along
    (cos t sin t dx_t/dt, cos t sin t) (Sec. 5.1), with no graph for the weights."""
    cs = torch.cos(t) * torch.sin(t)
    extra = () if labels is None else (labels,)

    def F_of(x, s):
        return model(x, s, *extra, output="F")

    with torch.no_grad(), forward_mode_attention():
        return torch.func.jvp(F_of, (x_t, t), (_bcast(cs, x_t) * v, cs))


class TrigFlowModel(nn.Module):
    """f(x_t, t) = cos(t) x_t - sin(t) sd F(x_t / sd, c_noise_scale t) around a raw network F (Eq. 5),
    with the adaptive weighting's log-variance head logvar(t) (EDM2's Precond form) when
    `logvar_channels` > 0. `output`: "f" the consistency function (sampling, the EMA, GC's predictor),
    "F" the raw network output, "train" (F, logvar). One module, so that DDP and the EMA see every
    trained weight, as EDM2's Precond holds its logvar layers.

    c_noise(t) = t in the paper (Sec. 4.1) with a positional embedding; `c_noise_scale` rescales t
    for a network whose embedding multiplies its input (the suite's MLP multiplies by 1000, so
    0.001 gives it the paper's positional embedding of t)."""

    def __init__(self, net: nn.Module, kernel: Kernel, c_noise_scale: float = 1.0, logvar_channels: int = 128):
        super().__init__()
        if kernel.kind != "trigflow":
            raise ValueError(f"TrigFlowModel needs a trigflow kernel, got {kernel.kind!r}")
        self.net, self.kernel, self.c_noise_scale = net, kernel, c_noise_scale
        self.logvar_fourier = MPFourier(logvar_channels) if logvar_channels else None
        self.logvar_linear = MPConv(logvar_channels, 1, kernel=[]) if logvar_channels else None

    def logvar(self, t: torch.Tensor) -> torch.Tensor:
        if self.logvar_linear is None:
            return torch.zeros_like(t)
        return self.logvar_linear(self.logvar_fourier(t)).reshape(-1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None, output: str = "f"):
        t = t.to(x.dtype).reshape(-1).expand(x.shape[0])
        sd = self.kernel.sigma_data
        F = self.net(x / sd, self.c_noise_scale * t, *net_labels(self.net, labels)).to(x.dtype)
        if output == "F":
            return F
        if output == "train":
            return F, self.logvar(t)
        return consistency_output(x, t, F, sd)


# ---------------------------------------------------------------------------------------------
# Exact probability-flow velocities: the teacher of sCD-exact, the oracle sCT estimates.


def _posterior_velocity(x_t: torch.Tensor, t: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """v = E[cos t z - sin t x_0 | x_t] = (cos(t) x_t - E[x_0 | x_t]) / sin(t), since z = (x_t - cos t x_0) / sin t."""
    return (_bcast(torch.cos(t), x_t) * x_t - denoised) / _bcast(torch.sin(t), x_t)


class MixtureTeacher:
    """The exact velocity of a mixture of isotropic Gaussians N(m_k, s^2 I) with weights pi_k: x_t given
    component k is N(cos t m_k, (cos^2 t s^2 + sin^2 t sd^2) I), its posterior mean of x_0 is
    m_k + cos t s^2 / var_t (x_t - cos t m_k). Evaluated in float64."""

    def __init__(self, means: torch.Tensor, std: float, sigma_data: float, weights: torch.Tensor | None = None):
        self.means = means.double().reshape(len(means), -1)
        self.std, self.sigma_data = float(std), sigma_data
        w = torch.full((len(means),), 1 / len(means), dtype=torch.float64) if weights is None else weights.double()
        self.log_weights = torch.log(w / w.sum())

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x, t = x_t.double().reshape(len(x_t), -1), t.double().reshape(-1, 1)
        c, s = torch.cos(t), torch.sin(t)
        var = c**2 * self.std**2 + s**2 * self.sigma_data**2  # (B, 1)
        m = self.means.to(x.device)
        centred = x[:, None, :] - c[:, :, None] * m[None]  # (B, K, D)
        logits = -centred.square().sum(2) / (2 * var) + self.log_weights.to(x.device)
        post = m[None] + (c * self.std**2 / var)[:, :, None] * centred
        return (logits.softmax(1)[:, :, None] * post).sum(1).reshape(x_t.shape)

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t64 = t.double()
        return _posterior_velocity(x_t.double(), t64, self.denoise(x_t, t)).to(x_t.dtype)


class EmpiricalTeacher(MixtureTeacher):
    """The exact velocity of the finite data set {x_j} (the theory stage's ideal denoiser in TrigFlow
    time): a mixture of point masses, s = 0, the softmax over every point of the set at once (a
    training batch against the digits' 1500 points; tested against theory.ideal_denoiser)."""

    def __init__(self, data: torch.Tensor, sigma_data: float):
        super().__init__(data, 0.0, sigma_data)

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x, t = x_t.double().reshape(len(x_t), -1), t.double().reshape(-1, 1)
        c, s2 = torch.cos(t), torch.sin(t) ** 2 * self.sigma_data**2
        m = self.means.to(x.device)
        # log p(j | x_t) = (cos t x_t . x_j - cos^2 t ||x_j||^2 / 2) / (sin^2 t sd^2) + const(x_t)
        logits = (c * (x @ m.T) - c**2 * m.square().sum(1)[None] / 2) / s2
        return (logits.softmax(1) @ m).reshape(x_t.shape)


def mixture_teacher_or_empirical(mixture: tuple | None, data: torch.Tensor, sigma_data: float, kind: str = "auto"):
    """The exact teacher: `mixture` ((means, std) of a Gaussian-mixture source, or None) where asked
    for ("mixture") or known ("auto"), else the empirical distribution of `data`."""
    if kind == "mixture" and mixture is None:
        raise ValueError("teacher 'mixture' needs a Gaussian-mixture data source (two_gaussians, eight_gaussians)")
    if mixture is not None and kind in ("auto", "mixture"):
        means, std = mixture
        return MixtureTeacher(torch.as_tensor(means), std, sigma_data)
    return EmpiricalTeacher(torch.as_tensor(data).reshape(len(data), -1), sigma_data)


def warmup(step: int, steps: int) -> float:
    """The tangent warm-up r = min(1, step / H) (Alg. 1; H = 10k in the paper); H = 0: none."""
    return min(1.0, step / steps) if steps else 1.0


def t_max(sigma_max: float, sigma_data: float) -> float:
    """EDM's sigma_max in TrigFlow time, t = arctan(sigma / sd) (App. B.2, Eq. 30)."""
    return math.atan(sigma_max / sigma_data)
