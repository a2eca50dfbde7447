"""The training loop: one function, read top to bottom (EDM's training_loop in spirit).

All randomness comes from the experiment's seed: the weights' initialisation and dropout from
torch's global generator, every per-sample draw from a `BatchRNG` over the global batch. A step's
draws (minibatch, times, noise; objectives.Draws) are taken one step ahead, in the same order as
drawing them in the step, so the coupling can prepare the next step while this one runs (batch-OT's
assignment). The resumable state (model, EMA, optimiser, step, both generators, the log) is written atomically every
`checkpoint_every` steps; `resume=True` continues from it to a bitwise-identical result on CPU.
Under torchrun each rank trains on its rows of the global batch (DDP averages the gradients).
"""
from __future__ import annotations

import copy
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ctcoupling.core import artifacts
from ctcoupling.train import couplings
from ctcoupling.model import networks
from ctcoupling.train import objectives
from ctcoupling.train import optim
from ctcoupling.model import pretrained
from ctcoupling.core.errors import UserError
from ctcoupling.data.datasets import to_model_space
from ctcoupling.model.kernels import ConsistencyModel, Kernel
from ctcoupling.train.objectives import Draws
from ctcoupling.train.randomness import BatchRNG, EpochSampler
from ctcoupling.model.trigflow import TrigFlowModel

# torchrun (the same interpreter's) for a train job of G > 1 processes on one node. Multi-node would be
# torchrun's --nnodes/--rdzv-endpoint with one launch per node: out of scope (docs/cluster.md).
TORCHRUN = "python -m torch.distributed.run --standalone --nproc_per_node {gpus} -m ctcoupling"


def build_model(config: dict, data_shape: tuple[int, ...]) -> ConsistencyModel | TrigFlowModel:
    net = networks.build(config["network"], data_shape)
    spec = config["objective"]
    if spec["kind"] in objectives.TRIGFLOW:
        return TrigFlowModel(net, Kernel(**spec["kernel"]), spec["c_noise_scale"], spec["logvar_channels"])
    official_ect = config["objective"].get("form") == "official"  # EDM's precond in training (ECT)
    return ConsistencyModel(net, Kernel(**config["objective"]["kernel"]), boundary_in_training=not official_ect)


def distributed() -> tuple[int, int]:
    """(rank, world size); joins the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _load_state(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"{path}: unreadable training state ({type(e).__name__}); delete it to start over") from None


class Run:
    """Everything one training run updates: the model and its EMA, VC's encoder and its EMA, the
    coupling, the optimiser, the objective and the per-sample generator."""

    def __init__(self, config: dict, data_shape: tuple[int, ...], device: torch.device, rank: int = 0, world: int = 1,
                 teacher=None):
        seed, spec = config["seed"], config["train"]
        self.config, self.spec, self.world = config, spec, world
        torch.manual_seed(seed)  # initialisation (identical on every rank) and dropout
        self.model = build_model(config, data_shape).to(device)
        if spec.get("init"):  # a ctcoupling model.pt, or an EDM/EDM2 network pickle read without running it
            init = Path(spec["init"])
            if init.suffix == ".pkl":
                self.model.load_state_dict(pretrained.init_state(self.model, init))
            else:
                state = _load_state(init)
                self.model.load_state_dict(state.get("ema", state.get("model")))
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        encoder = build_encoder(config, data_shape)
        self.encoder = encoder.to(device) if encoder is not None else None
        self.ema_encoder = copy.deepcopy(self.encoder).requires_grad_(False) if encoder is not None else None
        frozen = None
        if config["coupling"].get("predictor") == "checkpoint":
            frozen = load_model(_load_state(Path(config["coupling"]["checkpoint"]))).to(device)
        self.coupling = couplings.build(config["coupling"], encoder=self.encoder, model=self.model, ema=self.ema,
                                        frozen=frozen, rng=BatchRNG(seed + 2, rank, world), rank=rank, world=world)
        self.trainable = list(self.model.parameters()) + (list(self.encoder.parameters()) if encoder else [])
        self.averages = [optim.EMA(self.ema, self.model)]
        if encoder is not None:
            self.averages.append(optim.EMA(self.ema_encoder, self.encoder))
        self.opt = optim.make_optimizer(self.trainable, spec)  # VC: the encoder trains in the same optimiser
        self.rng = BatchRNG(seed + 1, rank, world)
        self.epochs: EpochSampler | None = None  # `minibatch: epoch`: made for the data set at the first draw
        # uint8 -> model space by table: exactly data.to_model_space's float32 values, on any kernel
        self.model_space = torch.from_numpy(to_model_space(np.arange(256, dtype=np.uint8)))
        self.loss_fn = objectives.build(config["objective"], spec["steps"], teacher)  # teacher: sCD-exact's
        self.memory_format = torch.channels_last if spec.get("channels_last") else torch.contiguous_format
        for module in (self.model, self.ema, self.encoder, self.ema_encoder):
            if module is not None:
                module.to(memory_format=self.memory_format)  # 4-D weights only; the same values
        self.autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=spec.get("precision") == "bf16")
        self.net = self.model
        if world > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if spec.get("compile"):
            import torch._inductor.config as inductor

            inductor.fallback_random = True  # eager's generator: paired_passes' replay gives one dropout mask
            self.net = torch.compile(self.net)

    def draw(self, data: torch.Tensor, step: int, n: int | None = None, labels: torch.Tensor | None = None) -> Draws:
        """Step `step`'s randomness: n minibatch rows of `data` (the rank's share of train.batch by
        default) with their `labels` (a class-conditional model), then the objective's times and noise."""
        x, y = self.minibatch(data, n or self.spec["batch"] // self.world, labels, step)
        draws = self.loss_fn.draw(x, step, self.rng, y)
        if draws.x.ndim == 4 and self.memory_format is torch.channels_last:
            draws.x, draws.eps = (t.contiguous(memory_format=torch.channels_last) for t in (draws.x, draws.eps))
        return draws

    def iterate(self, data: torch.Tensor, start: int, stop: int, labels: torch.Tensor | None = None):
        """Train steps start..stop-1, each drawn one step ahead so that the coupling prepares step k+1
        while step k runs. Yields (step, loss, grad norm, statistics, the batch generator's state
        where step + 1's draws begin: what a checkpoint after this step saves)."""
        draws = self.draw(data, start, labels=labels) if start < stop else None
        for step in range(start, stop):
            next_state = self.rng.get_state()
            ahead = self.draw(data, step + 1, labels=labels) if step + 1 < stop else None
            if ahead is not None:
                self.coupling.prepare(ahead)
            loss, grad_norm, stats = self.step(draws)
            draws = ahead
            yield step, loss, grad_norm, stats, next_state

    def step(self, draws: Draws):
        """One optimisation step on drawn randomness: (loss, grad norm, statistics)."""
        step = draws.step
        for group in self.opt.param_groups:
            group["lr"] = optim.learning_rate(self.spec, step)
        with torch.autocast(**self.autocast):
            loss, stats = self.loss_fn.loss(self.net, draws, self.coupling)
        loss = loss.mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.world > 1 and self.encoder is not None:  # DDP syncs the model's gradients; the encoder's here
            for p in self.encoder.parameters():
                if p.grad is not None:
                    torch.distributed.all_reduce(p.grad)
                    p.grad /= self.world
        if self.spec["nonfinite_grad"] != "abort":
            optim.replace_nonfinite(self.trainable, self.spec["nonfinite_grad"])
        grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, self.spec.get("grad_clip") or math.inf)
        if self.healthy(loss, grad_norm):
            self.opt.step()
            decay = optim.ema_decay(self.spec, step)
            if decay is not None:
                for average in self.averages:
                    average.update(decay)
        return loss, grad_norm, stats

    def healthy(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> bool:
        """Whether to step: always where non-finite gradients are replaced (the official loops go on),
        else only on a finite loss and gradient (the loop then stops with an error)."""
        return self.spec["nonfinite_grad"] != "abort" or bool(torch.isfinite(loss) and torch.isfinite(grad_norm))

    def minibatch(self, data: torch.Tensor, n: int, labels: torch.Tensor | None = None, step: int = 0):
        """This rank's n training examples of step `step`, and their labels (None without): by
        `train.minibatch`, `epoch` (default) takes them from per-epoch shuffles without replacement
        (randomness.EpochSampler, as the official loaders), `replacement` draws them uniformly with
        replacement from the run's batch generator. With `hflip`, each is flipped left-right with
        probability 1/2 (sony/vct's RandomHorizontalFlip), the coins from the batch generator."""
        if self.spec["minibatch"] == "epoch":
            if self.epochs is None or self.epochs.n != len(data):
                self.epochs = EpochSampler(len(data), self.config["seed"], self.rng.rank, self.world)
            i = self.epochs.indices(step, n).to(data.device)
        else:
            i = self.rng.randint(len(data), n).to(data.device)
        x = data[i]
        if x.dtype == torch.uint8:  # images stay uint8 until drawn (ImageNet 64 in float32 would be 63 GB)
            x = self.model_space.to(x.device)[x.long()]
        if self.spec["hflip"]:
            flip = (self.rng.rand(n) < 0.5).to(data.device).reshape(-1, *[1] * (x.ndim - 1))
            x = torch.where(flip, x.flip(-1), x)
        return x, (labels[i] if labels is not None else None)

    def weights(self) -> dict:
        out = {"model": self.model.state_dict(), "ema": self.ema.state_dict()}
        if self.encoder is not None:
            out |= {"encoder": self.encoder.state_dict(), "ema_encoder": self.ema_encoder.state_dict()}
        return out

    def snapshot(self, step: int) -> dict:
        """The EMA weights after `step` steps (what sampling uses), a copy on the CPU."""
        out = {"step": step, "ema": _cpu(self.ema.state_dict(), clone=True)}
        if self.encoder is not None:
            out["ema_encoder"] = _cpu(self.ema_encoder.state_dict(), clone=True)
        return out

    def state_dict(self, rng_batch: torch.Tensor | None = None) -> dict:
        """The resumable state: weights, optimiser and every generator (`rng_batch`: the batch
        generator's state where the next step's draws begin, when they have been drawn already)."""
        rng_batch = self.rng.get_state() if rng_batch is None else rng_batch
        return {**self.weights(), "opt": self.opt.state_dict(), "rng_batch": rng_batch,
                "rng_coupling": self.coupling.get_state(), "rng_torch": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        if self.encoder is not None:
            self.encoder.load_state_dict(state["encoder"])
            self.ema_encoder.load_state_dict(state["ema_encoder"])
        self.opt.load_state_dict(state["opt"])
        self.rng.set_state(state["rng_batch"])
        self.coupling.set_state(state["rng_coupling"])
        torch.set_rng_state(state["rng_torch"])
        if torch.cuda.is_available() and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state_all(list(state["rng_cuda"]))


def train(config: dict, x_train: np.ndarray, state_path: str | Path | None = None, resume: bool = False,
          progress: bool = True, device: str | torch.device = "cpu",
          on_log: Callable[[dict], None] | None = None,
          y_train: np.ndarray | None = None, teacher=None) -> tuple[dict, list[dict], list[dict]]:
    """Train a consistency model on `x_train` (uint8 images, converted per minibatch, or points in model
    space), class-conditional on `y_train` (0-based
    labels) where the network has a label_dim. Returns (final checkpoint, per-step log, snapshots):
    the EMA weights every `train.snapshot_every` steps before the end, for the curve stage (the final
    ones are the checkpoint's, not stored twice). `on_log`: called on rank 0 with each logged row as
    it is logged (a live view: trainlog.TensorBoardLog). `teacher`: the exact velocity v(x_t, t) of the
    data (trigflow.mixture_teacher_or_empirical), which `objective: scd_exact` distils."""
    seed, spec = config["seed"], config["train"]
    labels = class_labels(config, y_train, len(x_train))
    rank, world = distributed()
    if world != spec["gpus"]:
        raise UserError(f"train.gpus = {spec['gpus']} but this run has {world} process(es): launch it with "
                        f"`{TORCHRUN.format(gpus=spec['gpus'])} train ...` (the pipeline's train stage does), "
                        f"or set train.gpus: {world}")
    if spec["batch"] % world:
        raise UserError(f"train.batch = {spec['batch']} is not divisible by the {world} DDP ranks")
    device = torch.device(device)
    data = torch.from_numpy(x_train).to(device)
    run = Run(config, tuple(data.shape[1:]), device, rank, world, teacher)
    log, start = [], 0

    state_path = Path(state_path) if state_path else None
    if resume and state_path and state_path.is_file():
        state = _load_state(state_path)
        if state["config"] != config:
            raise UserError(f"{state_path}: saved with other settings than this experiment's; "
                            "delete it or run without --resume")
        run.load_state_dict(state)
        log, start, snapshots = state["log"], state["step"], state["snapshots"]
        if rank == 0:
            print(f"resuming from step {start} of {spec['steps']} ({state_path})", file=sys.stderr, flush=True)
    else:
        snapshots = []
    bar = tqdm(initial=start, total=spec["steps"], desc=f"train seed={seed}", disable=not progress or rank != 0,
               mininterval=1.0)
    labels = torch.from_numpy(labels).to(device) if labels is not None else None
    for step, loss, grad_norm, stats, next_state in run.iterate(data, start, spec["steps"], labels):
        bar.update()
        if not run.healthy(loss, grad_norm):
            kept = f"; the last good state is in {state_path}" if state_path and state_path.is_file() else ""
            raise UserError(f"training diverged at step {step} (loss {loss.item():.4g}, grad norm "
                            f"{grad_norm.item():.4g}): lower train.lr or set train.grad_clip{kept}")
        if step % spec["log_every"] == 0 or step == spec["steps"] - 1:
            stats = {k: v.item() if torch.is_tensor(v) else v for k, v in stats.items()}  # read only here
            row = {"step": step, "loss": loss.item(), "grad_norm": grad_norm.item(),
                   "lr": run.opt.param_groups[0]["lr"], **stats}
            log.append(row)
            if on_log is not None and rank == 0:
                on_log(row)
            bar.set_postfix(loss=f"{row['loss']:.4g}", **{k: row[k] for k in stats})
        every = spec.get("snapshot_every")
        if every and (step + 1) % every == 0 and step + 1 < spec["steps"]:
            snapshots.append(run.snapshot(step + 1))
        if (step + 1) % spec["checkpoint_every"] == 0 and step + 1 < spec["steps"] and rank == 0 and state_path:
            artifacts.write_torch(state_path, {"config": config, "step": step + 1, "log": log,
                                               "snapshots": snapshots, **run.state_dict(rng_batch=next_state)})
    bar.close()

    checkpoint = {"config": config, "data_shape": list(data.shape[1:]), "step": spec["steps"],
                  **{k: _cpu(v) for k, v in run.weights().items()}}
    return checkpoint, log, snapshots


def label_dim(config: dict) -> int:
    """The number of classes the experiment's model is conditioned on (0: unconditional)."""
    return config["network"].get("label_dim", 0)


def class_labels(config: dict, y: np.ndarray | None, n: int) -> np.ndarray | None:
    """The training labels a class-conditional model needs (int64), checked; None for an unconditional one."""
    dim = label_dim(config)
    if not dim:
        return None
    if y is None:
        raise UserError(f"network.label_dim = {dim} (class-conditional) but the data set has no labels: "
                        "use a labelled source or set label_dim: 0")
    y = np.asarray(y)
    if len(y) != n or not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"the data set's labels are {len(y)} {y.dtype} values for {n} images; expected integers")
    if len(y) and (y.min() < 0 or y.max() >= dim):
        raise UserError(f"the data set's labels run from {y.min()} to {y.max()}, outside 0..{dim - 1} "
                        f"(network.label_dim = {dim})")
    return y.astype(np.int64)


def build_encoder(config: dict, data_shape: tuple[int, ...]) -> couplings.Encoder | None:
    """VC's noise encoder, when the coupling has one (its network spec resolved into `encoder_network`)."""
    if "encoder_network" not in config:
        return None
    net = networks.build(config["encoder_network"], data_shape, out_mult=2)
    return couplings.Encoder(net, config["objective"]["kernel"]["sigma_data"])


def _cpu(state: dict, clone: bool = False) -> dict:
    return {k: (v.detach().cpu().clone() if clone else v.detach().cpu()) for k, v in state.items()}


def load_model(checkpoint: dict, use_ema: bool = True, weights: dict | None = None) -> ConsistencyModel:
    """The checkpoint's (EMA) model, or its architecture with `weights` (a snapshot's)."""
    model = build_model(checkpoint["config"], tuple(checkpoint["data_shape"]))
    model.load_state_dict(weights if weights is not None else checkpoint["ema" if use_ema else "model"])
    return model.eval().requires_grad_(False)


def load_encoder(checkpoint: dict, use_ema: bool = True, weights: dict | None = None) -> couplings.Encoder | None:
    encoder = build_encoder(checkpoint["config"], tuple(checkpoint["data_shape"]))
    if encoder is not None:
        encoder.load_state_dict(weights if weights is not None else checkpoint["ema_encoder" if use_ema else "encoder"])
        encoder.eval().requires_grad_(False)
    return encoder
