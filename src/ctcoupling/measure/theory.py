"""The GC paper's theory, measured exactly where the math allows (METHODS 6).

On a finite data set {x_j} every coupling built from a data point and a Gaussian noise makes x_t a
Gaussian mixture with one component per point:

    IC:  x_t | j ~ N(a x_j, t^2 I)                 (a = 1 for VE, 1 - t/sigma_max for LI)
    VC:  x_t | j ~ N(a x_j + t mu_j, t^2 diag s_j^2)  (mu_j, s_j: the encoder's posterior of x_j)

so the ideal denoiser D*(x, t) = E[x_0 | x_t = x] is a softmax-weighted mean of the data points and,
since x_t = a x_0 + t z on both paths, E[z | x_t] = (x_t - a D*)/t and the marginal velocity is
v_t = E[xdot_t | x_t] with xdot_t = z (VE) or z - x_0/sigma_max (LI). Batch-OT and GC have no
closed form: there the paper's estimator replaces D* by a trained denoiser D_phi.

A useful identity (tested): on both paths xdot_t - v_t(x_t) = -(x_0 - D*(x_t, t))/t, so the proxy
R~_t = E||xdot_t - v_t||^2 is the posterior variance of x_0 divided by t^2.

The softmax is evaluated like attention: log p(j | x) = q(x) . k_j + b_j + const(x), computed as GEMMs
with an online (streaming) log-sum-exp over chunks of the data set, so memory stays bounded.
Everything here is pure math on tensors; no files.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from ctcoupling.model.kernels import Kernel

KERNELS = ("ve", "li")
CHUNK_ELEMENTS = 1 << 22  # logits held at once: queries x data points per block


def _check_kernel(kernel: str) -> None:
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")


def signal_scale(t: float, kernel: str, sigma_max: float) -> float:
    """a in x_t = a x_0 + t z: 1 for VE, 1 - t/sigma_max for LI."""
    _check_kernel(kernel)
    return 1.0 if kernel == "ve" else 1.0 - t / sigma_max


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(len(x), -1)


def mixture_terms(x_t: torch.Tensor, t: float, data: torch.Tensor, kernel: str = "ve", sigma_max: float = 80.0,
                  mu: torch.Tensor | None = None, std: torch.Tensor | None = None):
    """(q, k, b) with log p(j | x_t) = q . k_j + b_j + const(x_t), for IC (mu, std None) or VC."""
    a = signal_scale(t, kernel, sigma_max)
    x, X = _flat(x_t), _flat(data)
    if mu is None:
        m = a * X
        return x, m / t**2, -m.square().sum(1) / (2 * t**2)
    m = a * X + t * _flat(mu)
    prec = 1 / (t * _flat(std)).square()
    q = torch.cat([x.square(), x], dim=1)
    k = torch.cat([-prec / 2, m * prec], dim=1)
    b = -(m.square() * prec).sum(1) / 2 - torch.log(_flat(std)).sum(1)
    return q, k, b


def softmax_mean(q: torch.Tensor, k: torch.Tensor, b: torch.Tensor, values: torch.Tensor,
                 chunk_elements: int = CHUNK_ELEMENTS) -> torch.Tensor:
    """sum_j softmax_j(q . k_j + b_j) values_j for every query row, with a streaming log-sum-exp
    over blocks of the data set (memory: chunk_elements logits plus the output)."""
    n, N = len(q), len(k)
    rows = max(1, min(n, chunk_elements // max(1, min(N, 4096))))
    cols = max(1, chunk_elements // rows)
    out = torch.empty(n, values.shape[1], dtype=values.dtype, device=values.device)
    for r in range(0, n, rows):
        qr = q[r:r + rows]
        run_max = torch.full((len(qr),), -math.inf, dtype=q.dtype, device=q.device)
        run_sum = torch.zeros(len(qr), dtype=q.dtype, device=q.device)
        acc = torch.zeros(len(qr), values.shape[1], dtype=values.dtype, device=values.device)
        for c in range(0, N, cols):
            logits = torch.addmm(b[c:c + cols], qr, k[c:c + cols].T)
            new_max = torch.maximum(run_max, logits.amax(1))
            rescale = torch.exp(run_max - new_max)
            w = logits.sub_(new_max[:, None]).exp_()  # in place: the exp is the non-GEMM cost
            run_sum = run_sum * rescale + w.sum(1)
            acc = torch.addmm(acc * rescale[:, None], w, values[c:c + cols])
            run_max = new_max
        out[r:r + rows] = acc / run_sum[:, None]
    return out


def ideal_denoiser(x_t: torch.Tensor, t: float, data: torch.Tensor, kernel: str = "ve", sigma_max: float = 80.0,
                   mu: torch.Tensor | None = None, std: torch.Tensor | None = None,
                   chunk_elements: int = CHUNK_ELEMENTS) -> torch.Tensor:
    """D*(x_t, t) = E[x_0 | x_t] on the finite data set: IC, or VC's Gaussian mixture given the
    encoder's per-point means `mu` and standard deviations `std` (data's shape). t is a scalar."""
    if t <= 0:
        raise ValueError(f"t must be positive, got {t}")
    q, k, b = mixture_terms(x_t, t, data, kernel, sigma_max, mu, std)
    return softmax_mean(q, k, b, _flat(data), chunk_elements).reshape(x_t.shape)


def velocity_from_denoiser(x_t: torch.Tensor, denoised: torch.Tensor, t: float, kernel: str = "ve",
                           sigma_max: float = 80.0) -> torch.Tensor:
    """v_t = E[xdot_t | x_t] from a denoiser's E[x_0 | x_t]: (x_t - a D)/t, minus D/sigma_max on LI.
    Exact with D*, the paper's estimator with a trained D_phi."""
    a = signal_scale(t, kernel, sigma_max)
    v = (x_t - a * denoised) / t
    return v if kernel == "ve" else v - denoised / sigma_max


def marginal_velocity(x_t: torch.Tensor, t: float, data: torch.Tensor, kernel: str = "ve", sigma_max: float = 80.0,
                      mu: torch.Tensor | None = None, std: torch.Tensor | None = None) -> torch.Tensor:
    """The exact marginal velocity v_t(x_t) of the coupling's probability path on the data set."""
    return velocity_from_denoiser(x_t, ideal_denoiser(x_t, t, data, kernel, sigma_max, mu, std), t, kernel, sigma_max)


def draw_pairs(data: torch.Tensor, n: int, gen: torch.Generator, mu: torch.Tensor | None = None,
               std: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n pairs (x_0, z) from IC, or VC (z = mu_j + s_j eps), with the data indices j. Drawn by the
    CPU generator `gen` and moved to data's device (a GPU: the same draws as on the CPU)."""
    j = torch.randint(len(data), (n,), generator=gen).to(data.device)
    eps = torch.randn((n, *data.shape[1:]), generator=gen, dtype=data.dtype).to(data.device)
    z = eps if mu is None else mu[j] + std[j] * eps
    return data[j], z, j


def discrepancy_terms(x0: torch.Tensor, z: torch.Tensor, t: float, velocity: torch.Tensor, kernel: str = "ve",
                      sigma_max: float = 80.0) -> torch.Tensor:
    """||xdot_t - v_t(x_t)||^2 per pair, summed over dimensions."""
    kern = Kernel(kernel, sigma_max=sigma_max)
    return _flat(kern.velocity(x0, None, z) - velocity).square().sum(1)


def perturb(x0: torch.Tensor, z: torch.Tensor, t: float, kernel: str, sigma_max: float) -> torch.Tensor:
    return signal_scale(t, kernel, sigma_max) * x0 + t * z


def discrepancy_samples(data: torch.Tensor, t: float, kernel: str = "ve", n: int = 4096, seed: int = 0,
                        sigma_max: float = 80.0, mu: torch.Tensor | None = None,
                        std: torch.Tensor | None = None) -> torch.Tensor:
    """Per-draw ||xdot_t - v_t(x_t)||^2 with the exact velocity (n Monte Carlo draws of (x_0, z))."""
    gen = torch.Generator().manual_seed(seed)
    x0, z, _ = draw_pairs(data, n, gen, mu, std)
    x_t = perturb(x0, z, t, kernel, sigma_max)
    v = marginal_velocity(x_t, t, data, kernel, sigma_max, mu, std)
    return discrepancy_terms(x0, z, t, v, kernel, sigma_max)


def discrepancy_proxy(data: torch.Tensor, t: float, kernel: str = "ve", n: int = 4096, seed: int = 0,
                      sigma_max: float = 80.0, mu: torch.Tensor | None = None,
                      std: torch.Tensor | None = None) -> float:
    """R~_t = E||xdot_t - v_t(x_t)||^2 (summed over dimensions), exact velocity, n Monte Carlo draws."""
    return discrepancy_samples(data, t, kernel, n, seed, sigma_max, mu, std).mean().item()


def mean_and_se(values: torch.Tensor) -> tuple[float, float]:
    """Monte Carlo mean and its standard error."""
    v = values.double()
    return v.mean().item(), (v.std() / math.sqrt(len(v))).item() if len(v) > 1 else 0.0


# ---------------------------------------------------------------------------------------------
# The paper's estimator: a denoiser trained on pairs of the coupling.


class Denoiser(torch.nn.Module):
    """D_phi(x_t, t) with EDM's preconditioning generalised to x_t = a x_0 + t z:
    c_in = 1/sqrt(a^2 sd^2 + t^2), c_skip = a sd^2 c_in^2, c_out = t sd c_in."""

    def __init__(self, net: torch.nn.Module, kernel: str = "ve", sigma_max: float = 80.0, sigma_data: float = 0.5):
        super().__init__()
        self.net, self.kernel, self.sigma_max, self.sigma_data = net, kernel, sigma_max, sigma_data

    def scales(self, t: torch.Tensor):
        a = torch.ones_like(t) if self.kernel == "ve" else 1 - t / self.sigma_max
        c_in = 1 / torch.sqrt((a * self.sigma_data) ** 2 + t**2)
        return a * self.sigma_data**2 * c_in**2, t * self.sigma_data * c_in, c_in

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The network runs in float32; the output comes back in x's dtype."""
        t = t.float().reshape(-1).expand(len(x))
        c_skip, c_out, c_in = (c.reshape(-1, *[1] * (x.ndim - 1)) for c in self.scales(t))
        xf = x.float()
        return (c_skip * xf + c_out * self.net(c_in * xf, torch.log(t) / 4)).to(x.dtype)


def pair_pool(pairs, ts, per_t: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training pairs of a coupling at each measured time: (x_0, z, t), per_t pairs per time. Drawn
    once, so that GC's generator runs per_t x len(ts) times rather than once per training sample."""
    gen = torch.Generator().manual_seed(seed)
    x0s, zs, tts = [], [], []
    for t in ts:
        tt = torch.full((per_t,), float(t))
        x0, z = pairs(gen, per_t, tt)
        x0s.append(x0), zs.append(z), tts.append(tt)
    return torch.cat(x0s), torch.cat(zs), torch.cat(tts)


def fit_denoiser(denoiser: Denoiser, pool, steps: int, batch: int, lr: float, seed: int, progress=None) -> list[float]:
    """Train D_phi on a pool of the coupling's pairs (x_0, z, t) (see pair_pool), minibatches drawn
    uniformly from it, loss ||D(x_t, t) - x_0||^2 / c_out(t)^2 (EDM's weighting)."""
    x0s, zs, tts = pool
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(denoiser.parameters(), lr=lr)
    losses = []
    denoiser.train()
    for _ in range(steps):
        i = torch.randint(len(x0s), (batch,), generator=gen)
        x0, z, t = x0s[i], zs[i], tts[i]
        out = denoiser(perturb_batch(Kernel(denoiser.kernel, sigma_max=denoiser.sigma_max), x0, z, t), t)
        _, c_out, _ = denoiser.scales(t)
        loss = (_flat(out - x0).square().sum(1) / c_out.to(x0.dtype).square()).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if progress is not None:
            progress.update(1)
    denoiser.eval()
    return losses


@torch.no_grad()
def estimated_discrepancy_samples(denoiser: Denoiser, pairs, t: float, n: int, seed: int,
                                  batch: int = 4096) -> torch.Tensor:
    """The paper's estimator of ||xdot_t - v_t(x_t)||^2 per draw, with v from D_phi (VE:
    z - (x_t - D_phi(x_t, t))/t), on n fresh pairs of the coupling."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, n, batch):
        m = min(batch, n - start)
        tt = torch.full((m,), t)
        x0, z = pairs(gen, m, tt)
        x_t = perturb(x0, z, t, denoiser.kernel, denoiser.sigma_max)
        v = velocity_from_denoiser(x_t, denoiser(x_t, tt).to(x_t.dtype), t, denoiser.kernel, denoiser.sigma_max)
        out.append(discrepancy_terms(x0, z, t, v, denoiser.kernel, denoiser.sigma_max))
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------
# Pairs of each coupling, as functions (gen, n, t) -> (x_0, z).


def ic_pairs(data: torch.Tensor):
    def pairs(gen, n, t):
        x0, z, _ = draw_pairs(data, n, gen)
        return x0, z
    return pairs


def vc_pairs(data: torch.Tensor, mu: torch.Tensor, std: torch.Tensor):
    def pairs(gen, n, t):
        x0, z, _ = draw_pairs(data, n, gen, mu, std)
        return x0, z
    return pairs


def ot_pairs(data: torch.Tensor, batch: int):
    """Batch-OT: IC pairs, noises re-assigned within minibatches of `batch` by exact assignment."""
    from ctcoupling.core.pairing import ot_permutation

    def pairs(gen, n, t):
        x0, z, _ = draw_pairs(data, n, gen)
        for s in range(0, n, batch):
            perm = torch.from_numpy(ot_permutation(x0[s:s + batch], z[s:s + batch]))
            z[s:s + batch] = z[s:s + batch][perm]
        return x0, z
    return pairs


def gc_pairs(inner, model, mu: float = 1.0):
    """GC at time t: x_0 replaced, with probability mu, by the generator's f(a x_0 + t z, t), same z."""
    def pairs(gen, n, t):
        x0, z = inner(gen, n, t)
        x_hat = generator_endpoint(model, x0, z, t)
        use = (torch.rand(n, generator=gen) < mu).reshape(-1, *[1] * (x0.ndim - 1)).to(x0.device)
        return torch.where(use, x_hat, x0), z
    return pairs


def trigflow_tangent_gap(model, teacher, x0: torch.Tensor, z: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The continuous-time discrepancy in TrigFlow (Lu & Song 2025 Eq. 6) per pair (x_0, z), z standard
    normal: sCT's tangent df-/dt of a pair uses its velocity xdot = cos t sd z - sin t x_0, sCD-exact's
    the exact v*(x_t) = E[xdot | x_t] (`teacher`); Eq. 6 is affine in dx_t/dt with the Jacobian of f,
    so the two differ by exactly J_f(x_t) (xdot - v*(x_t)), the GC papers' R integrand in continuous
    time. Returns (||xdot - v*||^2 / D, ||J_f (xdot - v*)||^2 / D), f = `model` (a TrigFlowModel) in
    float32, its JVP in x at fixed t."""
    from ctcoupling.model.trigflow import forward_mode_attention

    kern = model.kernel
    tt = torch.full((len(x0),), t, dtype=x0.dtype, device=x0.device)
    x_t = kern.perturb(x0, tt, z)
    delta = kern.velocity(x0, tt, z) - teacher(x_t, tt)
    with torch.no_grad(), forward_mode_attention():
        _, jd = torch.func.jvp(lambda x: model(x, tt.float()), (x_t.float(),), (delta.float(),))
    d = x0[0].numel()
    return _flat(delta).square().sum(1) / d, _flat(jd.to(x0.dtype)).square().sum(1) / d


def perturb_batch(kernel: Kernel, x0: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t for a batch of times t (one per pair)."""
    return kernel.perturb(x0, t.to(x0.dtype), z)


@torch.no_grad()
def generator_endpoint(model, x0: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """GC's predicted endpoint f(x_t, t) of each pair, in the model's float32, returned in x0's dtype."""
    return model(perturb_batch(model.kernel, x0, z, t).float(), t.float()).to(x0.dtype)


# ---------------------------------------------------------------------------------------------
# Transport costs (METHODS 6, GC paper Fig. 3 and Lemma 1).


def coupling_cost(x0: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """||x - z||^2 per pair, summed over dimensions."""
    return _flat(x0 - z).square().sum(1)


@torch.no_grad()
def gc_cost_curve(model, data: torch.Tensor, ts, n: int, seed: int) -> list[tuple[float, float, float]]:
    """c(t) = E_IC ||f(x_t, t) - z||^2 on a grid of t, with its standard error: (t, c, se)."""
    out = []
    for i, t in enumerate(ts):
        gen = torch.Generator().manual_seed(seed + i)
        x0, z, _ = draw_pairs(data, n, gen)
        f = generator_endpoint(model, x0, z, torch.full((n,), float(t)))
        out.append((float(t), *mean_and_se(coupling_cost(f, z))))
    return out


# ---------------------------------------------------------------------------------------------
# R(theta) of Theorem 1 (alpha = 2) and the numerical check of the theorem.


def jvp_norms(model, x_t: torch.Tensor, t: float, tangent: torch.Tensor) -> torch.Tensor:
    """||(df/dx)(x_t, t) tangent||^2 per sample, by a forward-mode Jacobian-vector product."""
    tt = torch.full((len(x_t),), float(t), dtype=x_t.dtype)
    with warnings.catch_warnings():  # torch.func's forward AD still calls the deprecated torch.jit.script
        warnings.filterwarnings("ignore", message=".*torch.jit.script")
        _, jv = torch.func.jvp(lambda x: model(x, tt), (x_t,), (tangent,))
    return _flat(jv).square().sum(1)


def r_theta_integrand(model, data: torch.Tensor, t: float, kernel: str, n: int, seed: int, sigma_max: float = 80.0,
                      mu: torch.Tensor | None = None, std: torch.Tensor | None = None,
                      dtype=torch.float32) -> tuple[float, float]:
    """E||(df/dx)(x_t, t)(xdot_t - v_t(x_t))||^2 at one t with the exact velocity: (mean, se)."""
    gen = torch.Generator().manual_seed(seed)
    x0, z, _ = draw_pairs(data, n, gen, mu, std)
    x_t = perturb(x0, z, t, kernel, sigma_max)
    v = marginal_velocity(x_t, t, data, kernel, sigma_max, mu, std)
    delta = Kernel(kernel, sigma_max=sigma_max).velocity(x0, None, z) - v
    return mean_and_se(jvp_norms(model, x_t.to(dtype), t, delta.to(dtype)))


def trapezoid(ts, values) -> float:
    return float(np.trapezoid(np.asarray(values, dtype=np.float64), np.asarray(ts, dtype=np.float64)))


def r_theta(model, data: torch.Tensor, ts, kernel: str = "ve", n: int = 1024, seed: int = 0, sigma_max: float = 80.0,
            mu=None, std=None, weight=lambda t: 1.0) -> tuple[float, list[tuple[float, float, float]]]:
    """R(theta) = integral of lambda(t) E||J (xdot_t - v_t)||^2 dt over the grid ts (trapezoid rule),
    and the integrand per t as (t, mean, se)."""
    rows = [(float(t), *r_theta_integrand(model, data, float(t), kernel, n, seed + i, sigma_max, mu, std))
            for i, t in enumerate(ts)]
    return trapezoid(ts, [weight(t) * m for t, m, _ in rows]), rows


def _posterior(y: torch.Tensor, t: float, data: torch.Tensor, kernel: str, sigma_max: float) -> torch.Tensor:
    """p(j | x_t = y) over a small data set (IC), as a dense (n, K) matrix."""
    q, k, b = mixture_terms(y, t, data, kernel, sigma_max)
    return torch.softmax(q @ k.T + b, dim=1)


def _conditional_velocities(y: torch.Tensor, t: float, data: torch.Tensor, kernel: str, sigma_max: float):
    """xdot_t of every component given x_t = y: z_j = (y - a x_j)/t, xdot_j = z_j [- x_j/sigma_max]; (n, K, D)."""
    a = signal_scale(t, kernel, sigma_max)
    X = _flat(data)
    zj = (y[:, None, :] - a * X[None]) / t
    return zj if kernel == "ve" else zj - X[None] / sigma_max


def _f(model, x: torch.Tensor, t: float) -> torch.Tensor:
    """f_theta(x, t) in the model's float32, returned in x's dtype."""
    return model(x.float(), torch.full((len(x),), t)).to(x.dtype)


def theorem1_gap(model, data: torch.Tensor, n_steps: int, t_min: float, t_max: float, n: int, seed: int,
                 kernel: str = "ve", sigma_max: float = 80.0, weight=lambda t: 1.0) -> tuple[float, float]:
    """L_CT - L_CD for the squared loss on N = n_steps equally spaced times of [t_min, t_max], with the
    step index uniform (the losses are expectations over i), the exact velocity for CD's Euler step,
    and the CT term averaged exactly over the posterior of the data point given x_{t_{i+1}}
    (Rao-Blackwellised: its cross term with the CD difference then vanishes per sample, leaving only
    the O(dt^2) signal). IC, a small data set. Returns (mean, se) over about n draws, stratified over i
    (at least one per step)."""
    dt = (t_max - t_min) / n_steps
    gen = torch.Generator().manual_seed(seed)
    X = _flat(data)
    vals, m = [], max(1, n // n_steps)
    for i in range(n_steps):
        lo, hi = t_min + i * dt, t_min + (i + 1) * dt
        x0, z, _ = draw_pairs(data, m, gen)
        y = _flat(perturb(x0, z, hi, kernel, sigma_max))
        w = _posterior(y, hi, X, kernel, sigma_max)
        xd = _conditional_velocities(y, hi, X, kernel, sigma_max)
        v = (w[:, :, None] * xd).sum(1)
        with torch.no_grad():
            f_hi, f_cd = _f(model, y, hi), _f(model, y - dt * v, lo)
            f_ct = _f(model, (y[:, None, :] - dt * xd).reshape(-1, y.shape[1]), lo).reshape(m, len(X), -1)
        d_ct = (w * (f_hi[:, None, :] - f_ct).square().sum(2)).sum(1)
        d_cd = (f_hi - f_cd).square().sum(1)
        vals.append(weight(lo) * (d_ct - d_cd))
    return mean_and_se(torch.cat(vals))


def theorem1_limit(model, data: torch.Tensor, t_min: float, t_max: float, n_t: int, n: int, seed: int,
                   kernel: str = "ve", sigma_max: float = 80.0, weight=lambda t: 1.0) -> tuple[float, float]:
    """C T R(theta) (C = 1, squared loss), T = t_max - t_min, with the same Rao-Blackwellisation: the
    integrand sum_j p(j|x_t) ||J (xdot_j - v)||^2 = tr(J Cov J^T) from the full Jacobian (2-D data).
    Midpoint rule on n_t times; returns (value, se)."""
    T = t_max - t_min
    gen = torch.Generator().manual_seed(seed)
    X = _flat(data)
    means, ses = [], []
    for i in range(n_t):
        t = t_min + (i + 0.5) * T / n_t
        x0, z, _ = draw_pairs(data, n, gen)
        y = _flat(perturb(x0, z, t, kernel, sigma_max))
        w = _posterior(y, t, X, kernel, sigma_max)
        dev = _conditional_velocities(y, t, X, kernel, sigma_max)
        dev = dev - (w[:, :, None] * dev).sum(1, keepdim=True)
        tt = torch.full((1,), t)
        jac = torch.func.vmap(torch.func.jacrev(lambda yy: model(yy[None], tt)[0]))(y.float()).to(y.dtype)
        jd = torch.einsum("nab,nkb->nka", jac, dev)
        g = weight(t) * (w * jd.square().sum(2)).sum(1)
        m, s = mean_and_se(g)
        means.append(m)
        ses.append(s)
    return T * T * float(np.mean(means)), T * T * float(np.sqrt(np.sum(np.square(ses)))) / n_t
