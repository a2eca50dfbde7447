"""The training loop: one function, read top to bottom (EDM's training_loop in spirit).

All randomness comes from the experiment's seed: the weights' initialisation and dropout from
torch's global generator, every per-sample draw from a `BatchRNG` over the global batch. The
resumable state (model, EMA, optimiser, step, both generators, the log) is written atomically every
`checkpoint_every` steps; `resume=True` continues from it to a bitwise-identical result on CPU.
Under torchrun each rank trains on its rows of the global batch (DDP averages the gradients).
"""
from __future__ import annotations

import copy
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import trange

from . import artifacts, couplings, networks, objectives, optim
from .errors import UserError
from .kernels import ConsistencyModel, Kernel
from .randomness import BatchRNG


def build_model(config: dict, data_shape: tuple[int, ...]) -> ConsistencyModel:
    net = networks.build(config["network"], data_shape)
    return ConsistencyModel(net, Kernel(**config["objective"]["kernel"]))


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


def train(config: dict, x_train: np.ndarray, state_path: str | Path | None = None, resume: bool = False,
          progress: bool = True, device: str | torch.device = "cpu") -> tuple[dict, list[dict]]:
    """Train a consistency model on `x_train` (model space). Returns (final checkpoint, per-step log)."""
    seed, spec = config["seed"], config["train"]
    rank, world = distributed()
    if spec["batch"] % world:
        raise UserError(f"train.batch = {spec['batch']} is not divisible by the {world} DDP ranks")
    local_batch = spec["batch"] // world
    device = torch.device(device)

    torch.manual_seed(seed)  # initialisation (identical on every rank) and dropout
    data = torch.from_numpy(x_train).to(device)
    model = build_model(config, tuple(data.shape[1:])).to(device)
    if spec.get("init"):
        init = _load_state(Path(spec["init"]))
        model.load_state_dict(init.get("ema", init.get("model")))
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = optim.make_optimizer(model.parameters(), spec)
    rng = BatchRNG(seed + 1, rank, world)
    loss_fn = objectives.build(config["objective"], spec["steps"])
    coupling = couplings.build(config["coupling"])
    log, start = [], 0

    state_path = Path(state_path) if state_path else None
    if resume and state_path and state_path.is_file():
        state = _load_state(state_path)
        if state["config"] != config:
            raise UserError(f"{state_path}: saved with other settings than this experiment's; "
                            "delete it or run without --resume")
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        rng.set_state(state["rng_batch"])
        torch.set_rng_state(state["rng_torch"])
        if torch.cuda.is_available() and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state_all(list(state["rng_cuda"]))
        log, start = state["log"], state["step"]
        if rank == 0:
            print(f"resuming from step {start} of {spec['steps']} ({state_path})", file=sys.stderr, flush=True)

    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def save_state(step: int) -> None:
        if rank == 0 and state_path:
            artifacts.write_torch(state_path, {
                "config": config, "step": step, "model": model.state_dict(), "ema": ema.state_dict(),
                "opt": opt.state_dict(), "rng_batch": rng.get_state(), "rng_torch": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None, "log": log,
            })

    bar = trange(start, spec["steps"], initial=start, total=spec["steps"], desc=f"train seed={seed}",
                 disable=not progress or rank != 0, mininterval=1.0)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = optim.learning_rate(spec, step)
        x = data[rng.randint(len(data), local_batch).to(device)]
        x, z = coupling(x, rng)
        loss, stats = loss_fn(net, x, z, step, rng)
        loss = loss.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), spec.get("grad_clip") or math.inf)
        if not (torch.isfinite(loss) and torch.isfinite(grad_norm)):
            kept = f"; the last good state is in {state_path}" if state_path and state_path.is_file() else ""
            raise UserError(f"training diverged at step {step} (loss {loss.item():.4g}, grad norm "
                            f"{grad_norm.item():.4g}): lower train.lr or set train.grad_clip{kept}")
        opt.step()
        optim.ema_update(ema, model, optim.ema_decay(spec, step))
        if step % spec["log_every"] == 0 or step == spec["steps"] - 1:
            row = {"step": step, "loss": loss.item(), "grad_norm": grad_norm.item(),
                   "lr": opt.param_groups[0]["lr"], **stats}
            log.append(row)
            bar.set_postfix(loss=f"{row['loss']:.4g}", **{k: v for k, v in stats.items()})
        if (step + 1) % spec["checkpoint_every"] == 0 and step + 1 < spec["steps"]:
            save_state(step + 1)

    checkpoint = {"config": config, "data_shape": list(data.shape[1:]), "step": spec["steps"],
                  "model": _cpu(model.state_dict()), "ema": _cpu(ema.state_dict())}
    return checkpoint, log


def _cpu(state: dict) -> dict:
    return {k: v.detach().cpu() for k, v in state.items()}


def load_model(checkpoint: dict, use_ema: bool = True) -> ConsistencyModel:
    model = build_model(checkpoint["config"], tuple(checkpoint["data_shape"]))
    model.load_state_dict(checkpoint["ema" if use_ema else "model"])
    return model.eval().requires_grad_(False)
