"""Couplings (METHODS 4): IC, batch-OT, VC, GC, VC + GC."""
import copy
import itertools
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import write_params
from ctcoupling.train import couplings
from ctcoupling.model import networks
from ctcoupling.train import training
from ctcoupling.config import params as P
from ctcoupling.train.couplings import Context
from ctcoupling.core.errors import UserError
from ctcoupling.model.kernels import ConsistencyModel, Kernel
from ctcoupling.train.objectives import ECTLoss, ICTLoss
from ctcoupling.train.randomness import BatchRNG


def ctx(step=0, max_weight=1.0):
    return Context(step, Kernel(), max_weight)


def test_ot_assignment_is_a_permutation_that_never_costs_more():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, z = (torch.from_numpy(rng.standard_normal((32, 3))) for _ in range(2))
        perm = couplings.ot_permutation(x, z)
        assert sorted(perm) == list(range(32))
        assert ((x - z[perm]) ** 2).sum() <= ((x - z) ** 2).sum() + 1e-12


def test_ot_matches_brute_force_on_small_batches():
    x, z = torch.randn(6, 2), torch.randn(6, 2)
    best = min(itertools.permutations(range(6)), key=lambda p: ((x - z[list(p)]) ** 2).sum().item())
    assert list(couplings.ot_permutation(x, z)) == list(best)


def test_assignment_is_pots_emd_plan_with_ties():
    """assignment.solve calls POT's network simplex without ot.emd's wrapper: the same permutation as
    ot.emd's plan (read off by argmax), also where duplicated minibatch rows make the optimum
    non-unique (the digits draw with replacement), and an optimum where scipy's may differ."""
    import ot
    from scipy.optimize import linear_sum_assignment

    from ctcoupling.core import assignment

    rng = np.random.default_rng(0)
    for d in (2, 64):
        x = rng.standard_normal((48, d))
        x[24:] = x[:24]  # every row twice: ties
        cost = couplings.ot_cost(torch.from_numpy(x), torch.from_numpy(rng.standard_normal((48, d)))).numpy()
        ours = assignment.solve(cost)
        assert np.array_equal(ours, ot.emd(np.full(48, 1 / 48), np.full(48, 1 / 48), cost).argmax(1))
        rows, cols = linear_sum_assignment(cost)
        assert cost[np.arange(48), ours].sum() == pytest.approx(cost[rows, cols].sum(), rel=1e-12)


def test_solver_process_answers_in_order_and_its_death_falls_back_in_line():
    from ctcoupling.core import assignment
    from ctcoupling.train.objectives import Draws

    rng = np.random.default_rng(1)
    costs = [rng.random((40, 40)) for _ in range(3)]
    solver = assignment.Solver(40)
    solver.submit(costs[0])
    solver.submit(costs[1])
    with pytest.raises(ValueError, match="at most 2"):
        solver.submit(costs[2])
    assert [list(solver.result()), list(solver.result())] == [list(assignment.solve(c)) for c in costs[:2]]
    solver.submit(costs[2][:30, :30])  # fewer points than the buffer holds
    assert list(solver.result()) == list(assignment.solve(costs[2][:30, :30]))

    ot_coupling = couplings.BatchOTCoupling()
    x, eps = torch.randn(32, 2), torch.randn(32, 2)
    ot_coupling.prepare(Draws(5, x, (), eps))
    ot_coupling._solver._proc.kill()
    ot_coupling._solver._proc.wait()
    pair = ot_coupling(x, eps, None, ctx(step=5))  # the dead child: solved in line, the same permutation
    torch.testing.assert_close(pair.z, eps[torch.from_numpy(couplings.ot_permutation(x, eps))], rtol=0, atol=0)
    assert not ot_coupling.prefetch


def test_ot_coupling_reports_its_cost_reduction():
    pair = couplings.BatchOTCoupling()(torch.randn(64, 2), torch.randn(64, 2), None, ctx())
    assert pair.stats["ot_cost"] < pair.stats["ic_cost"]


def test_ot_scope_global_takes_the_rows_of_the_global_assignment_and_rank_its_own(monkeypatch):
    """A global batch of 64 on 2 ranks of 32 (rank r: rows 32 r to 32 r + 31), the collective replaced
    by the global batch it would gather. `global`: rank r's noises are rows 32 r.. of the 1-process
    pairs, prepared a step ahead or solved in line; `rank`: its own rows' assignment (sony/vct's
    per-device pairing: models/cm_base.py coupling_fn pairs the batch each device's training_step,
    lightning_modules/lightning_cm.py, is handed)."""
    from ctcoupling.train.objectives import Draws

    torch.manual_seed(0)
    x, eps = torch.randn(64, 2), torch.randn(64, 2)
    one = eps[torch.from_numpy(couplings.ot_permutation(x, eps))]
    gathered = []

    def gather(t, world):
        assert world == 2
        gathered.append(t)
        return {id(x_r): x, id(eps_r): eps}[id(t)]

    monkeypatch.setattr(couplings, "gather_rows", gather)
    own = []
    for rank in (0, 1):
        x_r, eps_r = x[32 * rank:32 * (rank + 1)], eps[32 * rank:32 * (rank + 1)]
        for prefetch in (True, False):
            ahead = couplings.BatchOTCoupling(prefetch, "global", rank, 2)
            ahead.prepare(Draws(3, x_r, (), eps_r))  # gathers here, not in the step
            n = len(gathered)
            assert torch.equal(ahead(x_r, eps_r, None, ctx(step=3)).z, one[32 * rank:32 * (rank + 1)])
            assert len(gathered) == n
        in_line = couplings.BatchOTCoupling(False, "global", rank, 2)(x_r, eps_r, None, ctx())
        assert torch.equal(in_line.z, one[32 * rank:32 * (rank + 1)])
        n = len(gathered)
        per_rank = couplings.BatchOTCoupling(True, "rank", rank, 2)(x_r, eps_r, None, ctx())
        assert len(gathered) == n  # rank scope gathers nothing
        assert torch.equal(per_rank.z, eps_r[torch.from_numpy(couplings.ot_permutation(x_r, eps_r))])
        own.append(per_rank.z)
    assert not torch.equal(torch.cat(own), one)  # the scopes pair differently here
    for scope in ("global", "rank"):  # one process: the scope changes nothing
        assert torch.equal(couplings.BatchOTCoupling(scope=scope)(x, eps, None, ctx()).z, one)


def test_ot_scope_is_a_setting_of_ot_only_and_defaults_to_global(tmp_path):
    params = P.load(write_params(tmp_path / "p.yaml"))
    params["grid"] = [{"dataset": ["two_gaussians"], "objective": ["ict"], "coupling": ["ot"], "seed": [0]}]
    params.pop("theory")
    assert P.experiments(P.validate(params))[0].config["coupling"] == {"kind": "ot", "scope": "global"}
    for name, scope, error in (("ot", "device", "'device' is not one of ['global', 'rank']"),
                               ("ic", "rank", "does not apply to coupling kind 'ic'")):
        bad = copy.deepcopy(params)
        bad["couplings"][name]["scope"] = scope
        with pytest.raises(UserError, match=re.escape(error)):
            P.validate(bad)


def test_ot_scope_is_compared_with_the_official_run():
    """consistency_GC pairs the batch of its one process (README: torchrun --nproc_per_node=1), sony/vct
    each device's batch (models/cm_base.py coupling_fn): a preset pairing otherwise is a difference
    that describe names, explained (cifar10_ict's gathered 512) or not."""
    from conftest import ROOT
    from ctcoupling.pipeline import describe

    gc = P.load(ROOT / "params" / "cifar10_gc_net.yaml")
    gc["couplings"]["ot"]["scope"] = "rank"
    rows = [r for r in describe.describe(gc) if r["settings"]["coupling"]["kind"] == "ot"]
    assert rows and all(r["deviations"] == [{"key": "coupling.scope", "ours": "rank", "official": "global",
                                             "why": None}] for r in rows)
    assert "scope rank: each of the 2 ranks assigns its own 256 rows" in describe.text(rows, "x")
    vct = P.load(ROOT / "params" / "cifar10_ict.yaml")
    vct["grid"][0]["coupling"] = ["ot"]
    [row] = describe.describe(vct)
    assert [d["key"] for d in row["deviations"]] == ["coupling.scope"] and row["deviations"][0]["why"]
    assert "scope global: one assignment of the global batch of 512, gathered from the 4 ranks" in \
        describe.text([row], "x")


@pytest.mark.full  # torchrun ranks
def test_ot_scope_on_two_ranks_under_torchrun(tmp_path):
    """2 CPU ranks (gloo) under torchrun draw a global batch of 64 and pair it for 3 steps, as the
    training loop does (the first step in line, the others prepared a step ahead). `global`: each rank's
    pairs are its rows of the 1-process pairs, bit for bit. `rank`: each rank's noises are the
    assignment of its own 32 rows, sony/vct's per-device pairing (models/cm_base.py coupling_fn solves
    the plan of the batch lightning_modules/lightning_cm.py training_step gives each device)."""
    import json

    import ot_scope_ranks
    from conftest import ENV
    from ctcoupling.core import assignment

    params = P.load(write_params(tmp_path / "p.yaml", train=dict(steps=4, batch=64)))
    params["grid"] = [{"dataset": ["two_gaussians"], "objective": ["ict"], "coupling": ["ot"], "seed": [0]}]
    params.pop("theory")
    config = P.experiments(P.validate(params))[0].config
    configs = {scope: P.deep_merge(config, {"coupling": {"scope": scope}}) for scope in ("global", "rank")}
    (tmp_path / "configs.json").write_text(json.dumps(configs))
    p = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(Path(ot_scope_ranks.__file__)), str(tmp_path / "configs.json"), str(tmp_path)],
                         env=dict(ENV, OMP_NUM_THREADS="1", **assignment._LIGHT_POT),  # POT without torch: ranks start faster
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    one = ot_scope_ranks.pairs(configs["global"])  # meanwhile, the 1-process pairs
    _, stderr = p.communicate(timeout=300)
    assert p.returncode == 0, stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    differ = False
    for step, ref in enumerate(one):
        assert torch.equal(ref["z"], ref["eps"][torch.from_numpy(couplings.ot_permutation(ref["x"], ref["eps"]))])
        for key in ("x", "eps", "pair_x", "z"):
            assert torch.equal(torch.cat([r["global"][step][key] for r in ranks]), ref[key]), (step, key)
        for r in ranks:
            mine = r["rank"][step]
            assert torch.equal(mine["x"], r["global"][step]["x"]) and torch.equal(mine["eps"], r["global"][step]["eps"])
            perm = torch.from_numpy(couplings.ot_permutation(mine["x"], mine["eps"]))
            assert torch.equal(mine["z"], mine["eps"][perm]), step
            differ |= not torch.equal(mine["z"], r["global"][step]["z"])
    assert differ  # the two scopes really pair differently on this batch


def encoder(dim=2):
    torch.manual_seed(0)
    return couplings.Encoder(networks.build({"kind": "mlp", "hidden": 16, "depth": 1, "emb_dim": 8, "dropout": 0.0},
                                            (dim,), out_mult=2), sigma_data=0.5)


def test_encoder_starts_at_zero_mean_and_softplus0_std():
    mu, s = encoder()(torch.randn(10, 2))
    assert torch.equal(mu, torch.zeros(10, 2))
    torch.testing.assert_close(s, torch.full((10, 2), math.log(2.0)))


def test_unet_encoder_outputs_two_c_channels_near_zero():
    torch.manual_seed(0)
    spec = {"kind": "songunet", "model_channels": 8, "channel_mult": [1, 2], "num_blocks": 1,
            "attn_resolutions": [], "dropout": 0.0}
    enc = couplings.Encoder(networks.build(spec, (1, 8, 8), out_mult=2), 0.5)
    mu, s = enc(torch.randn(3, 1, 8, 8))
    assert mu.shape == s.shape == (3, 1, 8, 8)
    assert mu.abs().max() < 1e-3 and (s - math.log(2.0)).abs().max() < 1e-3


def test_gaussian_kl_matches_torch_distributions():
    mu, s = torch.randn(4, 3), torch.rand(4, 3) + 0.1
    expected = torch.distributions.kl_divergence(torch.distributions.Normal(mu, s),
                                                 torch.distributions.Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(couplings.gaussian_kl(mu, s), expected)


@pytest.mark.parametrize("N, beta", [(11, 0.87), (21, 1.54), (41, 2.91), (81, 5.66), (161, 11.2), (321, 22.1),
                                     (641, 44.1), (1281, 88.1)])
def test_vc_beta_on_the_ict_grids(N, beta):
    ict = ICTLoss(Kernel(), total_steps=400_000)
    step = next(k for k in range(0, 400_000, 50_000) if ict.num_scales(k) == N)
    assert math.isclose(30 * ict.max_weight(step), beta, rel_tol=0.01)


def test_vc_beta_with_ecm_consistency_weighting_doubles_from_quarter_to_32():
    ect = ECTLoss(Kernel(), total_steps=400_000)
    betas = [10 * ect.max_weight(stage * 50_000) for stage in range(8)]
    for got, want in zip(betas, [0.25 * 2**s for s in range(8)]):
        assert math.isclose(got, want, rel_tol=1e-3)
    assert ECTLoss(Kernel(), 10, weighting="karras").max_weight(0) == 1.0


def test_vc_pair_noise_kl_and_gradients():
    enc = encoder()
    vc = couplings.VariationalCoupling(enc, kl_scale=30)
    x = torch.randn(256, 2)
    pair = vc(x, torch.randn(256, 2), None, ctx(max_weight=0.1))
    assert math.isclose(pair.stats["beta"], 3.0)
    assert abs(pair.z.std().item() - math.log(2.0)) < 0.05  # s = 0.693 at initialisation
    torch.testing.assert_close(pair.extra_loss, 3.0 * couplings.gaussian_kl(torch.zeros(256, 2),
                                                                             torch.full((256, 2), math.log(2.0))))
    pair.extra_loss.mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())


def test_vc_encoder_learns_through_the_student_branch():
    torch.manual_seed(0)
    model = ConsistencyModel(networks.MLP(2, 16, 1, 8), Kernel())
    enc = encoder()
    enc.net.out[-1].weight.data.normal_()  # away from the zero start, so the noise depends on x
    vc = couplings.VariationalCoupling(enc, kl_scale=1e-12)  # KL negligible: what is left is the student
    loss, _ = ICTLoss(Kernel(), 10)(model, torch.randn(32, 2), vc, 0, BatchRNG(0))
    loss.mean().backward()
    assert sum(p.grad.abs().sum() for p in enc.parameters()) > 0


class Doubler:
    """A predictor with a known output, to check what GC does with it."""

    def __call__(self, x, sigma):
        return 2 * x


def test_gc_mu_one_uses_the_prediction_for_every_sample():
    gc = couplings.GeneratorCoupling(couplings.IndependentCoupling(), Doubler(), mu=1.0)
    x, lower = torch.randn(64, 2), torch.full((64,), 0.5)
    z = torch.randn(64, 2)
    pair = gc(x, z, lower, ctx())
    assert pair.z is z
    torch.testing.assert_close(pair.x, 2 * (x + 0.5 * z))  # f at the LOWER time, same z
    assert pair.stats["gc_fraction"] == 1.0


def test_gc_prediction_range_clamps_the_predicted_endpoint_only():
    x, z, lower = torch.randn(64, 2), torch.randn(64, 2), torch.full((64,), 0.5)
    free = couplings.GeneratorCoupling(couplings.IndependentCoupling(), Doubler(), mu=1.0)(x, z, lower, ctx())
    gc = couplings.GeneratorCoupling(couplings.IndependentCoupling(), Doubler(), mu=1.0, prediction_range=(-1.0, 1.0))
    pair = gc(x, z, lower, ctx())
    assert free.x.abs().max() > 1  # the clamp has something to do
    torch.testing.assert_close(pair.x, free.x.clamp(-1, 1))
    torch.testing.assert_close(pair.z, free.z)


def test_gc_observed_fraction_matches_mu_and_ramp():
    gc = couplings.GeneratorCoupling(couplings.IndependentCoupling(), Doubler(), mu=0.3, rng=BatchRNG(5))
    fr = np.mean([gc(torch.randn(500, 2), torch.randn(500, 2), torch.ones(500), ctx()).stats["gc_fraction"]
                  for _ in range(40)])
    assert abs(fr - 0.3) < 0.01
    ramp = couplings.GeneratorCoupling(couplings.IndependentCoupling(), Doubler(), mu=0.6, ramp_steps=100)
    assert [ramp.mu_at(s) for s in (0, 50, 100, 500)] == [0.0, 0.3, 0.6, 0.6]


def _train(tmp_path, name, objective="ict", steps=12, **coupling):
    params = P.load(write_params(tmp_path / "p.yaml", train=dict(steps=steps, batch=32)))
    params["couplings"][name].update(coupling)
    params["grid"] = [{"dataset": ["two_gaussians"], "objective": [objective], "coupling": [name], "seed": [0]}]
    params.pop("theory")  # the one-cell grid has no IC run to measure
    exp = P.experiments(P.validate(params))[0]
    x = np.random.default_rng(0).standard_normal((128, 2)).astype(np.float32)
    return training.train(exp.config, x, progress=False)[:2]


@pytest.mark.parametrize("objective", ["ict", "sct"])
def test_gc_with_mu_zero_reproduces_ic_bitwise(tmp_path, objective):
    ic, _ = _train(tmp_path, "ic", objective)
    gc, log = _train(tmp_path, "gc", objective, mu=0.0)
    for k in ic["model"]:
        assert torch.equal(ic["model"][k], gc["model"][k]), k
    assert all(r["gc_fraction"] == 0.0 for r in log)
    gc_half, _ = _train(tmp_path, "gc", objective, mu=0.5)
    assert any(not torch.equal(ic["model"][k], gc_half["model"][k]) for k in ic["model"])


@pytest.mark.parametrize("name", ["ot", "vc", "gc", "vcgc"])
def test_every_coupling_trains_with_every_objective(tmp_path, name):
    for obj in ("ict", "ect", "sct"):
        ckpt, log = _train(tmp_path, name, objective=obj, steps=6)
        assert all(np.isfinite(r["loss"]) for r in log)
        assert ("encoder" in ckpt) == (name in ("vc", "vcgc"))


def test_ot_assignment_prepared_a_step_ahead_is_the_in_line_one_bitwise(tmp_path, monkeypatch):
    """The loop draws step k+1 before step k runs and batch-OT solves its assignment in a worker
    meanwhile (issue 12): every step but the first must take the prepared permutation, and training
    must equal, bit for bit, a run that solves each assignment in line."""
    params = P.load(write_params(tmp_path / "p.yaml", train=dict(steps=20, batch=64)))
    params["grid"] = [{"dataset": ["two_gaussians"], "objective": ["ict"], "coupling": ["ot"], "seed": [0]}]
    params.pop("theory")
    config = P.experiments(P.validate(params))[0].config
    data = torch.from_numpy(np.random.default_rng(0).standard_normal((256, 2)).astype(np.float32))
    solved = {"ahead": 0, "in_line": 0}
    real = couplings.ot_permutation

    def counted(x, z):
        solved["in_line"] += 1
        return real(x, z)

    monkeypatch.setattr(couplings, "ot_permutation", counted)
    runs = {}
    for prefetch in (True, False):
        run = training.Run(config, (2,), torch.device("cpu"))
        run.coupling.prefetch = prefetch
        solved["in_line"] = 0
        logs = [(loss.item(), {k: float(v) for k, v in stats.items()}) for _, loss, _, stats, _ in run.iterate(data, 0, 20)]
        solved["ahead" if prefetch else "in_line_run"] = solved["in_line"]
        runs[prefetch] = run.weights(), logs
    assert solved["ahead"] == 1 and solved["in_line_run"] == 20  # prepared: only step 0 solves in line
    assert runs[True][1] == runs[False][1]
    for part, weights in runs[False][0].items():
        for k, v in weights.items():
            assert torch.equal(runs[True][0][part][k], v), f"{part}.{k}"


def test_gc_frozen_checkpoint_predictor(tmp_path):
    from ctcoupling.core import artifacts

    ic, _ = _train(tmp_path, "ic")
    artifacts.write_torch(tmp_path / "ic.pt", ic)
    gc, log = _train(tmp_path, "gc", predictor="checkpoint", checkpoint=str(tmp_path / "ic.pt"), mu=1.0)
    assert all(r["gc_fraction"] == 1.0 for r in log)


def _posterior_separation(kl_scale: float, steps: int = 1200) -> dict:
    """Train the default suite's two-Gaussian VC (its network, encoder and recipe, fewer steps) at a
    kl_scale and measure how its posteriors z | x separate the two modes (held-out points)."""
    from ctcoupling.data import datasets
    from ctcoupling.measure import distances
    from conftest import ROOT

    params = P.load(ROOT / "params" / "default.yaml")
    params["couplings"]["vc"]["kl_scale"] = kl_scale
    params["train"].update(steps=steps, snapshot_every=None)
    exp = P.experiment(params, "two_gaussians-ict-vc-s0")
    d = datasets.build(params["datasets"]["two_gaussians"])
    ckpt, _, _ = training.train(P.train_config(exp), datasets.to_model_space(d["x_train"]), progress=False)
    encoder = training.load_encoder(ckpt)
    x = torch.from_numpy(datasets.to_model_space(d["x_test"]))
    with torch.no_grad():
        mu, s = encoder(x)
        z = mu + s * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    return distances.posterior_separation(mu.numpy(), s.numpy(), z.numpy(), x[:, 1].numpy() > 0)


@pytest.mark.full
def test_vc_encoder_separates_the_two_modes_unless_the_kl_weight_collapses_it():
    """VCT Fig. 1's encoder: at a kl_scale the 2-D problem supports, the two modes' posteriors are apart
    (a classifier on z tells the mode); at VCT's CIFAR-10 value 30 the KL term wins and both
    posteriors are the prior (chance accuracy, KL ~ 0): the collapse the kl_scale ablation shows."""
    apart, collapsed = _posterior_separation(0.3), _posterior_separation(30.0)
    assert apart["mode_accuracy"] > 0.9, apart
    assert collapsed["mode_accuracy"] < 0.65, collapsed
    assert apart["posterior_kl"] > 10 * collapsed["posterior_kl"]
