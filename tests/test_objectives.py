"""iCT and ECT objectives: schedules, targets, weights, the shared dropout mask (METHODS 2, 3)."""
import math

import pytest
import torch

from ctcoupling.train.couplings import IndependentCoupling, Pair
from ctcoupling.model.kernels import ConsistencyModel, Kernel
from ctcoupling.model.networks import MLP
from ctcoupling.train.objectives import ECTLoss, ICTLoss, paired_passes
from ctcoupling.train.randomness import BatchRNG


class FixedNoise:
    """A coupling that hands the objective a given z (to compare against closed forms)."""

    def __init__(self, z):
        self.z = z

    def __call__(self, x, lower, rng, ctx):
        return Pair(x, self.z)


def model(kind="ve", dropout=0.0):
    torch.manual_seed(0)
    return ConsistencyModel(MLP(2, 32, 2, 16, dropout=dropout), Kernel(kind=kind))


def test_paired_passes_share_the_dropout_mask():
    m = model(dropout=0.5).train()
    x, s = torch.randn(64, 2), torch.full((64,), 3.0)
    student, teacher = paired_passes(m, x, s, x, s)
    torch.testing.assert_close(student, teacher)
    again, _ = paired_passes(m, x, s, x, s)
    assert not torch.allclose(again, student)  # a fresh mask on the next step
    assert student.requires_grad and not teacher.requires_grad


def test_ict_loss_is_per_sample_and_weighted_by_grid_gap():
    loss_fn = ICTLoss(Kernel(), total_steps=100)
    x = torch.randn(32, 2)
    loss, stats = loss_fn(model(), x, IndependentCoupling(), 0, BatchRNG(0))
    assert loss.shape == (32,) and (loss >= 0).all() and stats == {"N": 11}
    loss.mean().backward()


def test_ict_summary_covers_all_steps():
    rows = ICTLoss(Kernel(), total_steps=400_000).summary()
    assert rows[0] == "N =    11 for steps 0-49999" and rows[-1] == "N =  1281 for steps 350000-399999"


def test_ect_stage_and_r_of_t():
    ect = ECTLoss(Kernel(), total_steps=400_000)  # q 2, k 8, b 1, 8 stages
    assert [ect.stage(s) for s in (0, 49_999, 50_000, 399_999)] == [0, 0, 1, 7]
    t = torch.tensor([0.5, 2.0, 80.0], dtype=torch.float64)
    for step, stage in [(0, 0), (200_000, 4)]:
        expected = t * (1 - 2.0 ** -(stage + 1) * (1 + 8 * torch.sigmoid(-t)))
        torch.testing.assert_close(ect.t_to_r(t, step), expected.clamp(min=0))
    # stage 0 at small t: 1 - 0.5 * (1 + 8 * sigmoid(-t)) < 0, so r clamps to the data end
    assert ect.t_to_r(torch.tensor([0.01]), 0).item() == 0.0
    assert (ect.t_to_r(t, 399_999) < t).all() and (ect.t_to_r(t, 399_999) > 0.98 * t).all()


def test_ect_imagenet_schedule():
    ect = ECTLoss(Kernel(), total_steps=200_000, q=4, n_stages=4)
    t = torch.tensor([1.0])
    torch.testing.assert_close(ect.t_to_r(t, 150_000), t * (1 - 4.0**-4 * (1 + 8 * torch.sigmoid(-t))))


def test_ect_target_is_the_data_where_r_is_zero():
    ect = ECTLoss(Kernel(), total_steps=100, P_mean=-6.0, P_std=0.1)  # t ~ sigma_min: r = 0 everywhere
    m = model()
    x, z = torch.randn(16, 2), torch.randn(16, 2)
    loss, _ = ect(m, x, FixedNoise(z), 0, BatchRNG(0))
    t = ect.sample_t(16, BatchRNG(0))
    student = m(x + t[:, None] * z, t)
    expected = (student - x).norm(dim=1) / t  # c = 0: plain L2 norm; consistency weight 1/(t - 0)
    torch.testing.assert_close(loss, expected)


def test_ect_weightings():
    k = Kernel()
    t, r = torch.tensor([1.0, 4.0]), torch.tensor([0.5, 3.0])
    torch.testing.assert_close(ECTLoss(k, 10).weight(t, r), 1 / (t - r))
    torch.testing.assert_close(ECTLoss(k, 10, weighting="karras").weight(t, r), (t**2 + 0.25) / (t * 0.5) ** 2)
    with pytest.raises(ValueError):
        ECTLoss(k, 10, weighting="nope")


def test_ect_li_kernel_clamps_t_to_sigma_max():
    ect = ECTLoss(Kernel(kind="li"), total_steps=10, P_mean=8.0)
    t = ect.sample_t(100, BatchRNG(0))
    assert t.max().item() == 80.0 and t.min().item() >= 0.002
    loss, _ = ect(model("li"), torch.randn(100, 2), IndependentCoupling(), 5, BatchRNG(1))
    assert torch.isfinite(loss).all()


def test_batch_rng_is_invariant_to_world_size():
    one = BatchRNG(3)
    ranks = [BatchRNG(3, rank=r, world=2) for r in range(2)]
    full = one.randn(8, 2)
    torch.testing.assert_close(torch.cat([g.randn(4, 2) for g in ranks]), full)
    idx = one.randint(100, 6)
    assert torch.equal(torch.cat([g.randint(100, 3) for g in ranks]), idx)
    assert not torch.equal(ranks[0].randn(4), ranks[1].randn(4))


def test_lognormal_index_sampling_frequencies_match_probabilities():
    loss_fn = ICTLoss(Kernel(), total_steps=100)
    sig = Kernel().karras(11)
    p = loss_fn.index_probs(sig)
    i = BatchRNG(0).multinomial(p, 200_000)
    freq = torch.bincount(i, minlength=10).double() / 200_000
    assert (freq - p).abs().max().item() < 0.005
    assert math.isclose(p.sum().item(), 1.0)
