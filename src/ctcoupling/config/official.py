"""The official runs behind the paper presets, as their code runs them, and how ours differ.

Each entry holds the settings that a published number depends on, as dotted keys of an
experiment's resolved settings (`params.Experiment.config`), read from the official code (the
`source` of each entry names the files). A params file maps its couplings to these runs under
`official.runs` and explains each difference it keeps under `official.why`; `ctcoupling describe`
lists every difference with its reason, and a test fails on any difference that has none.
Pure data and a comparison: no I/O.
"""
from __future__ import annotations

from pathlib import PurePath

import numpy as np

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


class File(str):
    """An official setting that is a file: ours matches when its path names the same file (the user keeps
    the published file wherever they like)."""


# Every official loader draws without replacement, one shuffle per epoch: sony/vct datamodules/*.py
# (ResumableDataLoader, shuffle=True), consistency_GC train_consistency.py (DistributedSampler, set_epoch),
# locuslab/ect (EDM's InfiniteSampler: one shuffled order, kept re-mixed as it is walked).
_LOADER = {"train.minibatch": "epoch"}


def _net(prefix: str, channels: int, mult: list, blocks: int, attn: list, dropout: float) -> dict:
    return {f"{prefix}.model_channels": channels, f"{prefix}.channel_mult": mult, f"{prefix}.num_blocks": blocks,
            f"{prefix}.attn_resolutions": attn, f"{prefix}.dropout": dropout}


def _small_encoder(mult: list, dropout: float) -> dict:
    """sony/vct utils/model_utils.py: the main net's config with 32 channels, 1 block, 2C outputs."""
    return {"coupling.kind": "vc", **_net("encoder_network", 32, mult, 1, [16], dropout)}


_VCT = {"train.optimizer": "radam", "train.lr": 1e-4, **_CONSTANT_EMA, "train.nonfinite_grad": "zero",
        "sample.t_mid": [0.821], "evaluate.fidelity.protocol": "vct"}


def _vct_run(title: str, source: str, objective: dict, mult: list, channels: int, dropout: float, batch: int,
             hflip: bool, kl_scale: float, init: str | None = None) -> dict:
    """A sony/vct run and its baselines. README: "To run the baselines, set model.coupling=ot ... or
    independent. In either case, set grad_clip_val=0"; VC runs clip at 200; OT runs re-pair the noise
    of later sampling steps (models/cm_base.py). OT pairs each device's batch on its own: coupling_fn
    (models/cm_base.py) solves the exact plan of the batch that Lightning's training_step
    (lightning_modules/lightning_cm.py) hands that device, with no gather across devices (the README:
    "The batch size is specified as batch per device"). `init`: the published pickle its README command
    starts from (network.reload_url; the ECM runs), or None (from scratch: the iCT runs)."""
    return {
        "title": title, "source": source,
        "settings": {**objective, **_DDPMPP, **_net("network", channels, mult, 4, [16], dropout),
                     "train.steps": 400000, "train.batch": batch, "train.hflip": hflip,
                     "train.init": File(init) if init else None, **_VCT},
        "couplings": {
            "ic": {"coupling.kind": "ic", "train.grad_clip": None},
            "ot": {"coupling.kind": "ot", "coupling.scope": "rank", "train.grad_clip": None,
                   "sample.ot_pairing": True},
            "vc": {**_small_encoder(mult, dropout), "coupling.kl_scale": kl_scale, "train.grad_clip": 200.0},
        },
    }


_VCT_ICT = {**_ICT, "objective.huber_per_element": True}  # models/ict.py L28-30: per element

def std_to_gamma(std: float) -> float:
    """EDM2's power-EMA exponent gamma for a relative standard deviation sigma_rel: EDM2's eq. 3 solved for
    gamma, the largest real root of gamma^3 + 7 gamma^2 + (16 - s^-2) gamma + (12 - s^-2) (NVlabs/edm2
    training/phema.py std_to_exp; sony/vct utils/utils.py), by numpy's root finder as theirs."""
    t = std**-2
    return float(np.roots([1, 7, 16 - t, 12 - t]).real.max())


# EDM's CIFAR-10 DDPM++ (uncond, VP), which locuslab/ect run_ecm.sh (--transfer) and sony/vct's ECM-VC CIFAR-10
# command (network.reload_url) start from
EDM_CIFAR10 = "edm-cifar10-32x32-uncond-vp.pkl"
# sony/vct README (ECM-VC ImageNet 64): network.reload_url, EDM2-S's ImageNet-64 weights at EMA std 0.075
EDM2_S_IMG64 = "edm2-img64-s-1073741-0.075.pkl"

# sony/vct ImageNet: model.ema_type=power, model.ema_rate=0.1, the relative std that utils/utils.py
# std_to_exp turns into EDM2's exponent (6.94...)
VCT_IMAGENET_EMA_GAMMA = std_to_gamma(0.1)


def _edm2(prefix: str, channels: int, blocks: int) -> dict:
    """sony/vct conf/network/edm2.yaml for ImageNet 64 (label_dim 1000); the encoder (utils/model_utils.py,
    encoder_size=big) is the same network with 32 channels and 2 blocks."""
    return {f"{prefix}.kind": "edm2", f"{prefix}.label_dim": 1000, f"{prefix}.model_channels": channels,
            f"{prefix}.channel_mult": [1, 2, 3, 4], f"{prefix}.num_blocks": blocks, f"{prefix}.dropout": 0.4,
            f"{prefix}.dropout_res": 16}


# sCT (Lu & Song, ICLR 2025, arXiv 2410.11081 v2; no code released): Alg. 1, Sec. 4, App. G.1-G.2, Tables 4
# and 8. Every CM there starts from the authors' TrigFlow diffusion model of the same data (G.2: "we always
# initialize the CM from the EMA parameters of the teacher diffusion model"), which is not released.
SCT_TEACHER = "trigflow-teacher-not-released.pkl"
_SCT = {"objective.kind": "sct", "objective.kernel.kind": "trigflow", "objective.kernel.sigma_max": 80.0,
        "objective.kernel.sigma_data": 0.5, "objective.tangent_c": 0.1, "objective.warmup_steps": 10000,
        "objective.c_noise_scale": 1.0, "objective.P_mean": -1.0, "train.grad_clip": None,
        "train.init": File(SCT_TEACHER), "sample.steps": 2, "sample.t_mid": [1.1],
        "evaluate.fidelity.protocol": "standard"}
_SCT_UNSTATED = [
    "architecture: the paper's networks add adaptive double normalisation (Sec. 4.1) and, on ImageNet, "
    "positional time embeddings; the suite's SongUNet / EDM2 U-Net have neither (EDM2: MP-Fourier features of "
    "c_noise = t)",
    "not stated: the adaptive weighting's network w_phi (the suite: EDM2's MPFourier(128) + MPConv head), "
    "sigma_data (implied 0.5 by EDM/EDM2), weight decay, gradient clipping, whether the JVP pass shares the "
    "student's dropout mask (the suite: it does), the tangent norm's exact form (the suite: per-sample l2)",
    "the teacher: every sCT number is fine-tuned from the authors' TrigFlow diffusion model (not released); "
    "from scratch it is another run (train.init)"]


def _sct_imagenet64(size: str, channels: int, lr: float, params_m: float) -> dict:
    """sCT on ImageNet 64 at one EDM2 size (Table 4: batch 2048, Adam (0.9, 0.99), inverse-sqrt decay at
    t_ref 35k, 400k iterations, dropout 45% at resolutions <= 16, proposal (-1.0, 1.6), EMA sigma_rel 0.05)."""
    return {
        "title": f"sCT ImageNet 64, class-conditional, EDM2-{size} ({params_m}M, Table 4)",
        "source": "Lu & Song 2025 (arXiv 2410.11081 v2) App. G.1-G.2, Tables 4 and 8",
        "settings": {**_SCT, "objective.P_std": 1.6, "network.kind": "edm2", "network.label_dim": 1000,
                     "network.model_channels": channels, "network.channel_mult": [1, 2, 3, 4],
                     "network.num_blocks": 3, "network.dropout": 0.45, "network.dropout_res": 16,
                     "train.steps": 400000, "train.batch": 2048, "train.optimizer": "adam", "train.lr": lr,
                     "train.betas": [0.9, 0.99], "train.lr_ref_steps": 35000,
                     "train.ema_gamma": std_to_gamma(0.05), "train.ema_warmup": None},
        "couplings": {"ic": {"coupling.kind": "ic"}},
        "notes": ["Adam epsilon 1e-11 (Table 4) is not a setting of the suite's optimiser (torch's 1e-8)",
                  "FP16 training with a flash-attention JVP (App. F); the suite: float32 or bf16, composite attention"]
        + _SCT_UNSTATED}


def _gc_run(title: str, configs: str, net: dict, steps: int, batch: int, lr: float, reference_n: int | None = None,
            notes: list[str] | None = None, ema_start: int = 0) -> dict:
    """A consistency_GC Table-1 run: iCT with Lion, its EMA (ema-pytorch 0.2.3 EMA(beta=0.9999,
    update_after_step=`ema_start`, update_every=5); train_consistency.py) as GC's predictor, 1-step FID on
    batches of the training batch size (utils.py eval_fid) against `reference_n` training images
    (train_consistency.py size_FID_set); the baselines keep the config's dropout, GC runs use 0 (the
    *_GC_mix50 configs). `ema_start`: the config's train_config.ema_start, or Train_config's default
    10,000 (utils.py) where the config sets none. Batch-OT assigns the whole batch at once: the README
    trains on one process (`torchrun --nproc_per_node=1`; the configs' ngpu 1), whose batch is the
    global one (utils.py return_index_matching assigns the set it is given)."""
    return {
        "title": title,
        "source": f"thibautissenhuth/consistency_GC train_consistency.py, utils.py, {configs}; ema-pytorch 0.2.3",
        "settings": {**_ICT, "objective.huber_per_element": False, **_DDPMPP, **net, "train.steps": steps,
                     "train.batch": batch, "train.optimizer": "lion", "train.lr": lr, "train.lr_ref_steps": None,
                     "train.grad_clip": None, "train.ema": 0.9999, "train.ema_gamma": None,
                     "train.ema_warmup": {"inv_gamma": 1.0, "power": 2 / 3}, "train.ema_update_every": 5,
                     "train.ema_start": ema_start, "train.hflip": False, "sample.steps": 1, "sample.t_mid": [],
                     "evaluate.fidelity.protocol": "gc", "evaluate.fidelity.batch": batch,
                     **({"evaluate.fidelity.reference_n": reference_n} if reference_n else {})},
        "couplings": {"ic": {"coupling.kind": "ic"}, "ot": {"coupling.kind": "ot", "coupling.scope": "global"},
                      "gc": {"coupling.kind": "gc", "coupling.mu": 0.5, "coupling.predictor": "ema",
                             "coupling.mu_ramp_steps": 0, "coupling.prediction_range": None,
                             "network.dropout": 0.0}},
        "notes": notes or [],
    }

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
        _ECM, [2, 2, 2], 128, 0.2, 128, True, 10, EDM_CIFAR10),
    "vct_ecm_ffhq64": _vct_run(
        "VCT ECM-VC FFHQ 64 (and its IC/OT baselines)",
        "sony/vct README.md (ECM-VC FFHQ 64x64: network.channel_mult=[1,2,2,2]), conf/model/ecm.yaml, "
        "datamodules/ffhq_datamodule.py (flip commented out)",
        _ECM, [1, 2, 2, 2], 128, 0.2, 128, False, 10, "edm-ffhq-64x64-uncond-vp.pkl"),
    "ect_cifar10": {
        "title": "ECT/ECM CIFAR-10, locuslab/ect run_ecm.sh",
        "source": "locuslab/ect run_ecm.sh, ct_train.py defaults, training/loss.py (ECMLoss), "
                  "training/networks.py (ECMPrecond), training/ct_training_loop.py, metrics/metric_utils.py",
        "settings": {**_ECM, **_DDPMPP, **_net("network", 128, [2, 2, 2], 4, [16], 0.2),
                     "train.steps": 200000, "train.batch": 128, "train.optimizer": "radam", "train.lr": 1e-4,
                     **_CONSTANT_EMA, "train.grad_clip": None, "train.hflip": False, "train.nonfinite_grad": "replace",
                     "train.init": File(EDM_CIFAR10),  # run_ecm.sh --transfer
                     "sample.t_mid": [0.821], "evaluate.fidelity.protocol": "standard"},
        "couplings": {"ic": {"coupling.kind": "ic"}},
    },
    "gc_cifar10": _gc_run(
        "GC iCT CIFAR-10, Table 1 (IC, batch-OT, GC mu = 0.5)", "the CIFAR-10 configs",
        _net("network", 128, [1, 2, 2], 3, [], 0.3), steps=100000, batch=512, lr=1e-4),  # ema_start: 0 (configs)
    "gc_imagenet32": _gc_run(
        "GC iCT ImageNet 32, Table 1 (IC, batch-OT, GC mu = 0.5)",
        "configs/imagenet_base.yaml, configs/imagenet_GC_mix50.yaml",
        _net("network", 128, [1, 1, 2], [3, 5, 7], [16], [0.0, 0.2, 0.2]), steps=150000, batch=512, lr=8e-5,
        reference_n=50000, ema_start=10000, notes=[  # configs/imagenet_*.yaml set no ema_start: 10,000
            "data: consistency_GC reads full-size ImageNet-1k from Hugging Face and resizes it on the fly "
            "(torchvision Resize(32), bilinear, then CenterCrop(32)); the preset reads the official downsampled "
            "Imagenet32 (Chrabaszcz et al. 2017: the whole image box-resized to 32x32, no crop)"]),
    "gc_celeba64": _gc_run(
        "GC iCT CelebA 64, Table 1 (IC, batch-OT, GC mu = 0.5)",
        "configs/celebA_base.yaml, configs/celebA_GC_mix50.yaml (torchvision CelebA split='train', "
        "Resize(64, LANCZOS) + CenterCrop(64))",
        _net("network", 128, [1, 2, 2, 2], [3, 3, 4, 5], [], [0.0, 0.0, 0.2, 0.2]), steps=150000, batch=128,
        lr=8e-5, reference_n=50000),  # configs/celebA_*.yaml: ema_start 0
    "gc_lsun_church64": _gc_run(
        "GC iCT LSUN Church 64, Table 1 (IC, batch-OT, GC mu = 0.5)",
        "the paper's Table 1 only: the repository has no LSUN config; CelebA 64's settings assumed",
        _net("network", 128, [1, 2, 2, 2], [3, 3, 4, 5], [], [0.0, 0.0, 0.2, 0.2]), steps=150000, batch=128,
        lr=8e-5, reference_n=50000, notes=[
            "consistency_GC publishes no LSUN Church config or loader: the network, batch, dropout and "
            "preprocessing are CelebA 64's (the same resolution), an assumption, not the official run",
            "data: the official LSUN church_outdoor_train lmdb, shorter side resized to 64 (LANCZOS) and "
            "center-cropped, as consistency_GC prepares CelebA"]),
    "sct_cifar10": {
        "title": "sCT CIFAR-10, unconditional, DDPM++ (Table 1)",
        "source": "Lu & Song 2025 (arXiv 2410.11081 v2) Alg. 1, Sec. 4, App. G.1-G.2",
        "settings": {**_SCT, "objective.P_std": 1.4, **_DDPMPP, **_net("network", 128, [2, 2, 2], 4, [16], 0.2),
                     "train.batch": 512, "train.optimizer": "radam", "train.lr": 1e-4, "train.betas": [0.9, 0.99],
                     "train.lr_ref_steps": None, "train.ema": 0.5 ** (512 / 500000), "train.ema_gamma": None,
                     "train.ema_warmup": None},  # EMA half-life 0.5 Mimg at batch 512, per step
        "couplings": {"ic": {"coupling.kind": "ic"}},
        "notes": ["not stated: the iterations behind Table 1's 2.85 / 2.06 (the ablation of Table 3 runs "
                  "400k at batch 128); the preset trains 400k"] + _SCT_UNSTATED,
    },
    **{f"sct_imagenet64_{size.lower()}": _sct_imagenet64(size, ch, lr, m) for size, ch, lr, m in (
        ("S", 192, 1e-4, 280.2), ("M", 256, 9e-5, 497.8), ("L", 320, 8e-5, 777.6), ("XL", 384, 7e-5, 1119.4))},
    "vct_ecm_imagenet64": {
        "title": "VCT ECM-VC ImageNet 64, class-conditional, on EDM2-S (and its IC baseline)",
        "source": "sony/vct README.md (ECM-VC ImageNet 64x64 command), conf/network/edm2.yaml, "
                  "conf/dataset/imagenet.yaml, conf/model/ecm.yaml, utils/model_utils.py, "
                  "lightning_modules/lightning_cm.py, utils/utils.py, models/ecm.py, models/cm_base.py, "
                  "kernels/conditional_ot.py, networks/networks_edm2.py, custom_callbacks/fid_callback.py",
        "settings": {
            "objective.kind": "ect", "objective.form": "official", "objective.kernel.kind": "li",
            "objective.kernel.sigma_min": 0.003, "objective.kernel.sigma_max": 80.0,
            "objective.kernel.sigma_data": 0.5, "objective.P_mean": -0.8, "objective.P_std": 1.6, "objective.q": 4,
            "objective.k": 8, "objective.b": 1, "objective.n_stages": 4, "objective.huber_c": 0.06,
            "objective.weighting": "karras",
            **_edm2("network", 192, 3), "train.steps": 200000, "train.optimizer": "adam", "train.lr": 1e-3,
            "train.betas": [0.9, 0.99], "train.lr_ref_steps": 2000, "train.ema_gamma": VCT_IMAGENET_EMA_GAMMA,
            "train.ema_form": "sony_vct", "train.ema_warmup": None, "train.ema_update_every": 1,
            "train.nonfinite_grad": "zero", "train.hflip": False, "train.init": File(EDM2_S_IMG64),
            "sample.steps": 2, "sample.t_mid": [1.526],
            "sample.labels": "uniform", "evaluate.fidelity.protocol": "vct"},
        "couplings": {
            "ic": {"coupling.kind": "ic", "train.grad_clip": None},
            "vc": {"coupling.kind": "vc", "coupling.kl_scale": 90, **_edm2("encoder_network", 32, 2),
                   "train.grad_clip": 200.0},
        },
        "notes": [
            "batch: 128 per GPU on every GPU of the node (Lightning devices: auto); the code does not fix the "
            "GPU count, the preset assumes 8 (train.batch 1024)",
            "data: sony/vct reads an EDM dataset zip (NVlabs/edm dataset_tool.py) of ImageNet at 64x64, the "
            "preset's edm_zip source, and trains on every image of it (n_test: 0); FID-50k against every "
            "training image, as its FID callback"],
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
    if isinstance(b, File):
        return isinstance(a, str) and PurePath(a).name == b
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
    return {**_LOADER, **entry["settings"], **entry["couplings"][coupling_kind]}


# Settings whose difference makes a run another run than the official one, whatever the reason given
# (a model trained from scratch is not the fine-tuned one the paper measured): the audit calls such a
# measurement not comparable.
DEFINING = ("train.init",)


def preset_deviations(experiments: list, official: dict, cell: dict) -> list[dict]:
    """`deviations` of the experiment (params.Experiment) with the registry cell's dataset, objective and
    coupling (the first seed's: seeds share every setting), against the official run that the params'
    `official` section maps its coupling to; [] where it maps none."""
    for e in experiments:
        if (e.dataset, e.objective, e.coupling) == (cell["dataset"], cell["objective"], cell["coupling"]):
            run = official.get("runs", {}).get(e.coupling)
            return deviations(e.config, run, official.get("why", {})) if run else []
    return []


def deviations(config: dict, run: str, why: dict[str, str]) -> list[dict]:
    """Every setting of `config` (an experiment's resolved settings) that differs from the official
    run, with the params file's reason for it (None where it gives none)."""
    out = []
    for key, theirs in official_settings(run, config["coupling"]["kind"]).items():
        ours = _get(config, key)
        if not _same(ours, theirs):
            out.append({"key": key, "ours": ours, "official": theirs, "why": why.get(key)})
    return out
