"""Weights from EDM's and EDM2's published network pickles, read without running any code in them.

ECT fine-tunes EDM's diffusion models (`edm-cifar10-32x32-uncond-vp.pkl`, `edm-ffhq-64x64-uncond-vp.pkl`)
and sony/vct's ImageNet 64 run EDM2-S (`edm2-img64-s-1073741-0.075.pkl`). Those files are Python pickles
of NVIDIA's `torch_utils.persistence` classes, whose unpickling executes the source code stored inside
them; `pickle.load` on a downloaded file can run anything. This reader admits a fixed set of globals:
a persistent object becomes an inert `_Stub` holding only its recorded state (its stored source is never
compiled), containers and `OrderedDict`s are rebuilt as data, and tensors through torch's own rebuild
functions with their storages read by `torch.load(weights_only=True)`. Any other global is refused
with its name. The state dict of the network under the pickle's `ema` entry (EDM: `EDMPrecond.model`,
a SongUNet; EDM2: `Precond.unet`) is then renamed onto a ctcoupling ConsistencyModel (`net.` prefix),
whose networks use EDM's and EDM2's module names. Written here because neither torch nor the official
code offers a safe reader of these pickles.
"""
from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from ctcoupling.core.errors import UserError


class _Stub:
    """An object the pickle describes (a persistent class instance or a torch.nn container): its state only."""

    class_name, state = "", {}

    def __init__(self, class_name: str = "", state: dict | None = None):
        self.class_name, self.state = class_name, dict(state or {})

    def __setstate__(self, state):
        self.state = dict(state) if isinstance(state, dict) else {"_state": state}


def _persistent(meta: dict) -> _Stub:
    """torch_utils.persistence._reconstruct_persistent_obj, without compiling meta['module_src']."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict):
        raise pickle.UnpicklingError("malformed persistent object")
    return _Stub(str(meta.get("class_name")), meta["state"])


def _load_storage(blob: bytes):
    return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)


_PERSISTENCE = ("torch_utils.persistence", "torch_utils.persistence_edm2")  # NVIDIA's, and sony/vct's copy
_ALLOWED = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("dnnlib.util", "EasyDict"): dict,
    # numpy scalars and dtypes in the modules' attributes (EDM's skip_scale = np.sqrt(0.5)); numpy 1.x names too
    **{(m, "scalar"): np._core.multiarray.scalar for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    ("numpy", "dtype"): np.dtype,
    **{(m, "_reconstruct_persistent_obj"): _persistent for m in _PERSISTENCE},
}
_CONTAINERS = ("torch.nn.modules.container", "torch.nn.modules.linear", "torch.nn.modules.module")


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module in _CONTAINERS:  # ModuleDict, ModuleList, Identity...: rebuilt as inert stubs
            return type(name, (_Stub,), {"class_name": name})
        raise pickle.UnpicklingError(f"global {module}.{name} is not admitted")


def read_pickle(path: Path) -> dict:
    """The pickle's top-level dict, persistent objects as stubs (see the module docstring)."""
    try:
        with open(path, "rb") as f:
            data = _Unpickler(f).load()
    except FileNotFoundError:
        raise UserError(f"{path}: network pickle not found") from None
    except Exception as e:  # noqa: BLE001 - any malformed or refused content is a data error
        raise UserError(f"{path}: not an EDM/EDM2 network pickle this reader admits ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("ema"), _Stub):
        raise UserError(f"{path}: no network under 'ema' (keys: {', '.join(map(str, data)) if isinstance(data, dict) else type(data).__name__})")
    return data


def state_dict(stub: _Stub, prefix: str = "") -> dict[str, torch.Tensor]:
    """The module tree's parameters and buffers, named as torch names them."""
    out = {}
    for group in ("_parameters", "_buffers"):
        for name, value in (stub.state.get(group) or {}).items():
            if value is not None:
                out[prefix + name] = value.detach() if isinstance(value, torch.Tensor) else value
    for name, child in (stub.state.get("_modules") or {}).items():
        if isinstance(child, _Stub):
            out.update(state_dict(child, f"{prefix}{name}."))
    return out


# The preconditioning wrapper's child that is the raw network, per official class.
_INNER = {"EDMPrecond": "model", "VPPrecond": "model", "VEPrecond": "model", "iDDPMPrecond": "model",
          "Precond": "unet"}


def network_weights(path: Path) -> dict[str, torch.Tensor]:
    """The raw network's weights of the pickle's `ema` model, named as ctcoupling's ConsistencyModel
    names them (`net.` + EDM's or EDM2's module names)."""
    ema = read_pickle(Path(path))["ema"]
    inner = _INNER.get(ema.class_name)
    child = (ema.state.get("_modules") or {}).get(inner) if inner else None
    if not isinstance(child, _Stub):
        raise UserError(f"{path}: 'ema' is a {ema.class_name}, not one of EDM's or EDM2's preconditioned networks "
                        f"({', '.join(_INNER)})")
    return {f"net.{k}": v for k, v in state_dict(child).items()}


def init_state(model: torch.nn.Module, path: Path) -> dict[str, torch.Tensor]:
    """`model`'s state dict with every tensor taken from the pickle, checked name by name and shape by
    shape (a one-line error names the first that does not match)."""
    theirs, ours = network_weights(path), model.state_dict()
    missing, extra = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
    if missing or extra:
        raise UserError(f"{path}: its network does not match the experiment's: missing {missing[:3]}, "
                        f"unexpected {extra[:3]}; check `networks` against the pickle's architecture")
    for k, v in ours.items():
        if tuple(theirs[k].shape) != tuple(v.shape):
            raise UserError(f"{path}: {k} has shape {tuple(theirs[k].shape)} there, {tuple(v.shape)} here")
    return {k: theirs[k].to(v.dtype) for k, v in ours.items()}
