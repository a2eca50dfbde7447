import numpy as np
import torch

from ctcoupling.model import sampling
from ctcoupling.model.kernels import ConsistencyModel, Kernel
from ctcoupling.model.networks import MLP


def model(kind="ve"):
    torch.manual_seed(0)
    return ConsistencyModel(MLP(2, 32, 2, 16), Kernel(kind=kind)).eval()


def test_one_step_is_f_at_sigma_max():
    m, z = model(), torch.randn(16, 2)
    torch.testing.assert_close(sampling.multistep(m, z), m(80.0 * z, torch.full((16,), 80.0)))


def test_two_steps_renoise_at_t_mid_with_fresh_noise():
    for kind in ("ve", "li"):
        m, z = model(kind), torch.randn(16, 2)
        gen = torch.Generator().manual_seed(7)
        out = sampling.multistep(m, z, [0.821], gen)
        n = torch.randn((16, 2), generator=torch.Generator().manual_seed(7))
        t = torch.full((16,), 0.821)
        x1 = m(80.0 * z, torch.full((16,), 80.0))
        torch.testing.assert_close(out, m(m.kernel.perturb(x1, t, n), t))


def test_generate_is_seeded_and_counts():
    m = model()
    a = sampling.generate(m, 10, (2,), 4, seed=3, t_mid=[1.0], progress=False)
    b = sampling.generate(m, 10, (2,), 4, seed=3, t_mid=[1.0], progress=False)
    assert a.shape == (10, 2) and torch.equal(a, b)
    assert not torch.equal(a, sampling.generate(m, 10, (2,), 4, seed=4, t_mid=[1.0], progress=False))


def test_image_grid_places_images_row_major():
    imgs = np.arange(3 * 1 * 2 * 2, dtype=np.uint8).reshape(3, 1, 2, 2) + 1
    g = sampling.image_grid(imgs, cols=2)
    assert g.shape == (2 * 3 + 1, 2 * 3 + 1, 1)
    assert np.array_equal(g[1:3, 4:6, 0], imgs[1, 0]) and np.array_equal(g[4:6, 1:3, 0], imgs[2, 0])
    assert g[4:6, 4:6].sum() == 0  # empty cell stays black


def test_class_labels_balanced_across_batches_or_uniform_draws():
    """A class-conditional model's sample classes: `balanced` gives sample i (its index in the whole set,
    streamed batches included) class i mod K, so 50,000 samples of 1000 classes hold 50 of each;
    `uniform` draws from its own seeded generator (sony/vct's FID callback uses torch.randint)."""
    whole = sampling.class_labels("balanced", 50_000, 1000, seed=0)
    assert np.bincount(whole.numpy(), minlength=1000).tolist() == [50] * 1000
    batches = torch.cat([sampling.class_labels("balanced", 500, 1000, 0, offset=b * 500) for b in range(100)])
    assert torch.equal(batches, whole)
    u = sampling.class_labels("uniform", 1000, 10, seed=3)
    assert torch.equal(u, sampling.class_labels("uniform", 1000, 10, seed=3)) and set(u.tolist()) == set(range(10))
    assert sampling.class_labels("balanced", 5, 0, 0) is None


def test_conditional_generate_passes_each_samples_label():
    from ctcoupling.model.networks import build

    torch.manual_seed(0)
    net = build(dict(kind="edm2", model_channels=8, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4],
                     label_dim=3), (3, 8, 8))
    with torch.no_grad():  # EDM2 starts with every gain 0 (output 0, the label without effect)
        for name, p in net.named_parameters():
            if name.endswith("gain"):
                p.fill_(1.0)
    m = ConsistencyModel(net, Kernel()).eval()
    x = sampling.generate(m, 6, (3, 8, 8), 4, seed=1, progress=False)  # 1 step, batches of 4 and 2
    z = torch.randn((4, 3, 8, 8), generator=torch.Generator().manual_seed(1))
    sigma = torch.full((4,), 80.0)
    torch.testing.assert_close(x[:4], m(80.0 * z, sigma, torch.tensor([0, 1, 2, 0])))  # balanced: i mod 3
    assert not torch.allclose(x[:4], m(80.0 * z, sigma, torch.tensor([1, 1, 1, 1])))
