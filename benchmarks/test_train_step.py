"""Cost of one training step per coupling (`make bench`, issue 12): the suite's loop against a
minimal iCT loop on the same network, batch and optimiser, and against IC; one CPU thread.

The minimal loop is a reference, not a code path: the textbook step written out flat (a minibatch
drawn with replacement, sigma pairs from the current grid's lognormal probabilities, one noise draw,
the coupling in the fewest operations, student and stop-gradient teacher on the same noise,
pseudo-Huber over the grid gap, foreach RAdam, the clip where the run clips, a foreach EMA).
Batch-OT's minimal loop solves its assignment in line (the straightforward way); the suite solves
step k+1's in a solver process while step k runs (couplings.BatchOTCoupling).

Cases: the default suite's 2-D MLP and digits MLP (their networks, batch 256) and the digits U-Net
(`networks.unet_digits` without dropout, batch 512). Goals: every coupling within 1.2x of its
minimal loop; OT within 1.15x of IC on the digits MLP and within 1.05x on the U-Net (issue 4). The
last case prints the table of them all. Also: POT's exact solver against scipy's Hungarian at the
suite's minibatch sizes, where the suite uses POT (assignment.solve).
"""
import copy
import math

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from ctcoupling.core import assignment
from ctcoupling.train import couplings
from ctcoupling.config import params as P
from ctcoupling.train.training import Run, build_encoder, build_model

COUPLINGS = ("ic", "ot", "vc", "gc", "vcgc")
CASES = {  # name: (dataset, data shape, batch, network override, steps timed per round, rounds)
    "2d-mlp": ("two_gaussians", (2,), 256, None, 100, 7),
    "digits-mlp": ("digits", (1, 8, 8), 256, None, 50, 7),
    "digits-unet": ("digits", (1, 8, 8), 512, "unet_digits", 1, 5),  # ~1 s a step on one thread
}
# VC and GC cost on the U-Net what they cost in their minimal loops (1.14-1.16x and 1.28-1.32x IC measured):
# the goal they answer to is the minimal loop's
TO_MINIMAL, TO_IC = 1.2, {"digits-mlp": {"ot": 1.15}, "digits-unet": {"ot": 1.05}}
SECONDS: dict[tuple[str, str, str], float] = {}


def config(case: str, coupling: str) -> dict:
    dataset, _, batch, network, _, _ = CASES[case]
    params = P.load("params/default.yaml")
    params["grid"] = [{"dataset": [dataset], "objective": ["ict"], "coupling": [coupling], "seed": [0]}]
    cfg = P.deep_merge(P.experiments(params)[0].config, {"train": {"batch": batch}})
    if network:  # the same U-Net for every coupling (the suite's GC runs drop dropout: it would flatter GC)
        cfg["network"] = dict(params["networks"][network], dropout=0.0)
        if "encoder_network" in cfg:
            cfg["encoder_network"] = params["networks"]["unet_encoder"]
    return cfg


class Minimal:
    """The minimal iCT step of the module docstring, for one coupling."""

    def __init__(self, cfg: dict, shape: tuple[int, ...], data: torch.Tensor):
        torch.manual_seed(0)
        self.cfg, self.data, self.n = cfg, data, cfg["train"]["batch"]
        self.model = build_model(cfg, shape)
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        self.encoder = build_encoder(cfg, shape)
        params = list(self.model.parameters()) + (list(self.encoder.parameters()) if self.encoder else [])
        self.params = params
        self.opt = torch.optim.RAdam(params, lr=cfg["train"]["lr"], foreach=True)
        self.pe, self.pm = list(self.ema.parameters()), list(self.model.parameters())
        k, o = self.model.kernel, cfg["objective"]
        self.sigmas = k.karras(o["s0"] + 1)
        cdf = torch.erf((self.sigmas.log() - o["P_mean"]) / (math.sqrt(2) * o["P_std"]))
        self.probs = cdf.diff() / cdf.diff().sum()
        self.c = 0.00054 * math.sqrt(math.prod(shape))
        self.beta = cfg["coupling"].get("kl_scale", 0) / (self.sigmas[-1] - self.sigmas[-2]).item()
        self.kind, self.mu = cfg["coupling"]["kind"], cfg["coupling"].get("mu", 0)
        self.gen = torch.Generator().manual_seed(0)

    def __call__(self):
        g, n, sd = self.gen, self.n, self.model.kernel.sigma_data
        x = self.data[torch.randint(len(self.data), (n,), generator=g)]
        i = torch.multinomial(self.probs, n, replacement=True, generator=g)
        lo, hi = self.sigmas[i].float(), self.sigmas[i + 1].float()
        eps = torch.randn(x.shape, generator=g)
        b = (-1,) + (1,) * (x.ndim - 1)
        extra = 0.0
        if self.encoder is not None:
            mu, s = self.encoder(x)
            z = mu + s * eps
            extra = self.beta * (0.5 * (mu**2 + s**2 - 1) - s.log()).reshape(n, -1).sum(1)
        else:
            z = eps
        if self.kind == "ot":
            z = z[torch.from_numpy(couplings.ot_permutation(x, z))]
        if self.kind in ("gc", "vcgc"):
            self.ema.eval()
            with torch.no_grad():
                x_hat = self.ema(x + lo.reshape(b) * z, lo).clamp(-1, 1) if self.cfg["coupling"].get("prediction_range") \
                    else self.ema(x + lo.reshape(b) * z, lo)
            x = torch.where((torch.rand(n, generator=g) < self.mu).reshape(b), x_hat, x)
        student = self.model(x + hi.reshape(b) * z, hi)  # no dropout in any case: no mask to replay
        with torch.no_grad():
            teacher = self.model(x + lo.reshape(b) * z, lo)
        d = (student - teacher).reshape(n, -1)
        loss = ((torch.sqrt((d**2).sum(1) + self.c**2) - self.c) / (hi - lo) + extra).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg["train"].get("grad_clip"):
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg["train"]["grad_clip"], foreach=True)
        self.opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(self.pe, self.pm, 1 - 0.999)


def suite_step(cfg: dict, shape, data: torch.Tensor):
    """One step of the suite's training loop (Run.iterate: drawn a step ahead, OT prepared)."""
    steps = Run(cfg, shape, torch.device("cpu")).iterate(data, 0, 10**9)
    return lambda: next(steps)


ORDER = [(case, c, loop) for case in CASES for c in COUPLINGS for loop in ("minimal", "suite")]


@pytest.mark.parametrize("case, coupling, loop", ORDER, ids=["-".join(o) for o in ORDER])
def test_train_step(benchmark, case, coupling, loop):
    torch.set_num_threads(1)
    _, shape, batch, _, iterations, rounds = CASES[case]
    cfg = config(case, coupling)
    data = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (4096, *shape)).astype(np.float32))
    step = (Minimal(cfg, shape, data) if loop == "minimal" else suite_step(cfg, shape, data))
    benchmark.pedantic(step, rounds=rounds, iterations=iterations, warmup_rounds=1)
    SECONDS[case, coupling, loop] = t = benchmark.stats.stats.median
    if loop == "minimal":
        return
    to_min, to_ic = t / SECONDS[case, coupling, "minimal"], t / SECONDS[case, "ic", "suite"]
    benchmark.extra_info.update(x_minimal=round(to_min, 3), x_ic=round(to_ic, 3))
    print(f"\n{case} {coupling}: {1e3 * t:.2f} ms/step, {to_min:.2f}x minimal, {to_ic:.2f}x IC")
    if (case, coupling, loop) == ORDER[-1]:
        print_table()
    assert to_min <= TO_MINIMAL, f"{case} {coupling}: {to_min:.2f}x its minimal loop > {TO_MINIMAL}"
    goal = TO_IC.get(case, {}).get(coupling)
    assert not goal or to_ic <= goal, f"{case} {coupling}: {to_ic:.2f}x IC > {goal}"


def print_table() -> None:
    rows = []
    for case in CASES:
        for c in COUPLINGS:
            if (case, c, "suite") in SECONDS:
                t, m, ic = SECONDS[case, c, "suite"], SECONDS[case, c, "minimal"], SECONDS[case, "ic", "suite"]
                rows.append(f"{case:12s} {c:5s} {1e3 * t:8.2f} {1e3 * m:8.2f} {t / m:8.2f} {t / ic:6.2f}")
    print("\ncase         coupl  ms/step  minimal  x_minim   x_IC\n" + "\n".join(rows))


SIZES = {"2d-256": (256, 2), "digits-256": (256, 64), "cifar10-512": (512, 3072)}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("solver", ["pot", "scipy"])
def test_assignment_solver(benchmark, solver, size):
    """The exact assignment of one minibatch: POT's network simplex (the suite's) vs scipy's Hungarian,
    on data-like points (two clusters in 2-D; uniform pixels otherwise) against Gaussian noise."""
    n, d = SIZES[size]
    rng = np.random.default_rng(0)
    x = np.stack([np.zeros(n), np.where(rng.random(n) < 0.5, 0.5, -0.5)], 1) * 2 + 0.1 * rng.standard_normal((n, 2)) \
        if d == 2 else rng.uniform(-1, 1, (n, d))
    cost = couplings.ot_cost(torch.from_numpy(x), torch.from_numpy(rng.standard_normal((n, d)))).numpy()
    solve = assignment.solve if solver == "pot" else (lambda c: linear_sum_assignment(c)[1])
    perm = benchmark.pedantic(solve, args=(cost,), rounds=5 if d > 64 else 20, warmup_rounds=1)
    assert sorted(perm) == list(range(n))
    SECONDS[size, solver, "solve"] = benchmark.stats.stats.median
    if solver == "scipy":
        pot = SECONDS[size, "pot", "solve"]
        print(f"\n{size}: POT {1e3 * pot:.1f} ms, scipy {1e3 * benchmark.stats.stats.median:.1f} ms")
        assert pot <= benchmark.stats.stats.median, f"scipy's solver is faster at {size}: use it there"
