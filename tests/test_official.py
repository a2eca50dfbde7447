"""Each setting a published number depends on, against the official code (issue: fidelity).

Every expected value here is computed independently of ctcoupling: by the official code's own
library where it is installable (ema-pytorch 0.2.3 for consistency_GC's EMA, POT for sony/vct's OT
sampler), else by re-deriving the official formula from the cited file and line. The citations are
to the repositories' files (mirrors read with the search tool's fetch; nothing copied).
"""
import copy
import math

import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT
from ctcoupling.data import datasets
from ctcoupling.pipeline import describe
from ctcoupling.measure import fidelity
from ctcoupling.train import objectives
from ctcoupling.train import optim
from ctcoupling.model import sampling
from ctcoupling.train import training
from ctcoupling.config import official as O
from ctcoupling.config import params as P
from ctcoupling.train.couplings import IndependentCoupling
from ctcoupling.core.errors import UserError
from ctcoupling.model.kernels import ConsistencyModel, Kernel
from ctcoupling.model.networks import MLP, build
from ctcoupling.train.randomness import BatchRNG, EpochSampler


def smoke():
    return yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text())


def preset(name):
    return P.load(ROOT / "params" / f"{name}.yaml")


# ---------------------------------------------------------------------------------------------
# The digits bug: an IC run on an override that names an encoder (the smoke suite's digits_unet).


def test_ic_run_under_an_encoder_override_has_no_encoder_and_samples_standard_noise():
    """Before the fix the IC checkpoint carried an untrained encoder (mu 0, s 0.693) and 2-step
    sampling drew its second noise as 0.693 eps; now the setting is ignored, and says so."""
    params = smoke()
    assert "encoder" in params["overrides"]["digits_unet"]["set"]["coupling"]  # the override names one
    exp = P.experiment(P.validate(params), "digits-ect-ic-s0")
    assert "encoder_network" not in exp.config and "encoder" not in exp.config["coupling"]
    assert any(i.startswith("coupling.encoder") for i in exp.ignored)
    x = datasets.to_model_space(datasets.build(params["datasets"]["digits"])["x_train"])
    ckpt, _, _ = training.train(P.train_config(exp), x, progress=False)
    assert not {"encoder", "ema_encoder"} & set(ckpt)
    assert training.load_encoder(ckpt) is None
    model = training.load_model(ckpt)
    t_mid = exp.config["sample"]["t_mid"]
    assert t_mid, "the override samples in 2 steps, where the second noise matters"
    ours = sampling.generate(model, 16, (1, 8, 8), 16, 5, t_mid, False, encoder=training.load_encoder(ckpt))
    # the N(0, I) reference: the same generator draws z, then the second step's noise
    gen = torch.Generator().manual_seed(5)
    z = torch.randn((16, 1, 8, 8), generator=gen)
    x_hat = model(80.0 * z, torch.full((16,), 80.0))
    n = torch.randn(z.shape, generator=gen)
    t = torch.full((16,), t_mid[0])
    torch.testing.assert_close(ours, model(x_hat + t_mid[0] * n, t), rtol=0, atol=0)


def test_a_named_coupling_section_with_a_foreign_key_is_an_error():
    params = smoke()
    params["couplings"]["ic"]["encoder"] = "mlp_encoder"
    with pytest.raises(UserError, match="key 'couplings.ic.encoder': does not apply to coupling kind 'ic' "
                                        r"\(it applies to: vc, vcgc\)"):
        P.validate(params)
    params = smoke()
    params["objectives"]["ect"]["s0"] = 10
    with pytest.raises(UserError, match="key 'objectives.ect.s0': does not apply to objective kind 'ect'"):
        P.validate(params)


# ---------------------------------------------------------------------------------------------
# consistency_GC's EMA: ema-pytorch 0.2.3, EMA(unet, beta=0.9999, update_after_step=0, update_every=5)
# (consistency_GC train_consistency.py L147-152, update() after every optimizer.step(), L223-224).


def _gc_run():
    params = smoke()
    params["train"].update(ema=0.9999, ema_warmup={"inv_gamma": 1.0, "power": 2 / 3}, ema_update_every=5,
                           lr=1e-2)
    exp = P.experiment(P.validate(params), "two_gaussians-ict-gc-s0")
    return training.Run(P.train_config(exp), (2,), torch.device("cpu"))


def test_ema_warmup_is_ema_pytorch_0_2_3_bitwise():
    from ema_pytorch import EMA

    run = _gc_run()
    oracle = EMA(copy.deepcopy(run.model), beta=0.9999, update_after_step=0, update_every=5)
    x = torch.randn(4096, 2)
    for step in range(23):
        run.step(run.draw(x, step, 64))
        oracle.online_model.load_state_dict(run.model.state_dict())
        oracle.update()
        for (name, ours), theirs in zip(run.ema.named_parameters(), oracle.ema_model.parameters()):
            assert torch.equal(ours, theirs), f"step {step}: EMA {name} differs from ema-pytorch"
    assert not torch.equal(next(run.ema.parameters()), next(run.model.parameters()))  # it did average


@pytest.mark.parametrize("start", [10000, 7])
def test_ema_start_is_ema_pytorch_update_after_step_bitwise(start):
    """consistency_GC train_consistency.py: EMA(unet, beta=ema_decay, update_after_step=train_cfg.ema_start,
    update_every=5), update() once per step; utils.py Train_config's ema_start defaults to 10,000 and
    configs/imagenet_*.yaml set none. The real ema-pytorch 0.2.3 driven the same way: up to ema_start the
    EMA copies the online weights at every 5th step, then its warm-up starts over."""
    from ema_pytorch import EMA

    spec = {"ema": 0.9999, "ema_warmup": {"inv_gamma": 1.0, "power": 2 / 3}, "ema_update_every": 5,
            "ema_start": start}
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    ours = copy.deepcopy(model).requires_grad_(False)
    average = optim.EMA(ours, model)
    oracle = EMA(model, beta=0.9999, update_after_step=start, update_every=5)
    copies = averages = 0
    for step in range(start + 40):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape) * 0.01)  # an optimiser step
        oracle.update()
        decay = optim.ema_decay(spec, step)
        if decay is not None:
            average.update(decay)
            copies, averages = copies + (decay == 0.0), averages + (decay > 0)
        for (name, a), b in zip(ours.named_parameters(), oracle.ema_model.parameters()):
            assert torch.equal(a, b), f"step {step}: {name} differs from ema-pytorch"
    first = start - start % 5 + 5  # the first update after ema_start: the EMA initialises by a copy
    assert copies == first // 5 + 1 and averages == len(range(first + 5, start + 40, 5)) >= 5
    assert not torch.equal(ours.weight, model.weight)


def test_gc_presets_take_ema_start_from_their_official_configs():
    """configs/cifar10_*.yaml and celebA_*.yaml set ema_start: 0; imagenet_*.yaml set none (10,000)."""
    for name, run, start in (("cifar10_gc_net", "gc_cifar10", 0), ("celeba64_ict_gc", "gc_celeba64", 0),
                             ("lsun_church64_ict_gc", "gc_lsun_church64", 0),
                             ("imagenet32_ict_gc", "gc_imagenet32", 10000)):
        for e in P.experiments(preset(name)):
            assert e.config["train"]["ema_start"] == start, e.name
        assert O.official_settings(run, "gc")["train.ema_start"] == start, name


def test_ema_warmup_decays_match_the_official_sequence():
    """ema-pytorch get_current_decay: 1 - (1 + k)^(-2/3) at call k, capped by beta; only every 5th
    call updates, and calls 0 and 5 copy the weights."""
    spec = {"ema": 0.9999, "ema_warmup": {"inv_gamma": 1.0, "power": 2 / 3}, "ema_update_every": 5}
    decays = {k: optim.ema_decay(spec, k) for k in range(0, 31)}
    assert [k for k, d in decays.items() if d is not None] == [0, 5, 10, 15, 20, 25, 30]
    assert decays[0] == decays[5] == 0.0
    for k in (10, 15, 20, 25, 30):
        assert decays[k] == pytest.approx(1 - (1 + k) ** (-2 / 3), rel=1e-15)
    assert optim.ema_decay(spec, 99_995) == pytest.approx(0.9995358287, abs=1e-10)  # the cap is never reached


def test_default_suite_ema_keeps_no_trace_of_the_initialisation():
    """The weight the final EMA puts on the online weights of the first 1 % of training (near the
    random initialisation) is the product of the decays applied after them."""
    params = P.load(ROOT / "params" / "default.yaml")

    def early_share(spec):
        k0 = spec["steps"] // 100
        return math.prod(d for d in (optim.ema_decay(spec, k) for k in range(k0 + 1, spec["steps"])) if d is not None)

    for e in P.experiments(params):
        assert early_share(e.config["train"]) < 1e-9, e.name
    constant = dict(P.experiments(params)[0].config["train"], ema_warmup=None, steps=2000)
    assert early_share(constant) > 0.1  # what the constant 0.999 from step 0 kept after 2000 steps


# ---------------------------------------------------------------------------------------------
# sony/vct's iCT: pseudo-Huber per element (models/ict.py L28-30), summed over elements (L139-142).


def test_vct_presets_use_the_per_element_pseudo_huber_and_gc_the_per_sample_norm():
    torch.manual_seed(0)
    student, teacher = torch.randn(8, 3, 32, 32), torch.randn(8, 3, 32, 32)
    c = 0.00054 * math.sqrt(3 * 32 * 32)  # models/ict.py L28: sqrt(input[0].numel())
    per_element = (torch.sqrt((student - teacher) ** 2 + c**2) - c).reshape(8, -1).sum(1)  # L30, L141
    per_sample = torch.sqrt(((student - teacher) ** 2).reshape(8, -1).sum(1) + c**2) - c  # consistency_GC utils.py
    assert objectives.ICTLoss(Kernel(), 10).huber(student) == pytest.approx(c, rel=1e-12)
    for name, expected in [("cifar10_ict", per_element), ("fashion_mnist_ict", per_element),
                           ("cifar10_gc_net", per_sample)]:
        for e in P.experiments(preset(name)):
            loss = objectives.build(e.config["objective"], 10)
            got = objectives.pseudo_huber(student - teacher, c, loss.huber_per_element)
            torch.testing.assert_close(got, expected, rtol=1e-6, atol=0)


# ---------------------------------------------------------------------------------------------
# Random horizontal flips (sony/vct datamodules/cifar10_datamodule.py L16: RandomHorizontalFlip(),
# p = 0.5, flips the width axis).


def _flip_run(hflip: bool, seed: int = 0):
    params = smoke()
    params["train"]["hflip"] = hflip
    exp = P.experiment(P.validate(params), "digits-ect-ic-s0")
    return training.Run(P.train_config(exp), (1, 8, 8), torch.device("cpu"))


def test_hflip_flips_about_half_along_the_width_and_is_seeded():
    from torchvision.transforms.functional import hflip

    images = torch.arange(4096 * 64, dtype=torch.float32).reshape(4096, 1, 8, 8)  # every pixel distinct
    a, b, plain = _flip_run(True), _flip_run(True), _flip_run(False)
    (xa, _), (xb, _), (xp, _) = a.minibatch(images, 512), b.minibatch(images, 512), plain.minibatch(images, 512)
    assert torch.equal(xa, xb)  # a function of the seed
    rows = xp[:, 0, 0, 0].long() // 64  # the same draws of examples: flips take their coins after them
    flipped = torch.tensor([not torch.equal(xa[i], images[r]) for i, r in enumerate(rows)])
    for i, r in enumerate(rows):
        assert torch.equal(xa[i], hflip(images[r]) if flipped[i] else images[r])
    assert 0.4 < flipped.float().mean() < 0.6
    # without hflip the minibatch is the plain draw of examples (the first epoch's order) and no coins
    # are taken from the batch generator
    assert torch.equal(xp, images[EpochSampler(4096, plain.config["seed"]).indices(0, 512)])
    assert torch.equal(plain.rng.get_state(), BatchRNG(1).get_state())


def test_flips_apply_to_images_only():
    params = smoke()
    params["train"]["hflip"] = True
    exps = P.experiments(P.validate(params))
    two_d = [e for e in exps if e.dataset == "two_gaussians"]
    assert all(e.config["train"]["hflip"] is False and "train.hflip" in e.ignored[0] for e in two_d)
    assert all(e.config["train"]["hflip"] for e in exps if e.dataset == "digits")


# ---------------------------------------------------------------------------------------------
# 2-step sampling of OT runs (sony/vct models/cm_base.py L56-67, L96-112): the fresh noise is paired
# with the 1-step output by POT's exact ot.emd on torch.cdist(x, sigma_max * noise) ** 2
# (utils/optimal_transport.py L78-87).


def test_ot_pairing_matches_pot_emd_on_the_first_step_output():
    import ot

    torch.manual_seed(0)
    model = ConsistencyModel(MLP(2, 32, 2, 16), Kernel()).eval()
    seen = []
    model.register_forward_hook(lambda m, args, out: seen.append((args[0].clone(), out.clone())))
    n, t_mid = 64, 0.821
    sampling.generate(model, n, (2,), n, 3, [t_mid], False, ot_pairing=True)
    (_, x_hat), (x_in, _) = seen
    noise_used = (x_in - x_hat) / t_mid
    gen = torch.Generator().manual_seed(3)
    torch.randn((n, 2), generator=gen)
    fresh = torch.randn((n, 2), generator=gen)
    a = b = np.full(n, 1.0 / n)
    plan = ot.emd(a, b, (torch.cdist(x_hat.double(), 80.0 * fresh.double()) ** 2).numpy())
    j = plan.argmax(1)
    assert (plan > 0).sum() == n and sorted(j) == list(range(n))  # the exact plan is a permutation
    torch.testing.assert_close(noise_used, fresh[j], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(noise_used, fresh)


def test_ot_pairing_is_a_sampler_setting_of_every_coupling():
    # VCT re-pairs on its OT runs only, but the re-pairing is the sampler's: it is kept for IC too
    # (the default suite's ic_paired ablation measures it), never dropped as inapplicable.
    params = smoke()
    params["sample"]["ot_pairing"] = True
    exps = P.experiments(P.validate(params))
    assert all(e.config["sample"]["ot_pairing"] for e in exps)
    assert not any("sample.ot_pairing" in i for e in exps for i in e.ignored)


# ---------------------------------------------------------------------------------------------
# ECT's official form: locuslab/ect training/networks.py ECMPrecond L706-713 and training/loss.py
# ECMLoss L45-92; sigma_min 0.003 (networks.py L684; sony/vct conf/model/ecm.yaml L13).


def _edm_forms(net, x, s, sd=0.5, smin=0.003):
    c_in = 1 / torch.sqrt(sd**2 + s**2)
    F = net(c_in[:, None] * x, torch.log(s) / 4)
    train = sd**2 / (s**2 + sd**2)
    train_out = s * sd / torch.sqrt(s**2 + sd**2)
    eval_skip = sd**2 / ((s - smin) ** 2 + sd**2)
    eval_out = (s - smin) * sd / torch.sqrt(s**2 + sd**2)
    return train[:, None] * x + train_out[:, None] * F, eval_skip[:, None] * x + eval_out[:, None] * F


def test_official_ect_trains_with_edm_preconditioning_and_samples_with_the_boundary_form():
    torch.manual_seed(0)
    net = MLP(2, 32, 2, 16)
    model = ConsistencyModel(net, Kernel(sigma_min=0.003), boundary_in_training=False)
    x, s = torch.randn(16, 2), torch.exp(torch.randn(16) * 2 - 1.1)
    train_form, eval_form = _edm_forms(net, x, s)
    torch.testing.assert_close(model.train()(x, s), train_form, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.eval()(x, s), eval_form, rtol=1e-5, atol=1e-6)
    # a model from EDM weights starts equal to EDM's (EDMPrecond) in training; at sigma_min it is x
    torch.testing.assert_close(model.eval()(x, torch.full((16,), 0.003)), x)


def test_official_ect_loss_matches_ecmloss():
    """ECMLoss: t = exp(P_std n + P_mean) unclamped; r = clamp(t (1 - q^-(stage+1) (1 + k sigmoid(-b t))), 0);
    target D(x + r eps, r) where r > 0 (nan_to_num) and x where r = 0; sqrt(sum (D_t - D_r)^2) / (t - r)."""
    torch.manual_seed(0)
    net = MLP(2, 32, 2, 16)
    model = ConsistencyModel(net, Kernel(sigma_min=0.003), boundary_in_training=False).train()
    loss_fn = objectives.ECTLoss(Kernel(sigma_min=0.003), total_steps=800, form="official")
    x = torch.randn(512, 2)
    ours, _ = loss_fn(model, x, IndependentCoupling(), 150, BatchRNG(7))
    rng = BatchRNG(7)
    t = torch.exp(-1.1 + 2.0 * rng.randn(512))
    eps = rng.randn(512, 2)
    stage = 150 // 100
    r = (t * (1 - 2.0 ** -(stage + 1) * (1 + 8 * torch.sigmoid(-t)))).clamp(min=0)
    assert (t < 0.002).any() and (r == 0).any() and ((r > 0) & (r < 0.003)).any()  # every branch exercised
    with torch.no_grad():
        D_t = model(x + t[:, None] * eps, t)
        D_r = torch.nan_to_num(model(x + r[:, None] * eps, torch.where(r > 0, r, torch.ones_like(r))))
        target = torch.where((r > 0)[:, None], D_r, x)
        expected = torch.sqrt(((D_t - target) ** 2).sum(1)) / (t - r)
    torch.testing.assert_close(ours.detach(), expected, rtol=1e-5, atol=1e-6)


def test_ecm_presets_use_the_official_form():
    for name in ("cifar10_ecm", "ffhq64_ecm"):
        for e in P.experiments(preset(name)):
            assert e.config["objective"]["form"] == "official"
            assert e.config["objective"]["kernel"]["sigma_min"] == 0.003
            assert training.build_model(e.config, (3, 8, 8)).boundary_in_training is False


# ---------------------------------------------------------------------------------------------
# Non-finite gradients: locuslab/ect ct_training_loop.py L262-266 nan_to_num(nan=0, posinf=1e5,
# neginf=-1e5); sony/vct lightning_cm.py L124-126 nan_to_num(nan=0, posinf=0, neginf=0).


@pytest.mark.parametrize("mode, big", [("replace", 1e5), ("zero", 0.0)])
def test_nonfinite_gradients_are_replaced_as_the_official_loops_do(mode, big):
    p = torch.nn.Parameter(torch.zeros(5))
    p.grad = torch.tensor([1.0, float("nan"), float("inf"), -float("inf"), -2.0])
    optim.replace_nonfinite([p], mode)
    assert p.grad.tolist() == [1.0, 0.0, big, -big, -2.0]


@pytest.mark.parametrize("mode", ["replace", "zero"])
def test_training_goes_on_through_nan_batches_when_asked(mode):
    params = smoke()
    exp = P.experiment(P.validate(params), "two_gaussians-ict-ic-s0")
    config = P.train_config(exp)
    x = np.full((64, 2), np.nan, dtype=np.float32)
    with pytest.raises(UserError, match="training diverged at step 0"):
        training.train(config, x, progress=False)
    config["train"] = dict(config["train"], nonfinite_grad=mode)
    ckpt, log, _ = training.train(config, x, progress=False)
    assert len(log) > 1 and all(torch.isfinite(v).all() for v in ckpt["model"].values())


# ---------------------------------------------------------------------------------------------
# FID protocols: how each paper's images became uint8.


def test_vct_protocol_truncates_as_torchmetrics_normalize():
    """sony/vct fid_callback.py: rescaling_inv(samples.clamp(-1, 1)) = x/2 + 1/2 (float64 samples,
    cm_base.py L101), torchmetrics normalize=True: (imgs * 255).byte()."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.7, size=(64, 3, 8, 8))
    expected = np.floor((np.clip(x, -1, 1) * 0.5 + 0.5) * 255).astype(np.uint8)
    np.testing.assert_array_equal(fidelity.generated_uint8(torch.from_numpy(x), "vct").numpy(), expected)
    ref = rng.integers(0, 256, size=(32, 3, 8, 8), dtype=np.uint8)
    k = ref.astype(np.float32) / np.float32(255)  # ToTensor
    np.testing.assert_array_equal(fidelity.reference_uint8(ref, "vct"), np.floor(k * np.float32(255)).astype(np.uint8))
    assert (expected != datasets.to_uint8(x)).mean() > 0.3  # truncation is not METHODS 8's rounding


def test_gc_protocol_min_max_rescales_each_batch():
    """consistency_GC utils.py: one scalar min and max over the batch, 2 (x - min) / (max - min) - 1,
    then ((x + 1) / 2 * 255).byte() in float32; the reference through Normalize(0.5, 0.5)."""
    rng = np.random.default_rng(1)
    x = (rng.normal(0, 0.8, size=(16, 3, 8, 8))).astype(np.float32)
    lo, hi = x.min(), x.max()
    y = np.float32(2) * (x - lo) / (hi - lo) - np.float32(1)
    expected = np.floor((y + np.float32(1)) / np.float32(2) * np.float32(255)).astype(np.uint8)
    got = fidelity.generated_uint8(torch.from_numpy(x), "gc").numpy()
    np.testing.assert_array_equal(got, expected)
    assert got.min() == 0 and got.max() == 255  # each batch spans the full range, whatever the model made
    ref = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16)
    k = ref.astype(np.float32) / np.float32(255)
    z = (k - np.float32(0.5)) / np.float32(0.5)
    np.testing.assert_array_equal(fidelity.reference_uint8(ref, "gc"),
                                  np.floor((z + np.float32(1)) / np.float32(2) * np.float32(255)).astype(np.uint8))


def test_standard_protocol_is_methods_8_rounding():
    x = torch.linspace(-1.2, 1.2, 97)
    np.testing.assert_array_equal(fidelity.generated_uint8(x, "standard").numpy(),
                                  np.rint(np.clip(x.numpy(), -1, 1) * 127.5 + 127.5).astype(np.uint8))


def test_non_standard_protocols_need_streamed_samples():
    params = smoke()
    params["overrides"]["digits_unet"]["set"]["evaluate"] = {"fidelity": {"features": "classifier", "protocol": "vct"}}
    with pytest.raises(UserError, match="protocol 'vct' converts the generated floats itself; it needs stream: true"):
        P.validate(params)


# ---------------------------------------------------------------------------------------------
# Presets against their official runs (ctcoupling.config.official), and the Fashion-MNIST network
# (sony/vct README iCT-VC Fashion MNIST: network=ddpmpp network.model_channels=64; conf/network/
# ddpmpp.yaml: channel_mult [2,2,2], num_blocks 4; SongUNet's default attn_resolutions [16];
# encoder utils/model_utils.py L113-125: model_channels 32, num_blocks 1, 2C outputs).


PRESETS = ["cifar10_ict", "cifar10_ecm", "cifar10_gc_net", "fashion_mnist_ict", "ffhq64_ecm", "imagenet64_ecm_vc",
           "imagenet32_ict_gc", "celeba64_ict_gc", "lsun_church64_ict_gc"]


@pytest.mark.parametrize("name", PRESETS)
def test_every_difference_from_the_official_run_is_explained(name):
    params = preset(name)
    rows = describe.describe(params)
    assert rows and all(r["official"] for r in rows)
    for r in rows:
        assert all(d["why"] for d in r["deviations"]), (r["experiment"], r["deviations"])
    text = describe.text(rows, name)
    assert "official run" in text and "NOT EXPLAINED" not in text


def test_describe_names_an_unexplained_difference():
    params = preset("cifar10_gc_net")
    params["train"]["ema_update_every"] = 1
    rows = describe.describe(params)
    devs = rows[0]["deviations"]
    assert devs == [{"key": "train.ema_update_every", "ours": 1, "official": 5, "why": None}]
    assert "NOT EXPLAINED" in describe.text(rows, "x")


def test_gc_and_vct_presets_match_their_official_runs_exactly():
    for name in ("cifar10_gc_net", "fashion_mnist_ict", "imagenet32_ict_gc", "celeba64_ict_gc",
                 "lsun_church64_ict_gc"):
        assert all(not r["deviations"] for r in describe.describe(preset(name))), name
    # the ECM runs start from EDM's published networks (sony/vct README network.reload_url, locuslab/ect
    # run_ecm.sh --transfer): a preset without train.init differs in that alone
    for r in describe.describe(preset("ffhq64_ecm")):
        assert [d["key"] for d in r["deviations"]] == ["train.init"], r["experiment"]
    # ImageNet 64: class-balanced FID labels instead of sony/vct's uniform draws, and, until train.init
    # names EDM2-S's pickle, the start from scratch
    for r in describe.describe(preset("imagenet64_ecm_vc")):
        assert [d["key"] for d in r["deviations"]] == ["train.init", "sample.labels"], r["experiment"]
        assert r["deviations"][0]["why"].startswith("trains from scratch: not the official run; set train.init "
                                                    "to edm2-img64-s-1073741-0.075.pkl")
    params = preset("imagenet64_ecm_vc")
    params["train"]["init"] = "/data/weights/edm2-img64-s-1073741-0.075.pkl"  # wherever the user keeps it
    for r in describe.describe(params):
        assert [d["key"] for d in r["deviations"]] == ["sample.labels"], r["experiment"]
    params["train"]["init"] = "/data/weights/edm2-img64-m-2147483-0.060.pkl"  # another published network
    assert all(r["deviations"][0]["key"] == "train.init" for r in describe.describe(params))


def test_imagenet64_trains_on_every_image_as_sony_vct():
    """sony/vct trains on the whole ImageNet-64 zip and measures FID against it (n_test: 0)."""
    assert preset("imagenet64_ecm_vc")["datasets"]["imagenet64"]["n_test"] == 0


def test_every_loader_draws_per_epoch_and_the_presets_too():
    for name in PRESETS:
        for e in P.experiments(preset(name)):
            assert e.config["train"]["minibatch"] == "epoch", e.name
    assert all(O.official_settings(run, kind)["train.minibatch"] == "epoch"
               for run, entry in O.RUNS.items() for kind in entry["couplings"])


def test_fashion_mnist_network_is_the_readme_command():
    e = P.experiment(preset("fashion_mnist_ict"), "fashion_mnist-ict-vc-s0")
    net, enc = e.config["network"], e.config["encoder_network"]
    assert (net["model_channels"], net["channel_mult"], net["num_blocks"], net["dropout"]) == (64, [2, 2, 2], 4, 0.3)
    assert (enc["model_channels"], enc["channel_mult"], enc["num_blocks"], enc["dropout"]) == (32, [2, 2, 2], 1, 0.3)
    model = build(net, (1, 28, 28))
    attends = [name for name, m in model.named_modules() if getattr(m, "num_heads", 0)]
    assert attends == ["dec.7x7_in0"]  # attention at 16 meets no level of 28/14/7: only the mid block


def test_official_run_names_are_checked():
    params = preset("cifar10_gc_net")
    params["official"]["runs"]["gc"] = "nope"
    with pytest.raises(UserError, match="key 'official.runs.gc': unknown official run 'nope'"):
        P.validate(params)
    params["official"]["runs"]["gc"] = "vct_ict_cifar10"
    with pytest.raises(UserError, match="official run 'vct_ict_cifar10' has no gc coupling"):
        P.validate(params)


# ---------------------------------------------------------------------------------------------
# ImageNet 64, class-conditional ECM-VC (sony/vct README "ECM-VC ImageNet 64x64" command:
# model=ecm model.kernel=cot model.p_mean=-0.8 model.p_std=1.6 model.q=4 model.n_stages=4 model.c=0.06
# model.loss_weighting=karras model.use_lr_decay=True model.learning_rate=0.001 model.ema_type=power
# model.ema_rate=0.1 model.kl_loss_scale=90 model.encoder_size=big network=edm2 ...).


def test_li_preconditioning_without_the_boundary_is_the_conditional_ot_kernels():
    """sony/vct kernels/conditional_ot.py: get_scaling_factors (training, models/ecm.py precond when
    self.training) and get_scaling_factors_bc (evaluation); a = 1 - sigma/sigma_max."""
    k = Kernel(kind="li", sigma_min=0.003, sigma_max=80.0, sigma_data=0.5)
    s = torch.tensor([0.003, 0.1, 1.526, 40.0, 79.0], dtype=torch.float64)
    sd, smin, smax = 0.5, 0.003, 80.0
    a = 1 - s / smax
    c_in = 1 / torch.sqrt(sd**2 * a**2 + s**2)
    c_skip, c_out, c_in_ours, _ = k.precond(s, boundary=False)
    torch.testing.assert_close(c_in_ours, c_in)
    torch.testing.assert_close(c_skip, sd**2 * a / (s**2 + sd**2 * a**2))
    torch.testing.assert_close(c_out, s * sd * c_in)
    a_bc = 1 - (s - smin) / (smax - smin)
    c_skip, c_out, _, _ = k.precond(s, boundary=True)
    torch.testing.assert_close(c_skip, sd**2 * a_bc / ((s - smin) ** 2 + sd**2 * a_bc**2))
    torch.testing.assert_close(c_out, (s - smin) * sd * c_in)


def test_imagenet_ecm_loss_matches_sony_vct_models_ecm():
    """models/ecm.py loss: t = exp(p_std n + p_mean) clamped at sigma_max (ConditionalOTKernel); stage =
    step // (K / n_stages); r = clamp(t (1 - q^-(stage+1) (1 + k sigmoid(-b t))), 0); x_t = (1 - t/smax) x
    + t eps; target D(x_r, r) where r > 0, x where r = 0; sqrt(sum (D_t - D_r)^2 + c^2) - c times the Karras
    weight (t^2 + sd^2)/(t sd)^2."""
    torch.manual_seed(0)
    net = MLP(2, 32, 2, 16)
    kernel = Kernel(kind="li", sigma_min=0.003, sigma_max=80.0)
    model = ConsistencyModel(net, kernel, boundary_in_training=False).train()
    loss_fn = objectives.ECTLoss(kernel, total_steps=800, P_mean=-0.8, P_std=1.6, q=4, n_stages=4, huber_c=0.06,
                                 weighting="karras", form="official")
    x = torch.randn(512, 2)
    ours, _ = loss_fn(model, x, IndependentCoupling(), 50, BatchRNG(7))  # stage 0: r = 0 for small t
    rng = BatchRNG(7)
    t = torch.exp(-0.8 + 1.6 * rng.randn(512)).clamp(max=80.0)
    eps = rng.randn(512, 2)
    stage = 50 // (800 / 4)
    r = (t * (1 - 4.0 ** -(stage + 1) * (1 + 8 * torch.sigmoid(-t)))).clamp(min=0)
    assert (r == 0).any() and (r > 0).any()
    li = lambda v, s: (1 - s[:, None] / 80.0) * v + s[:, None] * eps  # noqa: E731
    with torch.no_grad():
        D_t = model(li(x, t), t)
        D_r = torch.nan_to_num(model(li(x, r), torch.where(r > 0, r, t)))
        target = torch.where((r > 0)[:, None], D_r, x)
        expected = (torch.sqrt(((D_t - target) ** 2).sum(1) + 0.06**2) - 0.06) * (t**2 + 0.25) / (t * 0.5) ** 2
    torch.testing.assert_close(ours.detach(), expected, rtol=1e-5, atol=1e-6)


def test_sony_vct_power_ema_and_learning_rate():
    """utils/utils.py std_to_exp(0.1) (np.roots of [1, 7, 16 - s^-2, 12 - s^-2], the largest real root) and
    power_function_beta(std, t) = (1 - 1/(t + 1))^(exp + 1); lightning_cm.py ema_update: p_ema <-
    p_net.lerp(p_ema, 1 - beta) at t = global_step, the steps done before this one (Lightning's automatic
    loop, loops/optimization/automatic.py, counts a step completed after the optimizer_step hook returns,
    and on_before_optimizer_step sees the same count); the learning rate
    lr / sqrt(max(step / lr_decay, 1)) with lr 1e-3, lr_decay 2000, Adam betas (0.9, 0.99)."""
    gamma = float(np.roots([1, 7, 16 - 100.0, 12 - 100.0]).real.max())
    assert O.VCT_IMAGENET_EMA_GAMMA == pytest.approx(gamma, rel=1e-12) and 6.9 < gamma < 7.0
    e = P.experiment(preset("imagenet64_ecm_vc"), "imagenet64-ecm-vc-s0")
    spec = e.config["train"]
    assert spec["ema_gamma"] == pytest.approx(gamma, rel=1e-12)
    torch.manual_seed(0)
    net, ema = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    theirs = copy.deepcopy(ema)
    average = optim.EMA(ema, net)
    for step in range(6):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        average.update(optim.ema_decay(spec, step))
        beta = (1 - 1 / (step + 1)) ** (gamma + 1)
        with torch.no_grad():
            for pe, pn in zip(theirs.parameters(), net.parameters()):
                pe.copy_(pn.detach().lerp(pe, 1 - beta))
        for a, b in zip(ema.parameters(), theirs.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)  # 1 - (1 - beta) rounds
    assert optim.ema_decay(spec, 199_999) < 1e-4  # the "average" is the online weights by the end
    for step in (0, 1999, 2000, 8000, 199_999):
        assert optim.learning_rate(spec, step) == pytest.approx(1e-3 / math.sqrt(max(step / 2000, 1)))
    opt = optim.make_optimizer([torch.nn.Parameter(torch.zeros(2))], spec)
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["betas"] == (0.9, 0.99)


def test_class_conditional_vc_conditions_the_network_and_the_encoder_on_the_label():
    """models/cm_base.py: precond and posterior_precond both take class_labels (one-hot, label_dim 1000
    for ImageNet); the same x with another label gives another noise and another output."""
    e = P.experiment(preset("imagenet64_ecm_vc"), "imagenet64-ecm-vc-s0")
    tiny = {"model_channels": 8, "channel_mult": [1, 2], "num_blocks": 1, "attn_resolutions": [4], "label_dim": 5}
    config = P.deep_merge(e.config, {"network": tiny, "encoder_network": tiny,
                                     "train": {"steps": 2, "batch": 4, "gpus": 1}})
    torch.manual_seed(0)
    encoder = training.build_encoder(config, (3, 8, 8)).eval()
    model = training.build_model(config, (3, 8, 8)).eval()
    with torch.no_grad():  # EDM2 starts with every gain 0: output exactly 0, the embedding without effect
        for name, p in [*encoder.named_parameters(), *model.named_parameters()]:
            if name.endswith("gain"):
                p.fill_(1.0)
    x = torch.randn(2, 3, 8, 8)
    y0, y1 = torch.tensor([0, 0]), torch.tensor([3, 3])
    assert not torch.allclose(encoder(x, y0)[0], encoder(x, y1)[0])
    s = torch.full((2,), 1.0)
    assert not torch.allclose(model(x, s, y0), model(x, s, y1))
    with pytest.raises(ValueError, match="unconditional network"):
        ConsistencyModel(MLP(2, 8, 1, 4), Kernel())(torch.randn(2, 2), s, y0)
