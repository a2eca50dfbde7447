"""SongUNet (EDM's DDPM++ / NCSN++ U-Net): EDM's parameter counts, shapes, conditioning and build()."""
import pytest
import torch

from ctcoupling.model.networks import MLP, SongUNet, build, count_params, unet_kwargs

DDPMPP = dict(embedding_type="positional", channel_mult_noise=1, encoder_type="standard", resample_filter=[1, 1])
TINY = dict(img_resolution=8, in_channels=1, out_channels=1, model_channels=16, channel_mult=[1, 2],
            num_blocks=1, attn_resolutions=[4], dropout=0.0)


def trained_like(net: SongUNet) -> SongUNet:
    """Perturb all weights: at init the residual branches and output conv are scaled by 1e-5."""
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


# Exact counts of EDM's training/networks.py SongUNet for the same settings (augment_dim=0), measured by
# instantiating EDM's class; EDM reports 55.73M for CIFAR-10 DDPM++.
@pytest.mark.parametrize("kwargs, expected", [
    (dict(img_resolution=32, channel_mult=[2, 2, 2], num_blocks=4, attn_resolutions=[16]), 55_732_739),  # CIFAR-10
    (dict(img_resolution=32, channel_mult=[1, 2, 2], num_blocks=3, attn_resolutions=[]), 34_711_811),  # GC CIFAR-10
    (dict(img_resolution=64, channel_mult=[1, 2, 2, 2], num_blocks=4, attn_resolutions=[16]), 61_804_419),  # FFHQ-64
], ids=["cifar10_ddpmpp", "gc_cifar10", "ffhq64_ddpmpp"])
def test_param_counts_match_edm(kwargs, expected):
    net = SongUNet(in_channels=3, out_channels=3, model_channels=128, dropout=0.13, **DDPMPP, **kwargs)
    assert count_params(net) == expected


def test_ncsnpp_variant_matches_edm_count():
    net = SongUNet(img_resolution=32, in_channels=3, out_channels=3, model_channels=128, channel_mult=[2, 2, 2],
                   num_blocks=4, attn_resolutions=[16], embedding_type="fourier", channel_mult_noise=2,
                   encoder_type="residual", resample_filter=[1, 3, 3, 1])
    assert count_params(net) == 56_395_523


def test_tiny_forward_backward_and_shape():
    torch.manual_seed(0)
    net = SongUNet(**TINY)
    assert count_params(net) == 188_769  # EDM's count for the same settings
    x = torch.randn(4, 1, 8, 8, requires_grad=True)
    out = net(x, torch.randn(4))
    assert out.shape == x.shape
    out.square().sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize("variant", [
    dict(),
    dict(embedding_type="fourier", channel_mult_noise=2, encoder_type="residual", resample_filter=[1, 3, 3, 1]),
    dict(encoder_type="skip", decoder_type="skip"),
])
def test_variants_keep_shape(variant):
    net = SongUNet(img_resolution=16, in_channels=2, out_channels=2, model_channels=16, channel_mult=[1, 2, 2],
                   num_blocks=1, attn_resolutions=[8], dropout=0.0, **variant)
    x = torch.randn(2, 2, 16, 16)
    assert net(x, torch.randn(2)).shape == x.shape


def test_label_conditioning_changes_output():
    torch.manual_seed(0)
    net = trained_like(SongUNet(**TINY, label_dim=10)).eval()
    x, c = torch.randn(2, 1, 8, 8), torch.zeros(2)
    labels = torch.eye(10)[[3, 7]]
    out = net(x, c, labels)
    other = net(x, c, labels.roll(1, dims=1))
    assert (out - other).abs().max() > 1e-3 * out.abs().max()
    torch.testing.assert_close(net(x, c), net(x, c, torch.zeros(2, 10)))  # no labels = the all-zero label


def test_noise_level_changes_output():
    torch.manual_seed(0)
    net = trained_like(SongUNet(**TINY)).eval()
    x = torch.randn(2, 1, 8, 8)
    out = net(x, torch.full((2,), -1.0))
    assert (out - net(x, torch.full((2,), 1.0))).abs().max() > 1e-3 * out.abs().max()


def test_eval_mode_is_deterministic():
    torch.manual_seed(0)
    x, c = torch.randn(2, 1, 8, 8), torch.randn(2)
    for dropout in (0.0, 0.5):
        net = SongUNet(**{**TINY, "dropout": dropout}).eval()
        torch.testing.assert_close(net(x, c), net(x, c), rtol=0, atol=0)
    net.train()  # dropout=0.5 is active in training mode
    assert not torch.equal(net(x, c), net(x, c))


def test_per_level_num_blocks():
    common = dict(img_resolution=16, in_channels=3, out_channels=3, model_channels=16, channel_mult=[1, 2, 2],
                  attn_resolutions=[8], dropout=0.0)
    assert count_params(SongUNet(num_blocks=[2, 2, 2], **common)) == count_params(SongUNet(num_blocks=2, **common))
    net = SongUNet(num_blocks=[1, 2, 3], **common)
    assert [k for k in net.enc if "_block" in k] == [
        "16x16_block0", "8x8_block0", "8x8_block1", "4x4_block0", "4x4_block1", "4x4_block2"]
    assert sum("_block" in k for k in net.dec) == 2 + 3 + 4
    x = torch.randn(2, 3, 16, 16)
    assert net(x, torch.randn(2)).shape == x.shape
    with pytest.raises(AssertionError):
        SongUNet(num_blocks=[1, 2], **common)


def test_gc_celeba_per_level_preset_builds():
    net = SongUNet(img_resolution=64, in_channels=3, out_channels=3, model_channels=16, channel_mult=[1, 2, 2, 2],
                   num_blocks=[3, 3, 4, 5], attn_resolutions=[16], dropout=0.0)
    assert sum("_block" in k for k in net.enc) == 15 and sum("_block" in k for k in net.dec) == 19


def test_build_songunet_from_spec():
    spec = dict(kind="songunet", model_channels=16, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4],
                dropout=0.0)
    net = build(spec, (1, 8, 8))
    assert isinstance(net, SongUNet) and count_params(net) == 188_769
    x = torch.randn(3, 1, 8, 8)
    assert net(x, torch.randn(3)).shape == x.shape
    enc = build({**spec, "out_channels": 2}, (1, 8, 8))  # e.g. an encoder emitting mean and log-scale
    assert enc(x, torch.randn(3)).shape == (3, 2, 8, 8)
    assert unet_kwargs(spec, (3, 32, 32))["img_resolution"] == 32
    with pytest.raises(ValueError, match="unknown songunet keys"):
        build({**spec, "chanel_mult": [1]}, (1, 8, 8))
    with pytest.raises(ValueError, match="square images"):
        build(spec, (16,))


def test_mlp_still_builds():
    net = build(dict(kind="mlp", hidden=32, depth=2, emb_dim=16, dropout=0.0), (2,))
    assert isinstance(net, MLP) and net(torch.randn(5, 2), torch.randn(5)).shape == (5, 2)


# consistency_GC's own SongUNet (edm_networks.py; its attn_resolutions default is [], not EDM's [16]) with
# the configs/celebA_base.yaml and configs/imagenet_base.yaml generator settings, counted by instantiating
# their ConsistencyPrecond(img_channels=3, augment_dim=0, **generator) from the repository at its stored
# commit (2026-12-03); per-level dropout lists act on every block of the level, encoder and decoder.
@pytest.mark.parametrize("kwargs, expected", [
    (dict(img_resolution=64, channel_mult=[1, 2, 2, 2], num_blocks=[3, 3, 4, 5], attn_resolutions=[],
          dropout=[0.0, 0.0, 0.2, 0.2]), 59_582_723),  # CelebA 64 (and LSUN Church 64 in our preset)
    (dict(img_resolution=32, channel_mult=[1, 1, 2], num_blocks=[3, 5, 7], attn_resolutions=[16],
          dropout=[0.0, 0.2, 0.2]), 39_479_683),  # ImageNet 32
], ids=["gc_celeba64", "gc_imagenet32"])
def test_param_counts_match_consistency_gc(kwargs, expected):
    net = SongUNet(in_channels=3, out_channels=3, model_channels=128, **DDPMPP, **kwargs)
    assert count_params(net) == expected
    levels = {int(k.split("x")[0]): m.dropout for k, m in [*net.enc.items(), *net.dec.items()] if hasattr(m, "dropout")}
    assert [levels[kwargs["img_resolution"] >> i] for i in range(len(kwargs["channel_mult"]))] == kwargs["dropout"]


def test_per_level_dropout_must_cover_every_level():
    with pytest.raises(AssertionError, match="one entry per level"):
        SongUNet(img_resolution=8, in_channels=1, out_channels=1, model_channels=16, channel_mult=[1, 2],
                 dropout=[0.1, 0.2, 0.3])


# ---------------------------------------------------------------------------------------------
# EDM2's magnitude-preserving U-Net (ctcoupling.model.edm2)

EDM2_S = dict(img_resolution=64, in_channels=3, out_channels=3, label_dim=1000, model_channels=192,
              channel_mult=[1, 2, 3, 4], num_blocks=3, dropout=0.4, dropout_res=16)


def test_edm2_s_param_count_matches_sony_vct():
    """sony/vct conf/network/edm2.yaml + conf/dataset/imagenet.yaml: EDM2 "S" for ImageNet 64. Expected
    counts from instantiating sony/vct networks/networks_edm2.py `EDM2(img_resolution=64, in_channels=3,
    out_channels=3, label_dim=1000, model_channels=192, channel_mult=[1,2,3,4], num_blocks=3, dropout=0.4,
    dropout_res=16)` (280,209,253; EDM2 reports "S" as 280M) and its encoder_size=big copy
    (utils/model_utils.py: 32 channels, 2 blocks, 2C outputs: 6,162,269), on 2026-12-03."""
    from ctcoupling.model.edm2 import EDM2UNet

    with torch.device("meta"):
        assert count_params(EDM2UNet(**EDM2_S)) == 280_209_253
        assert count_params(EDM2UNet(**{**EDM2_S, "model_channels": 32, "num_blocks": 2, "out_channels": 6})) == 6_162_269


def test_edm2_dropout_only_at_low_resolution():
    from ctcoupling.model.edm2 import Block, EDM2UNet

    with torch.device("meta"):
        net = EDM2UNet(**EDM2_S)
    for name, m in [*net.enc.items(), *net.dec.items()]:
        if isinstance(m, Block):
            assert m.dropout == (0.4 if int(name.split("x")[0]) <= 16 else 0.0), name
    heads = {name: m.num_heads for name, m in [*net.enc.items(), *net.dec.items()] if isinstance(m, Block)}
    assert heads["16x16_block0"] == 576 // 64 and heads["8x8_in0"] == 768 // 64 and heads["32x32_block0"] == 0


# Golden values from the official code: with torch.manual_seed(0), sony/vct networks/networks_edm2.py
# EDM2(**TINY_EDM2) was built, every *gain parameter set to 0.5, and with torch.manual_seed(1) the inputs
# x = randn(3, 3, 16, 16), c = randn(3) drawn; labels one-hot [0, 2, 3]. Train mode after
# torch.manual_seed(2) (dropout on at 8x8), then eval mode. Our network, built and run the same way, gave
# bitwise-equal outputs and parameters (state-dict keys in the same order) on 2026-12-03.
TINY_EDM2 = dict(img_resolution=16, in_channels=3, out_channels=6, label_dim=4, channel_mult=[1, 2], dropout=0.4,
                 dropout_res=8, model_channels=64, num_blocks=1, attn_resolutions=[8])
GOLDEN_TRAIN = [-0.2732451558113098, 0.5650835037231445, 0.5905008316040039, -0.08405010402202606,
                -0.4801263213157654, -0.2530013918876648, 0.5353271961212158, 0.24259503185749054]
GOLDEN_EVAL = [-0.21567341685295105, 0.48273977637290955, 0.5405060648918152, -0.31787073612213135,
               -0.7839850783348083, -0.4156314730644226, 0.34966981410980225, 0.2413710057735443]


def test_edm2_matches_official_outputs():
    from ctcoupling.model.edm2 import EDM2UNet

    torch.manual_seed(0)
    net = EDM2UNet(**TINY_EDM2)
    assert count_params(net) == 2_889_867
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("gain"):
                p.fill_(0.5)
    torch.manual_seed(1)
    x, c = torch.randn(3, 3, 16, 16), torch.randn(3)
    y = torch.nn.functional.one_hot(torch.tensor([0, 2, 3]), 4).float()
    net.train()
    torch.manual_seed(2)
    train_out = net(x, c, y)
    net.eval()
    eval_out = net(x, c, y)
    torch.testing.assert_close(train_out.flatten()[::97][:8], torch.tensor(GOLDEN_TRAIN), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(eval_out.flatten()[::97][:8], torch.tensor(GOLDEN_EVAL), rtol=1e-5, atol=1e-6)


def test_edm2_starts_at_zero_and_forced_weight_norm():
    from ctcoupling.model.edm2 import EDM2UNet, MPConv, frozen_weights

    torch.manual_seed(0)
    net = EDM2UNet(**TINY_EDM2)
    x, c = torch.randn(2, 3, 16, 16), torch.randn(2)
    assert torch.equal(net(x, c), torch.zeros(2, 6, 16, 16))  # out_gain 0: VC's encoder starts at mu = 0
    conv = net.enc["16x16_conv"]
    before = conv.weight.detach().clone()
    with frozen_weights(net):
        net.train()(x, c)
    assert torch.equal(conv.weight, before) and conv.force_wn  # untouched, and the flag restored
    with torch.no_grad():
        conv.weight.mul_(3)
    net(x, c)  # training mode: the weights are written back at unit magnitude per output channel
    norms = torch.linalg.vector_norm(conv.weight.detach().flatten(1), dim=1)
    torch.testing.assert_close(norms, torch.full_like(norms, conv.weight[0].numel() ** 0.5), rtol=1e-3, atol=0)
    assert isinstance(conv, MPConv)


def test_mp_operations_preserve_magnitude():
    from ctcoupling.model.edm2 import mp_cat, mp_silu, mp_sum

    torch.manual_seed(0)
    a, b = torch.randn(4, 64, 32, 32), torch.randn(4, 192, 32, 32)
    for out in (mp_sum(a, a.flip(0), 0.3), mp_cat(a, b, t=0.5), mp_silu(torch.randn(10**6))):
        assert abs(out.square().mean().item() - 1) < 0.02


def test_build_edm2_from_spec_conditional():
    spec = dict(kind="edm2", model_channels=16, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4], label_dim=5)
    net = build(spec, (3, 8, 8))
    enc = build(spec, (3, 8, 8), out_mult=2)
    with torch.no_grad():
        for m in (net, enc):
            m.out_gain.fill_(1.0)
    x, c = torch.randn(2, 3, 8, 8), torch.randn(2)
    y0, y1 = (torch.nn.functional.one_hot(torch.tensor([i, i]), 5).float() for i in (0, 1))
    assert enc(x, c, y0).shape == (2, 6, 8, 8)
    assert not torch.allclose(net(x, c, y0), net(x, c, y1))
    with pytest.raises(ValueError, match="unknown edm2 keys"):
        build({**spec, "embedding_type": "fourier"}, (3, 8, 8))
