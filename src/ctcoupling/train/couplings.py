"""Couplings: how the (x, z) pair that the objective sees is formed (METHODS 4).

A coupling is called by the objective with the minibatch x, the step's standard normal noise eps
(drawn with the step's other randomness, objectives.Draws) and the LOWER time of the pair (GC
builds its pairs there), and returns the pair, an optional per-sample loss term (VC's KL) and
statistics to log (0-d tensors, read only on the steps that log). Objectives and kernels stay
coupling-agnostic. `prepare(draws)` is called with the NEXT step's draws before the current step
runs: batch-OT solves its assignment there, in a solver process, off the step's critical path.

- IC: z ~ N(0, I) independent of x.
- OT: the minibatch's noises permuted to minimise sum ||x_i - z_pi(i)||^2 (exact; assignment.py), over
  the global batch (`scope: global`, gathered from every DDP rank) or each rank's rows (`scope: rank`).
- VC (VCT): z = mu(x) + s(x) eps from a learned encoder, plus beta KL(N(mu, s^2) || N(0, I)).
- GC: with probability mu, x is replaced by the prediction stopgrad f(x + sigma z, sigma) at the
  lower time sigma, and both points are built from it with the same z. The official code's `mix`
  is the fraction of IC samples, 1 - mu.
- VC + GC: GC's predicted endpoint with VC's learned noise.
"""
from __future__ import annotations

import sys
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from ctcoupling.core import assignment
from ctcoupling.core.pairing import ot_cost, ot_permutation
from ctcoupling.model.kernels import label_args, net_labels
from ctcoupling.train.randomness import BatchRNG


@dataclass
class Context:
    """What a coupling may need from the objective: the step, the kernel, the objective's
    consistency weight at the largest time (VC ties beta to it) and the minibatch's class labels
    (a class-conditional model: VC's encoder and GC's predictor see the label of each x)."""

    step: int
    kernel: object
    max_weight: float
    labels: torch.Tensor | None = None


@dataclass
class Pair:
    x: torch.Tensor
    z: torch.Tensor
    extra_loss: torch.Tensor | None = None  # per sample, added to the objective's loss
    stats: dict = field(default_factory=dict)


class IndependentCoupling:
    """IC: z ~ N(0, I) independent of x, the baseline of every paper."""

    trainable = None

    def get_state(self):
        """Random state of the coupling's own draws (GC), saved with the training state."""
        return None

    def set_state(self, state) -> None:
        pass

    def prepare(self, draws) -> None:
        """Work on the next step's draws that can run while the current step does (none here)."""

    def __call__(self, x, eps, lower, ctx: Context) -> Pair:
        return Pair(x, eps)


def gather_rows(t: torch.Tensor, world: int) -> torch.Tensor:
    """Every rank's `t` (the same shape on each), concatenated in rank order (torch.distributed's
    all_gather): the global batch's rows, where rank r holds rows r b:(r + 1) b (randomness.BatchRNG,
    EpochSampler). A collective: every rank must call it, in the same order."""
    import torch.distributed as dist

    t = t.contiguous()
    parts = [torch.empty_like(t) for _ in range(world)]
    dist.all_gather(parts, t)
    return torch.cat(parts)


@dataclass
class _Prepared:
    """A step whose draws `prepare` saw: its draws, the rows the assignment is over, and whether the
    solver process has its cost matrix."""

    step: int
    x: torch.Tensor
    eps: torch.Tensor
    pool_x: torch.Tensor
    pool_eps: torch.Tensor
    submitted: bool = False


class BatchOTCoupling(IndependentCoupling):
    """Batch-OT: IC noises, re-assigned to the data points by an exact minibatch assignment.

    `scope` (under torchrun; one process is the same either way) says which rows are assigned together:
    `global` gathers x and eps from every rank (gather_rows), solves one assignment pi of the global
    batch, and gives rank r the noises eps[pi(i)] of its rows i in r b:(r + 1) b, so each rank's
    pairs are its rows of the pairs one process computes on the global batch, bit for bit; `rank`
    assigns each rank's own b rows among themselves (sony/vct's pairing on each device's batch).

    The assignment of step k+1 is solved in a child process while step k trains (`prepare`;
    assignment.Solver): the cost matrix is formed here, as in the in-line path, and the child runs the
    same deterministic solver on it, so the permutation is the same, bit for bit, with or without
    prefetching (`prefetch=False`; tests/test_couplings.py). A step whose draws were not prepared
    (the first one, tests) solves in line, as does every step should the solver process fail. The
    rows of the global scope are gathered in `prepare` too, so that only an unprepared step gathers
    in line: every rank prepares the same steps, so the ranks gather in the same order even where one
    rank's solver process fails. The logged costs are those of the rank's own pairs."""

    def __init__(self, prefetch: bool = True, scope: str = "global", rank: int = 0, world: int = 1):
        if scope not in ("global", "rank"):
            raise ValueError(f"unknown batch-OT scope {scope!r}")
        self.prefetch = prefetch
        self.pooled = scope == "global" and world > 1  # the assignment is over the global batch's rows
        self.rank, self.world = rank, world
        self._solver: assignment.Solver | None = None
        self._ahead: deque[_Prepared] = deque()  # prepared steps, oldest first

    def _pool(self, x: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows the assignment is over: the global batch's (gathered) or this rank's."""
        return (gather_rows(x, self.world), gather_rows(eps, self.world)) if self.pooled else (x, eps)

    def prepare(self, draws) -> None:
        while len(self._ahead) >= 2:  # never consumed (a step skipped): drop the oldest
            self._result(self._ahead.popleft())
        ahead = _Prepared(draws.step, draws.x, draws.eps, *self._pool(draws.x, draws.eps))
        if self.prefetch:
            try:
                if self._solver is None:
                    self._solver = assignment.Solver(len(ahead.pool_x))
                self._solver.submit(ot_cost(ahead.pool_x, ahead.pool_eps).cpu().numpy())
                ahead.submitted = True
            except (OSError, ValueError) as e:
                self._solve_in_line(e)
        self._ahead.append(ahead)

    def _result(self, ahead: _Prepared) -> np.ndarray | None:
        """The solver process's permutation for a prepared step; None where it has none."""
        if not ahead.submitted:
            return None
        try:
            return self._solver.result()
        except OSError as e:
            self._solve_in_line(e)
            return None

    def _solve_in_line(self, error: Exception) -> None:
        """The solver process failed: every later step solves in line (the same permutation)."""
        print(f"batch-OT: solving assignments in line ({error})", file=sys.stderr)
        self.prefetch, self._solver = False, None
        for ahead in self._ahead:
            ahead.submitted = False

    def permutation(self, x: torch.Tensor, eps: torch.Tensor, step: int) -> tuple[np.ndarray, torch.Tensor]:
        """(pi, the noises it permutes): the assignment of the scope's rows (the global batch's or
        this rank's), prepared a step ahead where `prepare` saw these draws, else solved in line."""
        while self._ahead and self._ahead[0].step <= step:
            ahead = self._ahead.popleft()
            perm = self._result(ahead)
            if ahead.step == step and ahead.x is x and ahead.eps is eps:
                if perm is None:
                    perm = ot_permutation(ahead.pool_x, ahead.pool_eps)
                return perm, ahead.pool_eps
        pool_x, pool_eps = self._pool(x, eps)
        return ot_permutation(pool_x, pool_eps), pool_eps

    def __call__(self, x, eps, lower, ctx: Context) -> Pair:
        perm, pool_eps = self.permutation(x, eps, ctx.step)
        if self.pooled:  # this rank's rows of the global assignment, in eps's memory format
            rows = torch.from_numpy(perm[self.rank * len(x):(self.rank + 1) * len(x)]).to(x.device)
            z = torch.empty_like(eps).copy_(pool_eps[rows])
        else:
            z = eps[torch.from_numpy(perm).to(x.device)]
        before = (x - eps).reshape(len(x), -1).square().sum(1).mean()
        after = (x - z).reshape(len(x), -1).square().sum(1).mean()
        return Pair(x, z, stats={"ot_cost": after, "ic_cost": before})


class Encoder(torch.nn.Module):
    """E_phi(x / sigma_data [, label]) -> (mu, s = softplus(.)), the VCT noise posterior. The network
    outputs 2x the data's channels and starts near 0, so mu ~ 0 and s ~ softplus(0) = 0.693 at first.
    A class-conditional encoder network takes x's label (sony/vct models/cm_base.py posterior_precond)."""

    def __init__(self, net: torch.nn.Module, sigma_data: float):
        super().__init__()
        self.net, self.sigma_data = net, sigma_data

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if not getattr(self.net, "label_dim", 0):
            labels = None  # an unconditional encoder of a class-conditional model: the label is not its input
        cond = net_labels(self.net, labels)
        out = self.net(x / self.sigma_data, torch.zeros(len(x), device=x.device), *cond).to(x.dtype)  # out of bf16
        mu, s = out.reshape(len(x), 2, *x.shape[1:]).unbind(1)
        return mu, torch.nn.functional.softplus(s)


def gaussian_kl(mu: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, s^2) || N(0, I)) summed over dimensions, per sample."""
    kl = 0.5 * (mu.square() + s.square() - 1) - torch.log(s)
    return kl.reshape(len(kl), -1).sum(1)


class VariationalCoupling(IndependentCoupling):
    """VC: z = mu(x) + s(x) eps, loss += beta KL with beta = kl_scale x the largest-time weight."""

    def __init__(self, encoder: Encoder, kl_scale: float):
        self.trainable, self.kl_scale = encoder, kl_scale

    def __call__(self, x, eps, lower, ctx: Context) -> Pair:
        mu, s = self.trainable(x, ctx.labels)
        z = mu + s * eps  # before the KL: autograd sums s's gradient terms in the order they were made
        beta = self.kl_scale * ctx.max_weight
        kl = gaussian_kl(mu, s)
        with torch.no_grad():
            stats = {"kl": kl.mean(), "beta": beta, "enc_s": s.mean(), "enc_mu_rms": mu.square().mean().sqrt()}
        return Pair(x, z, beta * kl, stats)


class GeneratorCoupling:
    """GC on top of a noise coupling (IC or VC): replace x by the predicted endpoint with probability mu.
    Its coin flips come from a generator of their own, so mu = 0 reproduces the inner coupling bitwise."""

    def __init__(self, inner, predictor, mu: float, ramp_steps: int = 0, rng: BatchRNG | None = None,
                 prediction_range: tuple[float, float] | None = None):
        self.inner, self.predictor, self.mu, self.ramp_steps = inner, predictor, mu, ramp_steps
        self.prediction_range = prediction_range  # project x_hat onto the data's box (not in the official code)
        self.trainable = inner.trainable
        self.rng = rng or BatchRNG(0)

    def get_state(self):
        return self.rng.get_state()

    def set_state(self, state) -> None:
        self.rng.set_state(state)

    def prepare(self, draws) -> None:
        self.inner.prepare(draws)

    def mu_at(self, step: int) -> float:
        return self.mu * min(1.0, step / self.ramp_steps) if self.ramp_steps else self.mu

    def __call__(self, x, eps, lower, ctx: Context) -> Pair:
        pair = self.inner(x, eps, lower, ctx)
        sigma = lower if ctx.kernel.kind == "trigflow" else lower.clamp(min=ctx.kernel.sigma_min)  # TrigFlow: t > 0
        with torch.no_grad():
            x_hat = self.predictor(ctx.kernel.perturb(x, sigma, pair.z), sigma, *label_args(ctx.labels))
            if self.prediction_range is not None:
                x_hat = x_hat.clamp(*self.prediction_range)
        use = self.rng.rand(len(x)).to(x.device) < self.mu_at(ctx.step)
        x_gc = torch.where(use.reshape(-1, *[1] * (x.ndim - 1)), x_hat, x)
        return Pair(x_gc, pair.z, pair.extra_loss, {**pair.stats, "gc_fraction": use.float().mean()})


class Predictor:
    """GC's stopgrad f: the EMA model (the official code), the online model, or a frozen one; eval mode."""

    def __init__(self, model: torch.nn.Module):
        self.model = model

    @torch.no_grad()
    def __call__(self, x, sigma, labels=None):
        was = self.model.training
        self.model.eval()
        try:
            return self.model(x, sigma, *label_args(labels))
        finally:
            self.model.train(was)


def build(spec: dict, *, encoder: torch.nn.Module | None = None, model=None, ema=None, frozen=None,
          rng: BatchRNG | None = None, rank: int = 0, world: int = 1):
    """A coupling from its params spec (`couplings.<name>`) and the modules it needs, for rank `rank`
    of `world` DDP ranks (batch-OT's scope)."""
    kind = spec["kind"]
    if kind == "ic":
        return IndependentCoupling()
    if kind == "ot":
        return BatchOTCoupling(scope=spec.get("scope", "global"), rank=rank, world=world)
    inner = VariationalCoupling(encoder, spec["kl_scale"]) if kind in ("vc", "vcgc") else IndependentCoupling()
    if kind == "vc":
        return inner
    if kind in ("gc", "vcgc"):
        source = {"ema": ema, "online": model, "checkpoint": frozen}[spec["predictor"]]
        return GeneratorCoupling(inner, Predictor(source), spec["mu"], spec.get("mu_ramp_steps", 0), rng,
                                 spec.get("prediction_range"))
    raise ValueError(f"unknown coupling {kind!r}")
