"""Consistency-training objectives. Each returns the unreduced per-sample loss; the loop reduces.

iCT (Song & Dhariwal 2023; METHODS 2): curriculum N(k), discretised lognormal index sampling,
lambda_i = 1/(sigma_{i+1} - sigma_i), pseudo-Huber metric, stop-gradient online teacher.
ECT/ECM (Geng et al. 2024; METHODS 3): continuous t ~ lognormal, r = t (1 - q^-(stage+1) (1 + k
sigmoid(-b t))), target x where r reaches the boundary, weight 1/(t - r) or Karras'.
Both evaluate student and teacher on one noise z under the same dropout mask.

A step's randomness is drawn first (`draw`: the objective's times, then the noise eps, from the
run's BatchRNG) and the loss computed from it (`loss`), so the training loop can draw step k+1
before it runs step k and a coupling can prepare its pairing meanwhile (batch-OT's assignment).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ctcoupling.model import trigflow
from ctcoupling.train.couplings import Context, Pair
from ctcoupling.model.edm2 import frozen_weights
from ctcoupling.model.kernels import Kernel, label_args
from ctcoupling.train.randomness import BatchRNG


@dataclass
class Draws:
    """One training step's randomness, in the order drawn: the minibatch x (drawn by the loop), the
    objective's times (iCT: (sigma_i, sigma_{i+1}); ECT: (t,)) and the standard normal noise eps of
    x's shape that every coupling starts from. `y`: the minibatch's class labels, for a
    class-conditional model (drawn with x, by the loop), else None."""

    step: int
    x: torch.Tensor
    times: tuple[torch.Tensor, ...]
    eps: torch.Tensor
    y: torch.Tensor | None = None


class Objective:
    """draw, then loss; calling the objective does both (tests, one-off use)."""

    def sample_times(self, n: int, step: int, rng: BatchRNG) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def draw(self, x: torch.Tensor, step: int, rng: BatchRNG, y: torch.Tensor | None = None) -> Draws:
        times = tuple(t.to(x.device) for t in self.sample_times(len(x), step, rng))
        return Draws(step, x, times, rng.randn(*x.shape).to(x.device), y)

    def loss(self, model, draws: Draws, coupling) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def __call__(self, model, x: torch.Tensor, coupling, step: int, rng: BatchRNG):
        return self.loss(model, self.draw(x, step, rng), coupling)


def pseudo_huber(diff: torch.Tensor, c: float, per_element: bool = False) -> torch.Tensor:
    """sqrt(||d||^2 + c^2) - c on each sample's norm; per element (sony/vct) then summed, if asked."""
    flat = diff.reshape(diff.shape[0], -1)
    if per_element:
        return (torch.sqrt(flat**2 + c**2) - c).sum(1)
    return torch.sqrt((flat**2).sum(1) + c**2) - c


def replayed_passes(model, student_pass, teacher_pass):
    """(student_pass(), teacher_pass()): the student with gradient, then the stop-gradient teacher under
    the student's dropout mask (the generator replayed), leaving the weights alone (EDM2's forced
    weight normalisation off, as sony/vct models/ecm.py)."""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    student = student_pass()
    with torch.no_grad(), frozen_weights(model):
        torch.set_rng_state(cpu)  # replay: the teacher pass draws the student's dropout mask
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        teacher = teacher_pass()
    return student, teacher


def paired_passes(model, x_student, s_student, x_teacher, s_teacher, labels=None):
    """Student f(x_s, s) with gradient, teacher stopgrad f(x_t, t), both under one dropout mask and
    on the same class labels (replayed_passes)."""
    extra = label_args(labels)
    return replayed_passes(model, lambda: model(x_student, s_student, *extra),
                           lambda: model(x_teacher, s_teacher, *extra))


class ICTLoss(Objective):
    def __init__(self, kernel: Kernel, total_steps: int, s0: int = 10, s1: int = 1280, P_mean: float = -1.1,
                 P_std: float = 2.0, huber_c: float | None = None, huber_per_element: bool = False):
        self.kernel, self.total_steps = kernel, total_steps
        self.s0, self.s1, self.P_mean, self.P_std = s0, s1, P_mean, P_std
        self.huber_c, self.huber_per_element = huber_c, huber_per_element
        self._grids: dict[int, tuple] = {}

    def grid(self, N: int) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(Karras grid of N points, index probabilities, largest-time weight), computed once per N."""
        if N not in self._grids:
            sigmas = self.kernel.karras(N)
            self._grids[N] = sigmas, self.index_probs(sigmas), 1 / (sigmas[-1] - sigmas[-2]).item()
        return self._grids[N]

    def K_prime(self) -> int:
        """K' = floor(K / (log2(floor(s1/s0)) + 1)): steps per doubling of N."""
        return max(1, math.floor(self.total_steps / (math.log2(math.floor(self.s1 / self.s0)) + 1)))

    def num_scales(self, step: int) -> int:
        """N(k) = min(s0 * 2^floor(k/K'), s1) + 1."""
        return min(self.s0 * 2 ** (step // self.K_prime()), self.s1) + 1

    def index_probs(self, sigmas: torch.Tensor) -> torch.Tensor:
        """p(i) over i = 0..N-2, proportional to the lognormal mass between sigma_i and sigma_{i+1}."""
        cdf = torch.erf((torch.log(sigmas) - self.P_mean) / (math.sqrt(2) * self.P_std))
        p = cdf[1:] - cdf[:-1]
        return p / p.sum()

    def huber(self, x: torch.Tensor) -> float:
        return self.huber_c if self.huber_c is not None else 0.00054 * math.sqrt(x[0].numel())

    def sample_times(self, n: int, step: int, rng: BatchRNG) -> tuple[torch.Tensor, torch.Tensor]:
        """(sigma_i, sigma_{i+1}) for n samples on the current grid."""
        sigmas, probs, _ = self.grid(self.num_scales(step))
        i = rng.multinomial(probs, n)
        return sigmas[i].float(), sigmas[i + 1].float()

    def max_weight(self, step: int) -> float:
        """lambda at the largest time of the current grid, 1/(sigma_N - sigma_{N-1}) (VC's beta)."""
        return self.grid(self.num_scales(step))[2]

    def loss(self, model, draws: Draws, coupling):
        x, step, (s_lo, s_hi) = draws.x, draws.step, draws.times
        pair: Pair = coupling(x, draws.eps, s_lo, Context(step, self.kernel, self.max_weight(step), draws.y))
        student, target = paired_passes(model, self.kernel.perturb(pair.x, s_hi, pair.z), s_hi,
                                        self.kernel.perturb(pair.x, s_lo, pair.z), s_lo, draws.y)
        loss = pseudo_huber(student - target, self.huber(x), self.huber_per_element) / (s_hi - s_lo)
        if pair.extra_loss is not None:
            loss = loss + pair.extra_loss
        return loss, {"N": self.num_scales(step), **pair.stats}

    def summary(self) -> list[str]:
        """The curriculum as (N, first step, last step) lines."""
        spans = []  # [N, first, last], merging the doublings after N saturates at s1 + 1
        for first in range(0, self.total_steps, self.K_prime()):
            N, last = self.num_scales(first), min(first + self.K_prime(), self.total_steps) - 1
            if spans and spans[-1][0] == N:
                spans[-1][2] = last
            else:
                spans.append([N, first, last])
        return [f"N = {N:5d} for steps {a}-{b}" for N, a, b in spans]


class ECTLoss(Objective):
    """`form="boundary"`: t >= sigma_min, x_r as the target wherever r <= sigma_min (the boundary
    condition). `form="official"` (locuslab/ect training/loss.py ECMLoss): t not clamped (LI: at most
    sigma_max, as sony/vct), the network at r as target wherever r > 0 and x only where r = 0; the
    model trains with EDM's preconditioning (`ConsistencyModel(boundary_in_training=False)`)."""

    def __init__(self, kernel: Kernel, total_steps: int, P_mean: float = -1.1, P_std: float = 2.0, q: float = 2.0,
                 k: float = 8.0, b: float = 1.0, n_stages: int = 8, huber_c: float = 0.0,
                 weighting: str = "consistency", form: str = "boundary"):
        if weighting not in ("consistency", "karras"):
            raise ValueError(f"unknown weighting {weighting!r}")
        if form not in ("boundary", "official"):
            raise ValueError(f"unknown ECT form {form!r}")
        self.kernel, self.total_steps = kernel, total_steps
        self.P_mean, self.P_std, self.q, self.k, self.b, self.n_stages = P_mean, P_std, q, k, b, n_stages
        self.huber_c, self.weighting, self.form = huber_c, weighting, form

    def stage(self, step: int) -> int:
        """floor(step / (K / n_stages))."""
        return min(step * self.n_stages // self.total_steps, self.n_stages - 1)

    def t_to_r(self, t: torch.Tensor, step: int) -> torch.Tensor:
        """r = t (1 - q^-(stage+1) (1 + k sigmoid(-b t))), clamped at 0."""
        decay = self.q ** -(self.stage(step) + 1)
        return (t * (1 - decay * (1 + self.k * torch.sigmoid(-self.b * t)))).clamp(min=0)

    def sample_t(self, n: int, rng: BatchRNG) -> torch.Tensor:
        """t = exp(P_mean + P_std n); boundary form: kept inside [sigma_min, sigma_max] where the model is
        defined; official form: unclamped (VE), at most sigma_max (LI)."""
        t = torch.exp(self.P_mean + self.P_std * rng.randn(n))
        hi = self.kernel.sigma_max if self.kernel.kind == "li" else math.inf
        return t.clamp(min=self.kernel.sigma_min if self.form == "boundary" else None, max=hi)

    def weight(self, t: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        if self.weighting == "consistency":
            return 1 / (t - r)
        sd = self.kernel.sigma_data
        return (t**2 + sd**2) / (t * sd) ** 2

    def max_weight(self, step: int) -> float:
        """The weight at the largest time: 1/(sigma_max - r(sigma_max)), or 1 with Karras' (VC's beta)."""
        if self.weighting == "karras":
            return 1.0
        t = torch.tensor([self.kernel.sigma_max], dtype=torch.float64)
        return 1 / (t - self.t_to_r(t, step)).item()

    def sample_times(self, n: int, step: int, rng: BatchRNG) -> tuple[torch.Tensor]:
        return (self.sample_t(n, rng),)

    def loss(self, model, draws: Draws, coupling):
        x, step, (t,) = draws.x, draws.step, draws.times
        r = self.t_to_r(t, step)
        pair: Pair = coupling(x, draws.eps, r, Context(step, self.kernel, self.max_weight(step), draws.y))
        x_r = self.kernel.perturb(pair.x, r, pair.z)
        if self.form == "boundary":
            # At or below sigma_min the consistency function is the identity (the boundary condition),
            # so there the target is the path point itself.
            clean = r <= self.kernel.sigma_min
            r_net = r.clamp(min=self.kernel.sigma_min)
        else:  # r = 0 gives x itself; 0 < r < sigma_min is the network's (EDM precond is defined there)
            clean, r_net = r == 0, torch.where(r == 0, t, r)  # t: any valid input, the result is unused
        student, teacher = paired_passes(model, self.kernel.perturb(pair.x, t, pair.z), t, x_r, r_net, draws.y)
        if self.form == "official":
            teacher = torch.nan_to_num(teacher)
        target = torch.where(clean.reshape(-1, *[1] * (x.ndim - 1)), x_r, teacher)
        loss = pseudo_huber(student - target, self.huber_c) * self.weight(t, r)
        if pair.extra_loss is not None:
            loss = loss + pair.extra_loss
        return loss, {"stage": self.stage(step), **pair.stats}

    def summary(self) -> list[str]:
        per = self.total_steps / self.n_stages
        return [f"stage {s}: steps {math.ceil(s * per)}-{math.ceil((s + 1) * per) - 1}, "
                f"q^-(stage+1) = {self.q ** -(s + 1):.4g}" for s in range(self.n_stages)]


class SCTLoss(Objective):
    """Continuous-time consistency training (sCT) in TrigFlow, or with an exact `teacher` velocity
    v(x_t, t) in place of the pair's, sCD-exact (trigflow.py; Lu & Song 2025 Alg. 1).

    t ~ arctan(e^tau / sd), tau ~ N(P_mean, P_std^2). The coupling gets the standard normal noise and
    t, and returns the pair (x_0, z) in standard units; the path uses sd z. GC's predicted endpoint is
    the stop-gradient f(x_t, t) at the sampled t, and x_t and dx_t/dt are rebuilt from the replaced
    pair (the generator-augmented flow). The student pass F(x_t, t) carries the gradient (to the
    encoder too, through x_t, as the discrete objectives' student); F- and its JVP are stop-gradient
    and see the student's dropout mask. VC's beta is kl_scale / D: the adaptive weighting holds each
    sample's consistency term near 1 (App. D), so the KL is weighed per dimension."""

    def __init__(self, kernel: Kernel, total_steps: int, P_mean: float = -1.0, P_std: float = 1.4,
                 tangent_c: float = 0.1, warmup_steps: int = 10000, teacher=None):
        if kernel.kind != "trigflow":
            raise ValueError(f"sCT needs a trigflow kernel, got {kernel.kind!r}")
        self.kernel, self.total_steps = kernel, total_steps
        self.P_mean, self.P_std, self.tangent_c, self.warmup_steps = P_mean, P_std, tangent_c, warmup_steps
        self.teacher = teacher

    def sample_times(self, n: int, step: int, rng: BatchRNG) -> tuple[torch.Tensor]:
        return (trigflow.proposal_times(self.P_mean + self.P_std * rng.randn(n), self.kernel.sigma_data),)

    def velocity(self, x0: torch.Tensor, z: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """dx_t/dt: the pair's cos t sd z - sin t x_0 (sCT), or the teacher's exact v(x_t, t) (sCD-exact)."""
        if self.teacher is None:
            return self.kernel.velocity(x0, t, z)
        return self.teacher(x_t, t)

    def targets(self, model, draws: Draws, coupling):
        """(F with gradient, logvar, g before normalisation, x_t, F-, the pair) of a step (Alg. 1)."""
        x, step, (t,) = draws.x, draws.step, draws.times
        extra = label_args(draws.y)
        pair: Pair = coupling(x, draws.eps, t, Context(step, self.kernel, 1.0 / x[0].numel(), draws.y))
        x_t = self.kernel.perturb(pair.x, t, pair.z)
        fixed = x_t.detach()
        v = self.velocity(pair.x, pair.z, fixed, t).detach()
        with trigflow.forward_mode_attention():  # the student in the JVP's attention form too
            (F, logvar), (F_minus, jvp_out) = replayed_passes(
                model, lambda: model(x_t, t, *extra, output="train"),
                lambda: trigflow.jvp_passes(model, fixed, t, v, draws.y))
        r = trigflow.warmup(step, self.warmup_steps)
        g = trigflow.tangent_target(F_minus, jvp_out, fixed, v, t, self.kernel.sigma_data, r)
        return F, logvar, g, fixed, F_minus, pair

    def loss(self, model, draws: Draws, coupling):
        F, logvar, g, _, F_minus, pair = self.targets(model, draws, coupling)
        g_norm = g.reshape(len(g), -1).norm(dim=1)
        loss = trigflow.sct_loss(F, F_minus, trigflow.normalize_tangent(g, self.tangent_c), logvar)
        if pair.extra_loss is not None:
            loss = loss + pair.extra_loss
        return loss, {"r": trigflow.warmup(draws.step, self.warmup_steps), "g_norm": g_norm.mean(),
                      "logvar": logvar.detach().mean(), **pair.stats}

    def summary(self) -> list[str]:
        H = self.warmup_steps
        lines = [f"t = arctan(exp(tau) / {self.kernel.sigma_data:g}), tau ~ N({self.P_mean:g}, {self.P_std:g}^2); "
                 f"sampling from t_max = {self.kernel.t_max:.5f}",
                 f"tangent warm-up r = min(1, step / {H}): " + (
                     f"reaches 1 at step {H}" if H and H < self.total_steps else
                     f"r = {trigflow.warmup(self.total_steps, H):.3g} at the last step" if H else "none (r = 1)"),
                 f"tangent normalisation g / (||g|| + {self.tangent_c:g})" if self.tangent_c else "no tangent normalisation",
                 "teacher: exact velocity (sCD-exact)" if self.teacher is not None else "velocity: the pair's (sCT)"]
        return lines


TRIGFLOW = ("sct", "scd_exact")  # the objectives of TrigFlow models (training.build_model)


def build(spec: dict, total_steps: int, teacher=None):
    """An objective from its params spec (`objectives.<name>`); `teacher`: sCD-exact's exact velocity."""
    kernel = Kernel(**spec["kernel"])
    if spec["kind"] in TRIGFLOW:
        if spec["kind"] == "scd_exact" and teacher is None:
            raise ValueError("scd_exact needs its exact teacher (trigflow.mixture_teacher_or_empirical)")
        return SCTLoss(kernel, total_steps, spec["P_mean"], spec["P_std"], spec["tangent_c"], spec["warmup_steps"],
                       teacher if spec["kind"] == "scd_exact" else None)
    if spec["kind"] == "ict":
        return ICTLoss(kernel, total_steps, spec["s0"], spec["s1"], spec["P_mean"], spec["P_std"],
                       spec["huber_c"], spec["huber_per_element"])
    if spec["kind"] == "ect":
        return ECTLoss(kernel, total_steps, spec["P_mean"], spec["P_std"], spec["q"], spec["k"], spec["b"],
                       spec["n_stages"], spec["huber_c"] or 0.0, spec["weighting"], spec.get("form", "boundary"))
    raise ValueError(f"unknown objective {spec['kind']!r}")
