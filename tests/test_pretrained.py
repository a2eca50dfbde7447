"""EDM's and EDM2's network pickles read without running them (pretrained.py).

The fixtures are pickles in the official layout, made here: a stand-in for NVIDIA's
`torch_utils.persistence` pickles every non-container module as `_reconstruct_persistent_obj(meta)`
with meta = dict(type='class', version, module_src, class_name, state=the module's __dict__), as the
official persistence.py's `__reduce__` does (read in NVlabs/edm and sony/vct torch_utils/; nothing
copied). Their `module_src` would stop the test if it ever ran. Checked once against pickles made by
the official classes themselves (sony/vct networks_edm2.py Precond and edm_networks.py SongUNet, with
its persistence module): equal state dicts, bitwise (2026-12-03).
"""
import io
import pickle
import sys
import types

import numpy as np
import pytest
import torch

from ctcoupling.model import pretrained
from ctcoupling.train import training
from ctcoupling.core.errors import UserError
from ctcoupling.model.kernels import ConsistencyModel, Kernel
from ctcoupling.model.networks import build

EXECUTED = "raise SystemExit('the pickle ran its stored source code')"


@pytest.fixture
def persistence(monkeypatch):
    """An importable torch_utils.persistence whose reconstruct function must never be called."""
    module = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):
        raise AssertionError("the official reconstruct function ran")

    _reconstruct_persistent_obj.__module__ = module.__name__
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"  # pickled by its official name
    module._reconstruct_persistent_obj = _reconstruct_persistent_obj
    monkeypatch.setitem(sys.modules, "torch_utils", types.ModuleType("torch_utils"))
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", module)
    return module


class _Precond(torch.nn.Module):
    def __init__(self, name: str, child: str, net: torch.nn.Module):
        super().__init__()
        self.class_name, self.sigma_data, self.scale = name, 0.5, np.float64(np.sqrt(0.5))
        self.add_module(child, net)


def official_pickle(persistence, obj) -> bytes:
    """pickle.dump of `obj` with every module but torch's containers reduced as a persistent class."""

    class P(pickle.Pickler):
        def reducer_override(self, o):
            if isinstance(o, torch.nn.Module) and type(o).__module__ != "torch.nn.modules.container":
                name = getattr(o, "class_name", type(o).__name__)
                meta = dict(type="class", version=6, module_src=EXECUTED, class_name=name, state=dict(o.__dict__))
                return persistence._reconstruct_persistent_obj, (meta,)
            return NotImplemented

    buf = io.BytesIO()
    P(buf, protocol=4).dump(obj)
    return buf.getvalue()


SONG = dict(kind="songunet", model_channels=16, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4], dropout=0.0)
EDM2 = dict(kind="edm2", model_channels=16, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4], label_dim=4)


@pytest.mark.parametrize("spec, wrapper, child", [(SONG, "EDMPrecond", "model"), (EDM2, "Precond", "unet")])
def test_official_layout_loads_as_the_experiments_network(tmp_path, persistence, spec, wrapper, child):
    torch.manual_seed(0)
    theirs = build(spec, (3, 8, 8))
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(torch.randn_like(p))
    blob = official_pickle(persistence, {"ema": _Precond(wrapper, child, theirs), "loss_fn": None,
                                         "dataset_kwargs": {"resolution": 8}})
    (tmp_path / "net.pkl").write_bytes(blob)
    torch.manual_seed(1)
    ours = ConsistencyModel(build(spec, (3, 8, 8)), Kernel())
    state = pretrained.init_state(ours, tmp_path / "net.pkl")
    assert all(torch.equal(state[f"net.{k}"], v) for k, v in theirs.state_dict().items())
    assert len(state) == len(ours.state_dict())


def test_train_init_takes_the_pickle(tmp_path, persistence):
    torch.manual_seed(0)
    theirs = build(SONG, (3, 8, 8))
    (tmp_path / "edm.pkl").write_bytes(official_pickle(persistence, {"ema": _Precond("EDMPrecond", "model", theirs)}))
    config = {"seed": 0, "network": SONG, "objective": {"kind": "ict", "kernel": {"kind": "ve"}, "s0": 10, "s1": 1280,
                                                       "P_mean": -1.1, "P_std": 2.0, "huber_c": None,
                                                       "huber_per_element": False},
              "coupling": {"kind": "ic"},
              "train": {"init": str(tmp_path / "edm.pkl"), "steps": 2, "batch": 2, "optimizer": "radam", "lr": 1e-4}}
    run = training.Run(config, (3, 8, 8), torch.device("cpu"))
    for k, v in theirs.state_dict().items():
        assert torch.equal(run.model.state_dict()[f"net.{k}"], v) and torch.equal(run.ema.state_dict()[f"net.{k}"], v)


def test_a_foreign_global_is_refused_and_nothing_runs(tmp_path):
    class Evil:
        def __reduce__(self):
            return (eval, ("__import__('os').system('echo pwned')",))

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"ema": Evil()}))
    with pytest.raises(UserError, match=r"evil.pkl: not an EDM/EDM2 network pickle .*builtins.eval is not admitted"):
        pretrained.read_pickle(tmp_path / "evil.pkl")


def test_a_mismatched_architecture_names_the_first_difference(tmp_path, persistence):
    torch.manual_seed(0)
    blob = official_pickle(persistence, {"ema": _Precond("EDMPrecond", "model", build(SONG, (3, 8, 8)))})
    (tmp_path / "edm.pkl").write_bytes(blob)
    bigger = ConsistencyModel(build(dict(SONG, model_channels=32), (3, 8, 8)), Kernel())
    with pytest.raises(UserError, match=r"edm.pkl: net\..* has shape .* there, .* here"):
        pretrained.init_state(bigger, tmp_path / "edm.pkl")
    other = ConsistencyModel(build(EDM2, (3, 8, 8)), Kernel())
    with pytest.raises(UserError, match="does not match the experiment's: missing"):
        pretrained.init_state(other, tmp_path / "edm.pkl")
    (tmp_path / "x.pkl").write_bytes(official_pickle(persistence, {"ema": _Precond("Other", "model", torch.nn.Linear(2, 2))}))
    with pytest.raises(UserError, match="'ema' is a Other, not one of EDM's or EDM2's"):
        pretrained.network_weights(tmp_path / "x.pkl")
