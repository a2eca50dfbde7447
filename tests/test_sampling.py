import numpy as np
import torch

from ctcoupling import sampling
from ctcoupling.kernels import ConsistencyModel, Kernel
from ctcoupling.networks import MLP


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
