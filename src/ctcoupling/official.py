"""The official runs behind the paper presets, as their code runs them, and how ours differ.

Each entry holds the settings that a published number depends on, as dotted keys of an
experiment's resolved settings (`params.Experiment.config`), read from the official code (the
`source` of each entry names the files). A params file maps its couplings to these runs under
`official.runs` and explains each difference it keeps under `official.why`; `ctcoupling describe`
lists every difference with its reason, and a test fails on any difference that has none.
Pure data and a comparison: no I/O.
"""
from __future__ import annotations

_VE = {"objective.kernel.kind": "ve", "objective.kernel.sigma_max": 80.0, "objective.kernel.sigma_data": 0.5,
       "objective.kernel.rho": 7.0}
_ICT = {**_VE, "objective.kind": "ict", "objective.kernel.sigma_min": 0.002, "objective.s0": 10,
        "objective.s1": 1280, "objective.P_mean": -1.1, "objective.P_std": 2.0, "objective.huber_c": None}
_ECM = {**_VE, "objective.kind": "ect", "objective.form": "official", "objective.kernel.sigma_min": 0.003,
        "objective.P_mean": -1.1, "objective.P_std": 2.0, "objective.q": 2, "objective.k": 8, "objective.b": 1,
        "objective.n_stages": 8, "objective.huber_c": 0.0, "objective.weighting": "consistency"}
_DDPMPP = {"network.kind": "songunet", "network.embedding_type": "positional", "network.channel_mult_noise": 1,
           "network.encoder_type": "standard", "network.decoder_type": "standard", "network.resample_filter": [1, 1]}
_CONSTANT_EMA = {"train.ema": 0.9999, "train.ema_gamma": None, "train.ema_warmup": None, "train.ema_update_every": 1,
                 "train.lr_ref_steps": None}


def _net(prefix: str, channels: int, mult: list, blocks: int, attn: list, dropout: float) -> dict:
    return {f"{prefix}.model_channels": channels, f"{prefix}.channel_mult": mult, f"{prefix}.num_blocks": blocks,
            f"{prefix}.attn_resolutions": attn, f"{prefix}.dropout": dropout}


def _small_encoder(mult: list, dropout: float) -> dict:
    """sony/vct utils/model_utils.py: the main net's config with 32 channels, 1 block, 2C outputs."""
    return {"coupling.kind": "vc", **_net("encoder_network", 32, mult, 1, [16], dropout)}


_VCT = {"train.optimizer": "radam", "train.lr": 1e-4, **_CONSTANT_EMA, "train.nonfinite_grad": "zero",
        "sample.t_mid": [0.821], "evaluate.fidelity.protocol": "vct"}


def _vct_run(title: str, source: str, objective: dict, mult: list, channels: int, dropout: float, batch: int,
             hflip: bool, kl_scale: float) -> dict:
    """A sony/vct run and its baselines. README: "To run the baselines, set model.coupling=ot ... or
    independent. In either case, set grad_clip_val=0"; VC runs clip at 200; OT runs re-pair the noise
    of later sampling steps (models/cm_base.py)."""
    return {
        "title": title, "source": source,
        "settings": {**objective, **_DDPMPP, **_net("network", channels, mult, 4, [16], dropout),
                     "train.steps": 400000, "train.batch": batch, "train.hflip": hflip, **_VCT},
        "couplings": {
            "ic": {"coupling.kind": "ic", "train.grad_clip": None},
            "ot": {"coupling.kind": "ot", "train.grad_clip": None, "sample.ot_pairing": True},
            "vc": {**_small_encoder(mult, dropout), "coupling.kl_scale": kl_scale, "train.grad_clip": 200.0},
        },
    }


_VCT_ICT = {**_ICT, "objective.huber_per_element": True}  # models/ict.py L28-30: per element

RUNS = {
    "vct_ict_cifar10": _vct_run(
        "VCT iCT-VC CIFAR-10 (and its IC/OT baselines)",
        "sony/vct README.md (iCT-VC CIFAR10), conf/model/ict.yaml, conf/network/ddpmpp.yaml, models/ict.py, "
        "datamodules/cifar10_datamodule.py, custom_callbacks/fid_callback.py",
        _VCT_ICT, [2, 2, 2], 128, 0.3, 512, True, 30),
    "vct_ict_fmnist": _vct_run(
        "VCT iCT-VC Fashion-MNIST (and its IC/OT baselines)",
        "sony/vct README.md (iCT-VC Fashion MNIST: network.model_channels=64), conf/network/ddpmpp.yaml, "
        "datamodules/fmnist_datamodule.py (no flips)",
        _VCT_ICT, [2, 2, 2], 64, 0.3, 128, False, 30),
    "vct_ecm_cifar10": _vct_run(
        "VCT ECM-VC CIFAR-10 (and its IC/OT baselines)",
        "sony/vct README.md (ECM-VC CIFAR10), conf/model/ecm.yaml, models/ecm.py, datamodules/cifar10_datamodule.py",
        _ECM, [2, 2, 2], 128, 0.2, 128, True, 10),
    "vct_ecm_ffhq64": _vct_run(
        "VCT ECM-VC FFHQ 64 (and its IC/OT baselines)",
        "sony/vct README.md (ECM-VC FFHQ 64x64: network.channel_mult=[1,2,2,2]), conf/model/ecm.yaml, "
        "datamodules/ffhq_datamodule.py (flip commented out)",
        _ECM, [1, 2, 2, 2], 128, 0.2, 128, False, 10),
    "ect_cifar10": {
        "title": "ECT/ECM CIFAR-10, locuslab/ect run_ecm.sh",
        "source": "locuslab/ect run_ecm.sh, ct_train.py defaults, training/loss.py (ECMLoss), "
                  "training/networks.py (ECMPrecond), training/ct_training_loop.py, metrics/metric_utils.py",
        "settings": {**_ECM, **_DDPMPP, **_net("network", 128, [2, 2, 2], 4, [16], 0.2),
                     "train.steps": 200000, "train.batch": 128, "train.optimizer": "radam", "train.lr": 1e-4,
                     **_CONSTANT_EMA, "train.grad_clip": None, "train.hflip": False, "train.nonfinite_grad": "replace",
                     "sample.t_mid": [0.821], "evaluate.fidelity.protocol": "standard"},
        "couplings": {"ic": {"coupling.kind": "ic"}},
    },
    "gc_cifar10": {
        "title": "GC iCT CIFAR-10, Table 1 (IC, batch-OT, GC mu = 0.5)",
        "source": "thibautissenhuth/consistency_GC train_consistency.py, utils.py, the CIFAR-10 configs; "
                  "ema-pytorch 0.2.3 (EMA(beta=0.9999, update_after_step=0, update_every=5))",
        "settings": {**_ICT, "objective.huber_per_element": False, **_DDPMPP,
                     **_net("network", 128, [1, 2, 2], 3, [], 0.3), "train.steps": 100000, "train.batch": 512,
                     "train.optimizer": "lion", "train.lr": 1e-4, "train.lr_ref_steps": None, "train.grad_clip": None,
                     "train.ema": 0.9999, "train.ema_gamma": None,
                     "train.ema_warmup": {"inv_gamma": 1.0, "power": 2 / 3}, "train.ema_update_every": 5,
                     "train.hflip": False, "sample.steps": 1, "sample.t_mid": [],
                     "evaluate.fidelity.protocol": "gc", "evaluate.fidelity.batch": 512},
        "couplings": {"ic": {"coupling.kind": "ic"}, "ot": {"coupling.kind": "ot"},
                      "gc": {"coupling.kind": "gc", "coupling.mu": 0.5, "coupling.predictor": "ema",
                             "coupling.mu_ramp_steps": 0, "coupling.prediction_range": None,
                             "network.dropout": 0.0}},
    },
}


def _get(config: dict, key: str):
    node = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return "(unset)"
        node = node[part]
    return node


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1.0)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def official_settings(run: str, coupling_kind: str) -> dict:
    """The official run's settings for one coupling kind (shared settings, then the coupling's)."""
    entry = RUNS[run]
    if coupling_kind not in entry["couplings"]:
        raise KeyError(f"official run {run!r} has no {coupling_kind!r} coupling (has: {', '.join(entry['couplings'])})")
    return {**entry["settings"], **entry["couplings"][coupling_kind]}


def deviations(config: dict, run: str, why: dict[str, str]) -> list[dict]:
    """Every setting of `config` (an experiment's resolved settings) that differs from the official
    run, with the params file's reason for it (None where it gives none)."""
    out = []
    for key, theirs in official_settings(run, config["coupling"]["kind"]).items():
        ours = _get(config, key)
        if not _same(ours, theirs):
            out.append({"key": key, "ours": ours, "official": theirs, "why": why.get(key)})
    return out
