"""A small CNN classifier for small uint8 images, and its torch-fidelity feature extractor.

For data sets where Inception-v3 is meaningless (8x8 digits), FID, KID, IS and precision/recall
are computed on the features of this classifier instead, through exactly torch-fidelity's code
path: `ClassifierFeatures` is registered as the extractor "ctcoupling-classifier". Like
torch-fidelity's Inception it takes uint8 NCHW batches and provides the penultimate features (FID,
KID, PRC) and the bias-free logits (IS).

Training is deterministic on the CPU: parameters are initialised from `seed`, minibatches follow a
seeded `torch.Generator`, and only deterministic CPU kernels run, so two calls with the same
arguments return bitwise-equal state. The state is a plain dict of tensors and hyperparameters,
loadable with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch_fidelity
from torch import nn
from torch.nn import functional as F
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from ctcoupling.core.errors import UserError

EXTRACTOR = "ctcoupling-classifier"
STATE_FORMAT = "ctcoupling-classifier-v1"
FEATURES = "penultimate"  # name of the feature layer in torch-fidelity's feature dicts and cache files


class SmallCNN(nn.Module):
    """uint8 images (B, C, H, W) -> (features (B, feature_dim), logits (B, num_classes)).

    Two 3x3 conv + ReLU stages, an adaptive average pool to pool x pool (any H, W >= pool: 8x8
    digits, 28x28 Fashion-MNIST, 32x32 CIFAR-10), then a ReLU feature layer and a linear head.
    Pixels are mapped to [-1, 1] inside, as `data.to_model_space` does, so callers pass uint8.
    """

    def __init__(self, in_channels: int, num_classes: int, widths=(32, 64), feature_dim: int = 64, pool: int = 4):
        super().__init__()
        self.in_channels, self.pool = in_channels, pool
        chans = [in_channels, *widths]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(chans[:-1], chans[1:]))
        self.feature = nn.Linear(chans[-1] * pool * pool, feature_dim)
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected images (B, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        h = x.to(torch.float32) / 127.5 - 1.0
        for conv in self.convs:
            h = F.relu(conv(h))
        h = F.adaptive_avg_pool2d(h, self.pool).flatten(1)
        return F.relu(self.feature(h))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return f, self.head(f)


def _hyper(state: dict) -> dict:
    return dict(in_channels=state["in_channels"], num_classes=state["num_classes"], widths=tuple(state["widths"]),
                feature_dim=state["feature_dim"], pool=state["pool"])


def load_classifier(state: dict) -> SmallCNN:
    """The network of a `train_classifier` state, in eval mode without gradients."""
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise UserError(f"not a ctcoupling classifier state (expected format {STATE_FORMAT!r})")
    net = SmallCNN(**_hyper(state))
    net.load_state_dict(state["model"])
    return net.eval().requires_grad_(False)


def load_classifier_file(path) -> SmallCNN:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: classifier weights not found; run the classifier stage first") from None
    except Exception as e:
        raise UserError(f"{path}: unreadable classifier weights ({type(e).__name__}: {e})") from None
    try:
        return load_classifier(state)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None


@contextlib.contextmanager
def _threads(n: int | None):
    """Run with n intra-op threads (None: leave as is); restored afterwards."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@torch.no_grad()
def normalise_features(net: SmallCNN, x: torch.Tensor, batch: int = 1024) -> float:
    """Rescale the feature layer to unit root-mean-square features on x, and the head inversely.

    ReLU is positively homogeneous, so the logits are unchanged; the features get the O(1) scale
    that KID's polynomial kernel (x.y / d + 1)^3 assumes. Returns the factor applied.
    """
    rms = torch.cat([net.features(xb) for xb in x.split(batch)]).square().mean().sqrt()
    scale = 1.0 / float(rms)
    net.feature.weight.mul_(scale)
    net.feature.bias.mul_(scale)
    net.head.weight.div_(scale)
    return scale


@torch.no_grad()
def accuracy(net: SmallCNN, x: torch.Tensor, y: torch.Tensor, batch: int = 1024) -> float:
    correct = sum(int((net(xb)[1].argmax(1) == yb).sum()) for xb, yb in zip(x.split(batch), y.split(batch)))
    return correct / len(x)


def train_classifier(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, seed: int,
                     epochs: int = 15, batch: int = 64, lr: float = 2e-3, widths=(32, 64), feature_dim: int = 64,
                     pool: int = 4, threads: int | None = 1) -> tuple[dict, float]:
    """Train on (x_train, y_train) with Adam and cross-entropy; return (state, accuracy on the test split).

    x_* are uint8 (N, C, H, W), y_* integer labels 0..K-1. Deterministic: the same arguments give a
    bitwise-equal state (on the same machine and thread count; `threads` fixes the latter, 1 by default).
    The global torch RNG is left untouched. The features are finally scaled to unit RMS on x_train
    (`normalise_features`), which leaves the predictions as they were.
    """
    xtr, xte = torch.from_numpy(np.ascontiguousarray(x_train)), torch.from_numpy(np.ascontiguousarray(x_test))
    ytr, yte = torch.as_tensor(y_train, dtype=torch.int64), torch.as_tensor(y_test, dtype=torch.int64)
    if xtr.dtype != torch.uint8 or xtr.dim() != 4 or xte.dtype != torch.uint8 or xte.shape[1:] != xtr.shape[1:]:
        raise ValueError("x_train and x_test must be uint8 images (N, C, H, W) of one shape")
    num_classes = int(max(ytr.max(), yte.max())) + 1
    with _threads(threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # parameter initialisation
        net = SmallCNN(xtr.shape[1], num_classes, widths, feature_dim, pool)
        gen = torch.Generator().manual_seed(seed)  # minibatch order
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        for _ in range(epochs):
            for idx in torch.randperm(len(xtr), generator=gen).split(batch):
                loss = F.cross_entropy(net(xtr[idx])[1], ytr[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        net.eval()
        scale = normalise_features(net, xtr)
        acc = accuracy(net, xte, yte)
    state = dict(format=STATE_FORMAT, in_channels=int(xtr.shape[1]), num_classes=num_classes, widths=list(widths),
                 feature_dim=feature_dim, pool=pool, image_shape=list(xtr.shape[1:]), seed=seed, epochs=epochs,
                 batch=batch, lr=lr, feature_scale=scale, model={k: v.detach().clone() for k, v in net.state_dict().items()})
    return state, acc


# ---------------------------------------------------------------------------------------------
# torch-fidelity adapter: the classifier as a registered feature extractor.


class ClassifierFeatures(FeatureExtractorBase):
    """torch-fidelity feature extractor over a `train_classifier` state file.

    Provides "penultimate" (the feature_dim ReLU features; FID, KID, PRC), "logits_unbiased"
    (features @ W^T without the bias, as torch-fidelity's Inception gives IS) and "logits".
    `forward` returns the requested features in the order of `features_list`, which is the order
    `convert_features_tuple_to_dict` reads them in.
    """

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise UserError(f"feature extractor {name!r} needs the classifier weights file "
                            "(feature_extractor_weights_path); it never downloads")
        self.net = load_classifier_file(feature_extractor_weights_path)

    def forward(self, x):
        if not (torch.is_tensor(x) and x.dtype == torch.uint8):
            raise ValueError("expecting images as a torch.uint8 tensor")
        f, logits = self.net(x)
        out = {FEATURES: f, "logits_unbiased": f @ self.net.head.weight.T, "logits": logits}
        return tuple(out[name] for name in self.features_list)

    @staticmethod
    def get_provided_features_list():
        return FEATURES, "logits_unbiased", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits_unbiased", "fid": FEATURES, "kid": FEATURES, "prc": FEATURES}[metric]

    @staticmethod
    def can_be_compiled():
        return False  # input shape and channels depend on the weights file

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 1, 8, 8, dtype=torch.uint8)


def register() -> str:
    """Register `ClassifierFeatures` with torch-fidelity (idempotent); returns its name."""
    if EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor(EXTRACTOR, ClassifierFeatures)
    return EXTRACTOR


register()
