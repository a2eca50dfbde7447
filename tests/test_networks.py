"""SongUNet (EDM's DDPM++ / NCSN++ U-Net): EDM's parameter counts, shapes, conditioning and build()."""
import pytest
import torch

from ctcoupling.networks import MLP, SongUNet, build, count_params, songunet_kwargs

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
    assert songunet_kwargs(spec, (3, 32, 32))["img_resolution"] == 32
    with pytest.raises(ValueError, match="unknown songunet keys"):
        build({**spec, "chanel_mult": [1]}, (1, 8, 8))
    with pytest.raises(ValueError, match="square images"):
        build(spec, (16,))


def test_mlp_still_builds():
    net = build(dict(kind="mlp", hidden=32, depth=2, emb_dim=16, dropout=0.0), (2,))
    assert isinstance(net, MLP) and net(torch.randn(5, 2), torch.randn(5)).shape == (5, 2)
