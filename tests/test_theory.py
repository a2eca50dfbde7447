"""ctcoupling.measure.theory against closed forms, brute force and the identities of METHODS 6."""
import math

import pytest
import torch

from ctcoupling.measure import theory as T
from ctcoupling.model.kernels import ConsistencyModel, Kernel
from ctcoupling.model.networks import MLP


def dense_denoiser(x, t, data, kernel="ve", sigma_max=80.0, mu=None, std=None):
    """Brute force: log N(x; a x_j [+ t mu_j], t^2 s_j^2) per component, softmax, weighted mean."""
    a = 1.0 if kernel == "ve" else 1 - t / sigma_max
    mean = a * data + (0 if mu is None else t * mu)
    scale = t * (torch.ones_like(data) if std is None else std)
    logp = torch.distributions.Normal(mean[None], scale[None]).log_prob(x[:, None]).sum(-1)
    return torch.softmax(logp, 1) @ data


@pytest.mark.parametrize("kernel", ["ve", "li"])
def test_single_point_denoiser_is_the_point_and_discrepancy_is_zero(kernel):
    point = torch.tensor([[0.3, -0.7, 0.1]], dtype=torch.float64)
    x = torch.randn(16, 3, dtype=torch.float64) * 5
    assert torch.allclose(T.ideal_denoiser(x, 2.0, point, kernel), point.expand(16, 3), atol=0, rtol=0)
    for t in (0.01, 1.0, 40.0):
        assert T.discrepancy_proxy(point, t, kernel, n=256, seed=1) == pytest.approx(0.0, abs=1e-20)


def test_two_points_give_tanh_under_ve():
    a = 0.7
    data = torch.tensor([[a], [-a]], dtype=torch.float64)
    x = torch.linspace(-3, 3, 41, dtype=torch.float64)[:, None]
    for t in (0.1, 0.5, 2.0):
        expected = a * torch.tanh(a * x / t**2)
        assert torch.allclose(T.ideal_denoiser(x, t, data), expected, rtol=1e-12, atol=1e-14)


def test_two_points_under_li_scale_the_path():
    a, t, smax = 0.7, 0.5, 80.0
    s = 1 - t / smax
    data = torch.tensor([[a], [-a]], dtype=torch.float64)
    x = torch.linspace(-3, 3, 41, dtype=torch.float64)[:, None]
    assert torch.allclose(T.ideal_denoiser(x, t, data, "li", smax), a * torch.tanh(s * a * x / t**2), rtol=1e-12)


@pytest.mark.parametrize("kernel", ["ve", "li"])
def test_chunked_streaming_softmax_matches_dense(kernel):
    gen = torch.Generator().manual_seed(0)
    data = torch.randn(300, 5, generator=gen, dtype=torch.float64)
    x = torch.randn(70, 5, generator=gen, dtype=torch.float64) * 1.5
    dense = dense_denoiser(x, 0.8, data, kernel)
    for chunk in (7, 64, 1 << 20):  # many blocks of data points and queries, and a single block
        assert torch.allclose(T.ideal_denoiser(x, 0.8, data, kernel, chunk_elements=chunk), dense, atol=1e-12)


@pytest.mark.parametrize("kernel", ["ve", "li"])
def test_vc_gaussian_mixture_matches_brute_force(kernel):
    gen = torch.Generator().manual_seed(1)
    data = torch.randn(50, 4, generator=gen, dtype=torch.float64)
    mu = 0.5 * torch.randn(50, 4, generator=gen, dtype=torch.float64)
    std = 0.2 + torch.rand(50, 4, generator=gen, dtype=torch.float64)
    x = torch.randn(30, 4, generator=gen, dtype=torch.float64) * 2
    for t in (0.3, 3.0):
        ours = T.ideal_denoiser(x, t, data, kernel, mu=mu, std=std, chunk_elements=50)
        assert torch.allclose(ours, dense_denoiser(x, t, data, kernel, mu=mu, std=std), atol=1e-10)


@pytest.mark.parametrize("kernel", ["ve", "li"])
def test_discrepancy_is_posterior_spread_over_t_squared(kernel):
    """xdot - v = -(x_0 - D*)/t on both paths, per draw."""
    gen = torch.Generator().manual_seed(2)
    data = torch.randn(40, 2, generator=gen, dtype=torch.float64)
    t = 0.6
    x0, z, _ = T.draw_pairs(data, 500, torch.Generator().manual_seed(3))
    x_t = T.perturb(x0, z, t, kernel, 80.0)
    d = T.ideal_denoiser(x_t, t, data, kernel)
    per_draw = T.discrepancy_terms(x0, z, t, T.velocity_from_denoiser(x_t, d, t, kernel), kernel)
    assert torch.allclose(per_draw, (x0 - d).square().sum(1) / t**2, rtol=1e-9, atol=1e-12)
    assert T.discrepancy_proxy(data, t, kernel, 500, 3) == pytest.approx(per_draw.mean().item(), rel=1e-12)


def test_marginal_velocity_is_the_conditional_mean_of_xdot():
    """Monte Carlo check of v_t(x) = E[xdot | x_t = x]: regress xdot on bins of x_t in 1-D."""
    data = torch.tensor([[-1.0], [0.2], [1.5]], dtype=torch.float64)
    t = 0.8
    x0, z, _ = T.draw_pairs(data, 400_000, torch.Generator().manual_seed(4))
    x_t = T.perturb(x0, z, t, "ve", 80.0)
    for centre in (-1.0, 0.0, 0.7):
        near = (x_t[:, 0] - centre).abs() < 0.01
        v = T.marginal_velocity(torch.tensor([[centre]], dtype=torch.float64), t, data)
        assert z[near, 0].mean().item() == pytest.approx(v.item(), abs=0.05)


def test_estimator_with_the_ideal_denoiser_is_exact():
    """The paper's estimator, fed D* instead of a trained D_phi, reproduces the exact per-draw values."""
    gen = torch.Generator().manual_seed(5)
    data = torch.randn(64, 2, generator=gen, dtype=torch.float64)

    class Ideal(T.Denoiser):
        def forward(self, x, t):
            return T.ideal_denoiser(x, float(t[0]), data, self.kernel, self.sigma_max)

    ideal = Ideal(torch.nn.Identity())
    est = T.estimated_discrepancy_samples(ideal, T.ic_pairs(data), 0.7, 256, seed=9)
    x0, z = T.ic_pairs(data)(torch.Generator().manual_seed(9), 256, torch.full((256,), 0.7))
    x_t = T.perturb(x0, z, 0.7, "ve", 80.0)
    exact = T.discrepancy_terms(x0, z, 0.7, T.marginal_velocity(x_t, 0.7, data))
    assert torch.allclose(est, exact, rtol=1e-6)  # D_phi sees t in float32


def test_trained_denoiser_estimates_the_exact_discrepancy():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(6)
    data = torch.cat([torch.randn(128, 2, generator=gen) * 0.05 + torch.tensor([0.0, 0.5]),
                      torch.randn(128, 2, generator=gen) * 0.05 - torch.tensor([0.0, 0.5])]).double()
    ts = [0.3, 1.0]
    den = T.Denoiser(MLP(2, 64, 2, 16))
    pool = T.pair_pool(T.ic_pairs(data), ts, 2048, seed=0)
    losses = T.fit_denoiser(den, pool, steps=600, batch=256, lr=2e-3, seed=0)
    assert sum(losses[-50:]) < sum(losses[:50])
    for t in ts:
        est = T.estimated_discrepancy_samples(den, T.ic_pairs(data), t, 4096, seed=1).mean().item()
        exact = T.discrepancy_proxy(data, t, n=4096, seed=2)
        assert est == pytest.approx(exact, rel=0.25)


def test_ot_pairs_cost_less_than_ic_and_gc_with_identity_generator_keeps_pairs():
    gen = torch.Generator().manual_seed(7)
    data = torch.randn(500, 2, generator=gen, dtype=torch.float64) * 0.3 + 1.0
    x_ic, z_ic = T.ic_pairs(data)(torch.Generator().manual_seed(0), 512, torch.zeros(512))
    x_ot, z_ot = T.ot_pairs(data, 128)(torch.Generator().manual_seed(0), 512, torch.zeros(512))
    assert torch.equal(x_ic, x_ot)  # same draws, noises only re-assigned
    assert sorted(z_ot[:128, 0].tolist()) == sorted(z_ic[:128, 0].tolist())
    assert T.coupling_cost(x_ot, z_ot).mean() < 0.8 * T.coupling_cost(x_ic, z_ic).mean()

    class Boundary(torch.nn.Module):  # f(x_t, t) = x_t - t z is impossible to know; f = x_t keeps x_t
        kernel = Kernel()

        def forward(self, x, t):
            return x

    x_gc, z_gc = T.gc_pairs(T.ic_pairs(data), Boundary(), mu=1.0)(
        torch.Generator().manual_seed(0), 512, torch.full((512,), 0.5))
    assert torch.allclose(x_gc, (x_ic + 0.5 * z_ic).float().double(), atol=1e-6)
    assert torch.equal(z_gc, z_ic)


def test_gc_cost_curve_starts_at_the_ic_cost():
    """f(x, sigma_min) = x (boundary condition): c(sigma_min) is the IC cost of the same draws, with
    x_0 moved by sigma_min z."""
    torch.manual_seed(0)
    model = ConsistencyModel(MLP(2, 32, 1, 8), Kernel())
    data = torch.randn(200, 2, dtype=torch.float64)
    (t, c, _), = T.gc_cost_curve(model, data, [0.002], 1000, seed=3)
    x0, z, _ = T.draw_pairs(data, 1000, torch.Generator().manual_seed(3))
    assert c == pytest.approx(T.coupling_cost(x0 + 0.002 * z, z).mean().item(), rel=1e-5)


def test_jvp_norms_match_an_explicit_jacobian():
    A = torch.tensor([[2.0, 1.0], [0.0, -3.0]])
    model = lambda x, t: torch.tanh(x @ A.T) * t[:, None]  # noqa: E731
    x = torch.randn(5, 2)
    delta = torch.randn(5, 2)
    ours = T.jvp_norms(model, x, 0.5, delta)
    for i in range(5):
        J = torch.autograd.functional.jacobian(lambda y: model(y[None], torch.tensor([0.5]))[0], x[i])
        assert ours[i].item() == pytest.approx((J @ delta[i]).square().sum().item(), rel=1e-5)


def test_theorem1_scaled_gap_converges_to_T_R_theta():
    """Theorem 1 (alpha = 2, squared loss): N^2 (L_CT - L_CD) -> T R(theta) on a small random model."""
    torch.manual_seed(0)
    model = ConsistencyModel(MLP(2, 32, 2, 8), Kernel()).eval()
    gen = torch.Generator().manual_seed(8)
    data = torch.randn(8, 2, generator=gen, dtype=torch.float64) * 0.5
    limit, limit_se = T.theorem1_limit(model, data, 0.002, 1.0, 32, 128, seed=0)
    ratios = []
    for N in (2, 64):
        gap, se = T.theorem1_gap(model, data, N, 0.002, 1.0, 4096, seed=N)
        ratios.append(N * N * gap / limit)
        assert se < abs(gap)  # the Rao-Blackwellised estimate resolves the O(1/N^2) gap
    assert abs(ratios[1] - 1) < 0.1
    assert abs(ratios[1] - 1) < abs(ratios[0] - 1)


def test_bad_arguments_raise():
    data = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="kernel"):
        T.ideal_denoiser(data, 1.0, data, kernel="vp")
    with pytest.raises(ValueError, match="positive"):
        T.ideal_denoiser(data, 0.0, data)
    assert math.isfinite(T.discrepancy_proxy(data.double(), 1e-3, n=8))
