"""Kernels, objective schedule and metrics of the walking skeleton (extended by the CT-core work)."""
import math

import numpy as np
import pytest
import torch

from ctcoupling.measure import distances
from ctcoupling.model.kernels import ConsistencyModel, Kernel
from ctcoupling.model.networks import MLP
from ctcoupling.train.objectives import ICTLoss, pseudo_huber


@pytest.mark.parametrize("kind", ["ve", "li"])
def test_boundary_condition_f_at_sigma_min_is_identity(kind):
    torch.manual_seed(0)
    k = Kernel(kind=kind)
    model = ConsistencyModel(MLP(2, 32, 2, 16), k)
    x = torch.randn(8, 2)
    torch.testing.assert_close(model(x, torch.full((8,), k.sigma_min)), x)
    assert not torch.allclose(model(x, torch.full((8,), 1.0)), x)


def test_ve_preconditioning_matches_formulas():
    k = Kernel()
    s = torch.tensor([0.5, 2.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = k.precond(s)
    sd = 0.5
    torch.testing.assert_close(c_in, 1 / torch.sqrt(sd**2 + s**2))
    torch.testing.assert_close(c_skip, sd**2 / ((s - 0.002) ** 2 + sd**2))
    torch.testing.assert_close(c_out, (s - 0.002) * sd / torch.sqrt(sd**2 + s**2))
    torch.testing.assert_close(c_noise, torch.log(s) / 4)


def test_karras_grid_endpoints_and_monotone():
    s = Kernel().karras(11)
    assert math.isclose(s[0].item(), 0.002, rel_tol=1e-12) and math.isclose(s[-1].item(), 80.0, rel_tol=1e-12)
    assert (s.diff() > 0).all()


def test_ict_curriculum_for_400k():
    loss = ICTLoss(Kernel(), total_steps=400_000)
    K_prime = 400_000 // 8
    assert [loss.num_scales(k * K_prime) for k in range(9)] == [11, 21, 41, 81, 161, 321, 641, 1281, 1281]
    assert loss.num_scales(K_prime - 1) == 11


def test_lognormal_index_probabilities():
    loss = ICTLoss(Kernel(), total_steps=100)
    sig = Kernel().karras(41)
    p = loss.index_probs(sig)
    assert p.shape == (40,) and math.isclose(p.sum().item(), 1.0, rel_tol=1e-9)
    i = 17
    mass = math.erf((math.log(sig[i + 1]) + 1.1) / (math.sqrt(2) * 2.0)) - math.erf(
        (math.log(sig[i]) + 1.1) / (math.sqrt(2) * 2.0))
    total = math.erf((math.log(80.0) + 1.1) / (math.sqrt(2) * 2.0)) - math.erf((math.log(0.002) + 1.1) / (math.sqrt(2) * 2.0))
    assert math.isclose(p[i].item(), mass / total, rel_tol=1e-9)


def test_pseudo_huber_on_norm():
    d = torch.tensor([[3.0, 4.0]])
    assert math.isclose(pseudo_huber(d, 0.0).item(), 5.0)
    assert math.isclose(pseudo_huber(d, 1.0).item(), math.sqrt(26) - 1, rel_tol=1e-6)


def test_w2_exact_on_known_cases():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((200, 2))
    assert distances.w2_exact(a, a[rng.permutation(200)]) == 0.0
    assert math.isclose(distances.w2_exact(a, a + [3.0, 4.0]), 5.0, rel_tol=1e-9)
