"""sCT / sCD-exact in TrigFlow (trigflow.py, objectives.SCTLoss), against the paper's equations
(Lu & Song 2025, arXiv 2410.11081 v2) evaluated independently of the code under test: float64
central finite differences instead of the JVP, the score of the mixture's density by autograd
(Tweedie) instead of the closed-form posterior, the theory stage's VE ideal denoiser instead of the
TrigFlow one."""
import math

import numpy as np
import pytest
import torch

from ctcoupling.train import couplings
from ctcoupling.data import datasets
from ctcoupling.model import networks
from ctcoupling.model import sampling
from ctcoupling.measure import theory
from ctcoupling.model import trigflow
from ctcoupling.model.kernels import Kernel
from ctcoupling.train.objectives import Draws, SCTLoss

SD = 0.5
KERNEL = Kernel("trigflow", sigma_max=80.0, sigma_data=SD)
NETS = {  # every network kind the suite has, attention included in the U-Nets
    "mlp": ({"kind": "mlp", "hidden": 32, "depth": 2, "emb_dim": 16, "dropout": 0.0}, (2,), 0.001),
    "songunet": ({"kind": "songunet", "model_channels": 8, "channel_mult": [1, 2], "num_blocks": 1,
                  "attn_resolutions": [4], "dropout": 0.0}, (1, 8, 8), 1.0),
    "edm2": ({"kind": "edm2", "model_channels": 8, "channel_mult": [1, 2], "num_blocks": 1,
              "attn_resolutions": [4], "channels_per_head": 8}, (1, 8, 8), 1.0),
}


def _model(kind: str, logvar_channels: int = 0) -> trigflow.TrigFlowModel:
    """A float64 TrigFlow model whose network output is O(1): the zero-initialised output layers
    (EDM2's gain, EDM's 1e-5 conv) perturbed, so the network's part of the tangent is not negligible."""
    spec, shape, scale = NETS[kind]
    torch.manual_seed(0)
    net = networks.build(spec, shape)
    model = trigflow.TrigFlowModel(net, KERNEL, scale, logvar_channels).double().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "gain" in name:
                p.fill_(1.0)
            elif p.ndim and p.abs().max() < 1e-3:
                p.normal_(0, 0.3)
    return model


def _batch(shape, n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    x_t = torch.randn((n, *shape), generator=g, dtype=torch.float64) * 0.7
    v = torch.randn((n, *shape), generator=g, dtype=torch.float64)
    t = 0.2 + 1.2 * torch.rand(n, generator=g, dtype=torch.float64)
    return x_t, v, t


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def _fd(fn, x_t, t, v, h=1e-5):
    """The float64 central difference of fn along (v, 1): (fn(x + h v, t + h) - fn(x - h v, t - h)) / 2h."""
    return (fn(x_t + h * v, t + h) - fn(x_t - h * v, t - h)) / (2 * h)


@pytest.mark.parametrize("kind", list(NETS))
def test_jvp_tangent_equals_a_float64_finite_difference(kind):
    model = _model(kind)
    x_t, v, t = _batch(NETS[kind][1])
    F_minus, jvp_out = trigflow.jvp_passes(model, x_t, t, v)
    cs = (torch.cos(t) * torch.sin(t)).reshape(-1, *[1] * (x_t.ndim - 1))
    dF_fd = _fd(lambda x, s: model(x, s, output="F"), x_t, t, v)
    assert dF_fd.norm() > 0.1 * F_minus.norm()  # the network's time and space dependence is not negligible
    assert _rel(jvp_out / cs, dF_fd) < 1e-6  # the rearranged JVP is cos t sin t dF/dt (Sec. 5.1)
    # Eq. 6 through Alg. 1's g = cos(t) df-/dt (r = 1), against the difference of f itself
    g = trigflow.tangent_target(F_minus, jvp_out, x_t, v, t, SD, r=1.0)
    df_fd = _fd(lambda x, s: model(x, s), x_t, t, v)
    assert _rel(g / torch.cos(t).reshape(cs.shape), df_fd) < 1e-6
    torch.testing.assert_close(F_minus, model(x_t, t, output="F"), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", list(NETS))
def test_boundary_condition_holds_exactly(kind):
    model = _model(kind).float()
    x = torch.randn(3, *NETS[kind][1])
    assert torch.equal(model(x, torch.zeros(3)), x)
    assert not torch.equal(model(x, torch.full((3,), 0.3)), x)


def test_loss_gradient_is_the_papers_gradient():
    """With w = 0, no normalisation and r = 1, grad of mean (1/D) ||F - F- - g||^2 is (2/D) x the
    paper's grad E[-w(t) sd sin(t) F^T df-/dt] with w(t) = 1/(sd tan t), i.e. grad E[-cos(t) F^T df-/dt]
    (Sec. 4.2), df-/dt here by a float64 finite difference of f, not by the JVP."""
    model = _model("mlp")
    x0, eps, t = _batch((2,), n=16, seed=3)
    objective = SCTLoss(KERNEL, 100, tangent_c=0.0, warmup_steps=0)
    loss, _ = objective.loss(model, Draws(50, x0, (t,), eps), couplings.IndependentCoupling())
    ours = torch.autograd.grad(loss.mean(), list(model.parameters()))

    x_t = KERNEL.perturb(x0, t, eps)
    v = KERNEL.velocity(x0, t, eps)
    with torch.no_grad():
        df = _fd(lambda x, s: model(x, s), x_t, t, v)
    F = model(x_t, t, output="F")
    paper = (-(torch.cos(t)[:, None] * F * df).sum(1)).mean()
    expected = torch.autograd.grad(paper, list(model.parameters()))
    D = x0[0].numel()
    for a, b in zip(ours, expected):
        assert _rel(a * D / 2, b) < 1e-6


def test_tangent_normalisation_and_warmup():
    g = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    torch.testing.assert_close(trigflow.normalize_tangent(g, 0.1), torch.tensor([[3 / 5.1, 4 / 5.1], [0.0, 0.0]]))
    assert [trigflow.warmup(s, 100) for s in (0, 50, 100, 1000)] == [0.0, 0.5, 1.0, 1.0]
    assert trigflow.warmup(0, 0) == 1.0
    # r scales only the second term of Eq. 6: at r = 0, g = -cos^2 t (sd F- - v)
    x, v, F, J = (torch.randn(4, 2) for _ in range(4))
    t = torch.rand(4)
    c = torch.cos(t)[:, None]
    torch.testing.assert_close(trigflow.tangent_target(F, J, x, v, t, SD, r=0.0), -c * c * (SD * F - v))


def _mixture_velocity_by_score(x_t, t, means, std):
    """v = (cos t x_t - D) / sin t with Tweedie's D = (x_t + sin^2 t sd^2 grad log p_t(x_t)) / cos t,
    the score by autograd of the mixture's log density."""
    y = x_t.clone().requires_grad_(True)
    c, s = torch.cos(t)[:, None], torch.sin(t)[:, None]
    var = c**2 * std**2 + s**2 * SD**2
    d = y[:, None, :] - c[:, :, None] * means[None]
    logp = torch.logsumexp(-d.square().sum(2) / (2 * var) - torch.log(var), 1)  # log var: constant in y
    score = torch.autograd.grad(logp.sum(), y)[0]
    D = (x_t + s**2 * SD**2 * score) / c
    return (c * x_t - D) / s


def test_mixture_teacher_is_the_exact_velocity():
    means, std = datasets.mixture({"source": "two_gaussians", "std": 0.05})
    teacher = trigflow.MixtureTeacher(torch.tensor(means), std, SD)
    x_t, _, t = _batch((2,), n=64, seed=4)
    t = torch.cat([t, torch.tensor([0.01, 1.56], dtype=torch.float64).repeat(32)])
    x_t = torch.cat([x_t, x_t])
    expected = _mixture_velocity_by_score(x_t, t, torch.tensor(means), std)
    torch.testing.assert_close(teacher(x_t, t), expected, rtol=1e-9, atol=1e-9)


def test_empirical_teacher_is_the_theory_stages_ideal_denoiser_in_trigflow_time():
    """x_t = cos t x_0 + sin t sd z is cos t times the VE point x_0 + (sd tan t) z, so
    E[x_0 | x_t] = D_VE(x_t / cos t, sd tan t) (App. B.2, Eq. 30)."""
    x = torch.from_numpy(datasets.toy_2d("checkerboard", 300, np.random.default_rng(0))).double()
    teacher = trigflow.EmpiricalTeacher(x, SD)
    for tt in (0.05, 0.6, 1.4):
        x_t = torch.randn(32, 2, dtype=torch.float64) * 0.6
        t = torch.full((32,), tt, dtype=torch.float64)
        D = theory.ideal_denoiser(x_t / math.cos(tt), SD * math.tan(tt), x)
        torch.testing.assert_close(teacher.denoise(x_t, t), D, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(teacher(x_t, t), (math.cos(tt) * x_t - D) / math.sin(tt), rtol=1e-9, atol=1e-9)


def test_scd_exact_tangent_is_the_exact_velocitys():
    """sCD-exact's target g is cos(t) df-/dt along the exact velocity: a finite difference of f along
    (v*, 1), v* from the mixture's score (not from the teacher the objective uses)."""
    means, std = datasets.mixture({"source": "two_gaussians", "std": 0.05})
    teacher = trigflow.MixtureTeacher(torch.tensor(means), std, SD)
    model = _model("mlp")
    x0, eps, t = _batch((2,), n=16, seed=5)
    objective = SCTLoss(KERNEL, 100, tangent_c=0.0, warmup_steps=0, teacher=teacher)
    g, x_t = objective.targets(model, Draws(99, x0, (t,), eps), couplings.IndependentCoupling())[2:4]
    v_star = _mixture_velocity_by_score(x_t, t, torch.tensor(means), std)
    df = _fd(lambda x, s: model(x, s), x_t, t, v_star)
    assert _rel(g, torch.cos(t)[:, None] * df) < 1e-6
    # ...and it is not the single-pair (sCT) tangent
    v_pair = KERNEL.velocity(x0, t, eps)
    assert _rel(g, torch.cos(t)[:, None] * _fd(lambda x, s: model(x, s), x_t, t, v_pair)) > 1e-2


def test_trigflow_kernel_and_sampler():
    x, z, t = torch.randn(5, 2), torch.randn(5, 2), torch.rand(5)
    torch.testing.assert_close(KERNEL.perturb(x, t, z), torch.cos(t)[:, None] * x + torch.sin(t)[:, None] * SD * z)
    assert KERNEL.t_max == pytest.approx(math.atan(160.0))
    seen = []

    class Spy(torch.nn.Module):
        kernel = KERNEL
        net = torch.nn.Identity()

        def forward(self, x, t, labels=None):
            seen.append((x.clone(), t.clone()))
            return x

    z = torch.randn(4, 2)
    sampling.multistep(Spy(), z, t_mid=[1.1], generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(seen[0][0], SD * z)  # x_{t_max} ~ N(0, sd^2 I)
    assert torch.all(seen[0][1] == KERNEL.t_max) and torch.all(seen[1][1] == 1.1)


def test_proposal_is_log_normal_on_sd_tan_t():
    tau = torch.randn(100000, generator=torch.Generator().manual_seed(0)) * 1.4 - 1.0
    t = trigflow.proposal_times(tau, SD)
    torch.testing.assert_close(torch.log(SD * torch.tan(t)), tau, rtol=1e-4, atol=1e-4)
    assert 0 < t.min() and t.max() < math.pi / 2


class _ZeroNet(torch.nn.Module):
    def forward(self, x, c_noise):
        return torch.zeros_like(x)


def test_continuous_discrepancy_is_the_ve_discrepancy_in_trigflow_time():
    """x_t = cos t (x_0 + sd tan t z), so xdot - v* = (sd / cos t)(z - E[z | x_t]): the velocity gap is
    sd^2 / cos^2 t times the theory stage's VE R~ at sigma = sd tan t (per draw, the same draws); with
    F = 0, f = cos t x and the tangent gap is cos^2 t times the velocity gap."""
    x = torch.from_numpy(datasets.toy_2d("checkerboard", 200, np.random.default_rng(1))).double()
    model = trigflow.TrigFlowModel(_ZeroNet(), KERNEL, logvar_channels=0)
    teacher = trigflow.EmpiricalTeacher(x, SD)
    for tt in (0.1, 0.7, 1.3):
        sigma = SD * math.tan(tt)
        x0, z, _ = theory.draw_pairs(x, 512, torch.Generator().manual_seed(3))
        proxy, weighted = theory.trigflow_tangent_gap(model, teacher, x0, z, tt)
        x0, z, _ = theory.draw_pairs(x, 512, torch.Generator().manual_seed(3))
        ve = theory.discrepancy_terms(x0, z, sigma, theory.marginal_velocity(x0 + sigma * z, sigma, x))
        torch.testing.assert_close(proxy, SD**2 / math.cos(tt) ** 2 * ve / 2, rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(weighted, math.cos(tt) ** 2 * proxy, rtol=1e-5, atol=1e-7)
