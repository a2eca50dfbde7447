"""FID, KID, IS and precision/recall through torch-fidelity (METHODS 8), offline and content-keyed.

`compute` is a thin front end over `torch_fidelity.calculate_metrics` that
- never downloads: the Inception weights come from a local, sha256-checked file
  (`inception_weights`), the classifier extractor from its state file;
- takes the generated images as a uint8 array or as a `SampleStream`, which produces them one
  batch at a time, so 50,000 samples reach the metric without being held or written at once;
- caches only the reference features and FID statistics, under a name holding the sha256 of the
  reference images and of the extractor weights (`reference_cache_name`): torch-fidelity keys its
  cache by name alone;
- uses one extractor for every metric (torch-fidelity's default would switch PRC to VGG-16):
  "inception-v3-compat" (2048-d pool features, IS on its bias-free logits) or the digits
  classifier "ctcoupling-classifier" (see `classifier`);
- adds FD_DINOv2 where asked (EDM2's calculate_metrics.py, dgm-eval): torch-fidelity's DINOv2
  ViT-L/14 extractor with the network built here from a local weights file (`DinoV2Features`) and
  the resize named (`DINOV2_RESIZES`: dgm-eval's and EDM2's PIL bicubic by default).

Conventions follow torch-fidelity: input1 is the generated set (IS is computed on it, precision is
the fraction of generated samples on the reference manifold), input2 the reference set.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np
import torch
import torch_fidelity
from PIL import Image
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_dinov2 import FeatureExtractorDinoV2
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from ctcoupling.data import classifier
from ctcoupling.core.artifacts import sha256_file
from ctcoupling.data.datasets import to_uint8
from ctcoupling.core.errors import UserError

INCEPTION = "inception-v3-compat"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = URL_INCEPTION_V3  # torch-fidelity's GitHub release of the file (never fetched here)
INCEPTION_SHA256_PREFIX = "6726825d"  # torch.hub's convention: the sha256 prefix in the file name
INCEPTION_ENV = "CTCOUPLING_INCEPTION_WEIGHTS"
INCEPTION_PARAM = "evaluate.fidelity.inception_weights"  # where params name the file (named in the error message)
DINOV2_FILE = "dinov2_vitl14_pretrain.pth"
DINOV2_URL = f"https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/{DINOV2_FILE}"  # facebookresearch/dinov2's
DINOV2_ENV = "CTCOUPLING_DINOV2_WEIGHTS"  # hub entry dinov2_vitl14 loads this file (never fetched here)
DINOV2_PARAM = "evaluate.fidelity.dinov2_weights"
DINOV2_RESIZES = {  # how the images reach 224 x 224 before DINOv2 (docs/evaluation.md)
    "pil": "PIL bicubic per image to uint8 (dgm-eval's default, so ECT's numbers; EDM2 calculate_metrics.py "
           "resize_mode='pil', 'matches the original dgm-eval codebase exactly')",
    "torch": "torch bicubic, antialias=True, in float32 (EDM2 calculate_metrics.py's default resize_mode='torch', "
             "'almost the same results' as pil)",
    "torch-fidelity": "torch-fidelity 0.4.0's FeatureExtractorDinoV2: TF1-style bilinear, align_corners=False",
}
DINOV2_RESIZE = "pil"  # the published rows' (locuslab/ect README, measured with dgm-eval)
DINOV2_EXTRACTORS = {f"ctcoupling-dinov2-vit-l-14-{mode}": mode for mode in DINOV2_RESIZES}
EXTRACTORS = (INCEPTION, classifier.EXTRACTOR, *DINOV2_EXTRACTORS)
METRICS = ("fid", "kid", "isc", "prc")
KID_SUBSET_SIZE = 1000  # torch-fidelity's default, lowered to the sample count for small sets
KID_SUBSETS = 100  # torch-fidelity's default

_KEYS = {  # torch-fidelity's result keys -> ours
    "frechet_inception_distance": "fid",
    "kernel_inception_distance_mean": "kid_mean",
    "kernel_inception_distance_std": "kid_std",
    "inception_score_mean": "is_mean",
    "inception_score_std": "is_std",
    "precision": "precision",
    "recall": "recall",
}

# ---------------------------------------------------------------------------------------------
# Weights files and content hashes.


def verify_sha256(path: Path, expected: str, what: str) -> str:
    """sha256 of the file at `path`; UserError unless it starts with `expected` (a full hash or a prefix)."""
    digest = sha256_file(path)
    if not digest.startswith(expected.lower()):
        raise UserError(f"{path}: sha256 {digest} does not match the expected {expected} for {what}; "
                        "the file is damaged or a different one: download it again")
    return digest


def inception_weights(path: str | os.PathLike | None = None, sha256: str | None = None) -> Path:
    """The checked Inception-v3 weights file (torch-fidelity's `inception-v3-compat`, METHODS 8).

    From `path`, else the environment variable CTCOUPLING_INCEPTION_WEIGHTS. Its sha256 must equal
    `sha256` when given, else start with 6726825d (the prefix in the official file name).
    """
    _, resolved = _inception_weights(path, sha256)
    return resolved


def _local_file(path, env: str, url: str, param: str, what: str) -> Path:
    """The weights file named by `path`, else by the environment variable `env`; a UserError line
    saying where it comes from (`url`) and where to name it when neither names an existing file."""
    raw = path if path not in (None, "") else os.environ.get(env) or None
    where = f"download {url} and set {env} (or params `{param}`) to the file's path"
    if raw is None:
        raise UserError(f"{what} not configured: {where}")
    resolved = Path(raw).expanduser()
    if not resolved.is_file():
        raise UserError(f"{resolved}: {what} file not found: {where}")
    return resolved


def _inception_weights(path, sha256) -> tuple[str, Path]:
    """(sha256, path) of the checked Inception weights; see `inception_weights`."""
    resolved = _local_file(path, INCEPTION_ENV, INCEPTION_URL, INCEPTION_PARAM, "Inception weights")
    return verify_sha256(resolved, sha256 or INCEPTION_SHA256_PREFIX, INCEPTION_FILE), resolved


def dinov2_weights(path: str | os.PathLike | None = None, sha256: str | None = None) -> Path:
    """The DINOv2 ViT-L/14 weights file (`dinov2_vitl14_pretrain.pth`, FD_DINOv2).

    From `path`, else the environment variable CTCOUPLING_DINOV2_WEIGHTS; never downloaded. Its sha256
    must equal `sha256` when given (no official hash is published: the file's state dict is checked by
    name and shape when it loads, `load_dinov2`).
    """
    _, resolved = _dinov2_weights(path, sha256)
    return resolved


def _dinov2_weights(path, sha256) -> tuple[str, Path]:
    resolved = _local_file(path, DINOV2_ENV, DINOV2_URL, DINOV2_PARAM, "DINOv2 ViT-L/14 weights")
    return (verify_sha256(resolved, sha256, DINOV2_FILE) if sha256 else sha256_file(resolved)), resolved


def _extractor_weights(extractor: str, path, sha256) -> tuple[str, Path]:
    """(sha256, path) of the weights file of a supported extractor."""
    if extractor == INCEPTION:
        return _inception_weights(path, sha256)
    if extractor in DINOV2_EXTRACTORS:
        return _dinov2_weights(path, sha256)
    if extractor != classifier.EXTRACTOR:
        raise UserError(f"unknown feature extractor {extractor!r}; expected one of {', '.join(EXTRACTORS)}")
    if path is None:
        raise UserError(f"the {extractor} extractor needs its weights file (a trained classifier state)")
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise UserError(f"{resolved}: classifier weights file not found; train the classifier first")
    return (verify_sha256(resolved, sha256, "the classifier") if sha256 else sha256_file(resolved)), resolved


def array_sha256(x: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes (C order)."""
    h = hashlib.sha256(f"{np.dtype(x.dtype).str}{tuple(x.shape)}".encode())
    h.update(np.ascontiguousarray(x).data)
    return h.hexdigest()


def reference_cache_name(reference_key: str, reference: np.ndarray, weights_sha256: str) -> str:
    """torch-fidelity cache name of a reference set: `key-<images sha256[:16]>-<weights sha256[:16]>`.

    torch-fidelity appends the extractor name and the layer (`<name>-inception-v3-compat-stat-fid-2048.pt`),
    so the entry changes with the reference content, the weights and the extractor.
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+=-]*", reference_key):
        raise UserError(f"reference key {reference_key!r}: use letters, digits and _.+=- only")
    return f"{reference_key}-{array_sha256(reference)[:16]}-{weights_sha256[:16]}"


# ---------------------------------------------------------------------------------------------
# The papers' FID protocols: how generated (model space, [-1, 1]) and reference (uint8) images
# become the uint8 images the Inception network reads. Written here, not taken from a library,
# because each reproduces one official script's arithmetic (dtype and truncation included).

PROTOCOLS = {
    "standard": "METHODS 8: round(clamp(x, -1, 1) * 127.5 + 127.5); reference as stored (EDM, "
                "locuslab/ect metrics/metric_utils.py: (x * 127.5 + 128).clamp(0, 255) truncated, the same "
                "up to exact ties)",
    "vct": "sony/vct custom_callbacks/fid_callback.py + torchmetrics normalize=True: "
           "trunc((clamp(x, -1, 1) / 2 + 1/2) * 255) in float64; reference ToTensor (k / 255, float32) "
           "then trunc(* 255)",
    "gc": "consistency_GC utils.py: each generated batch min-max rescaled to [-1, 1] (one scalar min and "
          "max per batch), then trunc((x + 1) / 2 * 255) in float32; reference Normalize(0.5, 0.5) of "
          "k / 255 (float32), then the same truncation",
}


def generated_uint8(x, protocol: str = "standard") -> torch.Tensor:
    """One batch of generated images (floats in model space, or uint8 already) as uint8, per protocol."""
    if protocol == "standard" or (torch.is_tensor(x) and x.dtype == torch.uint8):
        return as_uint8(x)
    x = torch.as_tensor(np.asarray(x.detach().cpu() if torch.is_tensor(x) else x))
    if x.dtype == torch.uint8:
        raise UserError(f"FID protocol {protocol!r} converts generated floats: stream the samples "
                        "(evaluate.fidelity.stream: true), samples.npz is already rounded")
    if protocol == "vct":
        return ((x.double().clamp(-1, 1) * 0.5 + 0.5) * 255).to(torch.uint8)
    if protocol == "gc":
        x = x.float()
        lo, hi = x.min(), x.max()
        x = 2 * (x - lo) / (hi - lo) - 1
        return ((x + 1) / 2 * 255).to(torch.uint8)
    raise ValueError(f"unknown FID protocol {protocol!r} (have: {', '.join(PROTOCOLS)})")


def reference_subset(total: int, n: int | None) -> np.ndarray | None:
    """Indices of the fixed random subset of n of `total` reference images (sorted; one generator seeded
    0, so every experiment of a data set scores against the same images), or None for all of them."""
    if not n or n >= total:
        return None
    return np.sort(np.random.default_rng(0).choice(total, n, replace=False))


def reference_uint8(images: np.ndarray, protocol: str = "standard") -> np.ndarray:
    """The stored uint8 reference images as each protocol's pipeline hands them to Inception."""
    if protocol == "standard":
        return images
    k = torch.from_numpy(np.ascontiguousarray(images)).float().div(255)  # torchvision ToTensor
    if protocol == "vct":
        return (k * 255).to(torch.uint8).numpy()
    if protocol == "gc":
        x = (k - 0.5) / 0.5  # Normalize((0.5,) * 3, (0.5,) * 3)
        return ((x + 1) / 2 * 255).to(torch.uint8).numpy()
    raise ValueError(f"unknown FID protocol {protocol!r} (have: {', '.join(PROTOCOLS)})")


# ---------------------------------------------------------------------------------------------
# Inputs: torch Datasets of uint8 CHW tensors, read sequentially by torch-fidelity's DataLoader.


def as_uint8(batch) -> torch.Tensor:
    """A batch of images as a CPU uint8 tensor; floats are model-space [-1, 1] (METHODS 8 rounding)."""
    if torch.is_tensor(batch):
        batch = batch.detach().cpu()
        if batch.dtype == torch.uint8:
            return batch
        batch = batch.numpy()
    batch = np.asarray(batch)
    return torch.from_numpy(np.ascontiguousarray(batch if batch.dtype == np.uint8 else to_uint8(batch)))


class ImageArray(Dataset):
    """uint8 images (N, C, H, W) held in memory; item i is a (C, H, W) uint8 tensor."""

    def __init__(self, images):
        self.images = as_uint8(images)
        if self.images.dim() != 4:
            raise ValueError(f"expected images (N, C, H, W), got shape {tuple(self.images.shape)}")

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


class SampleStream(Dataset):
    """n images made on demand, `batch` at a time: batch b is `generate_batch(b)`.

    `generate_batch(b)` returns images b*batch .. b*batch + batch - 1 as uint8 (B, C, H, W), or
    floats in [-1, 1] converted by the FID `protocol` (`generated_uint8`); a larger last batch is
    cut to n. The latest batch is kept until an index outside it is asked for, so a sequential
    reader (torch-fidelity's DataLoader with num_workers=0, which `compute` arranges) calls
    `generate_batch` once per batch, in order. Deterministic whenever `generate_batch` is.
    """

    def __init__(self, generate_batch, n: int, batch: int, protocol: str = "standard"):
        if n < 1 or batch < 1:
            raise ValueError(f"SampleStream needs n >= 1 and batch >= 1, got n={n}, batch={batch}")
        self.generate_batch, self.n, self.batch, self.protocol = generate_batch, n, batch, protocol
        self._index, self._images = None, None

    def __len__(self):
        return self.n

    def _load(self, b: int) -> torch.Tensor:
        want = min(self.batch, self.n - b * self.batch)
        images = generated_uint8(self.generate_batch(b), self.protocol)
        if images.dim() != 4 or len(images) < want:
            raise ValueError(f"generate_batch({b}) gave shape {tuple(images.shape)}; expected ({want}, C, H, W)")
        return images[:want]

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        b = i // self.batch
        if self._index != b:
            self._images, self._index = self._load(b), b
        return self._images[i - b * self.batch]


class RGB(Dataset):
    """A dataset of 1-channel images seen as 3 equal channels (Inception expects RGB); others pass."""

    def __init__(self, base: Dataset):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        x = self.base[i]
        return x.expand(3, *x.shape[1:]) if x.shape[0] == 1 else x


# ---------------------------------------------------------------------------------------------
# FD_DINOv2 (EDM2 calculate_metrics.py, dgm-eval): torch-fidelity's DINOv2 extractor, offline.
#
# torch-fidelity 0.4.0's FeatureExtractorDinoV2 builds its network with
# torch.hub.load("facebookresearch/dinov2", "dinov2_vitl14"), which downloads that repository's code
# and the weights, and raises NotImplementedError when given a weights path: it ships no ViT code.
# torchvision's VisionTransformer names its parameters otherwise and has no LayerScale. So the
# network is written here, DINOv2's ViT-L/14 as the hub entry builds it, with the official
# state dict's names, and loaded from the local file with torch.load(weights_only=True), strict.

DINOV2_ARCH = {"dim": 1024, "depth": 24, "patch": 14, "grid": 37}  # ViT-L/14, img_size 518 = 37 patches
DINOV2_HEAD_DIM = 64  # every DINOv2 backbone: ViT-L/14 has 16 heads
DINOV2_SIZE = 224  # EDM2, dgm-eval and torch-fidelity resize to 224 x 224 (16 x 16 patches)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class _LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


class _DinoBlock(nn.Module):
    """Pre-norm transformer block with LayerScale (dinov2/layers/block.py, inference path)."""

    def __init__(self, dim: int):
        super().__init__()
        self.heads = dim // DINOV2_HEAD_DIM
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = nn.ModuleDict({"qkv": nn.Linear(dim, 3 * dim), "proj": nn.Linear(dim, dim)})
        self.mlp = nn.ModuleDict({"fc1": nn.Linear(dim, 4 * dim), "fc2": nn.Linear(4 * dim, dim)})
        self.ls1, self.ls2 = _LayerScale(dim), _LayerScale(dim)

    def _attention(self, x):
        b, n, d = x.shape
        q, k, v = self.attn["qkv"](x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return self.attn["proj"](F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))

    def forward(self, x):
        x = x + self.ls1(self._attention(self.norm1(x)))
        return x + self.ls2(self.mlp["fc2"](F.gelu(self.mlp["fc1"](self.norm2(x)))))


class DinoV2(nn.Module):
    """DINOv2's ViT backbone (facebookresearch/dinov2 hub `dinov2_vitl14` with the default DINOV2_ARCH):
    the class token after the final LayerNorm, the features FD_DINOv2 uses (`model(x)` in EDM2 and
    dgm-eval). The positional embedding, trained at 37 x 37 patches, is interpolated bicubically to
    the input's patch grid with the official scale factors (grid + 0.1) / 37. `mask_token` is held
    only so the official state dict loads strictly."""

    def __init__(self, dim: int, depth: int, patch: int, grid: int):
        super().__init__()
        self.grid = grid
        self.patch_embed = nn.ModuleDict({"proj": nn.Conv2d(3, dim, patch, patch)})
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.blocks = nn.ModuleList(_DinoBlock(dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def _positions(self, h: int, w: int) -> torch.Tensor:
        if (h, w) == (self.grid, self.grid):
            return self.pos_embed
        grid = self.pos_embed[:, 1:].reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, scale_factor=((h + 0.1) / self.grid, (w + 0.1) / self.grid), mode="bicubic")
        return torch.cat([self.pos_embed[:, :1], grid.flatten(2).transpose(1, 2)], 1)

    def forward(self, x):
        x = self.patch_embed["proj"](x)
        positions = self._positions(*x.shape[-2:])
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x.flatten(2).transpose(1, 2)], 1) + positions
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 0]


def load_dinov2(path) -> DinoV2:
    """DINOV2_ARCH's network with the state dict of the file at `path`, read with torch.load(weights_only=True)
    (no code in the file runs) and loaded strictly: a wrong file is one UserError line."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"{path}: unreadable DINOv2 weights ({type(e).__name__}); download {DINOV2_URL} again") from None
    net = DinoV2(**DINOV2_ARCH)
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        first = str(e).strip().splitlines()[-1].strip() if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: not the DINOv2 ViT-L/14 state dict of {DINOV2_FILE} ({first})") from None
    return net.requires_grad_(False).eval()


def dinov2_resize(x: torch.Tensor, mode: str) -> torch.Tensor:
    """uint8 images (B, 3, H, W) as float32 pixel values 0..255 at 224 x 224, by EDM2's `pil` or `torch` mode."""
    if mode == "pil":
        size = (DINOV2_SIZE, DINOV2_SIZE)
        images = [np.asarray(Image.fromarray(im, "RGB").resize(size, Image.Resampling.BICUBIC))
                  for im in x.permute(0, 2, 3, 1).cpu().numpy()]
        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).to(x.device, torch.float32)
    if mode == "torch":
        return F.interpolate(x.float(), size=(DINOV2_SIZE, DINOV2_SIZE), mode="bicubic", antialias=True)
    raise ValueError(f"unknown DINOv2 resize {mode!r} (have: {', '.join(DINOV2_RESIZES)})")


class DinoV2Features(FeatureExtractorDinoV2):
    """torch-fidelity 0.4.0's DINOv2 extractor (feature "dinov2", used for FID, i.e. FD_DINOv2) with
    the network from the local file `feature_extractor_weights_path` (`load_dinov2`) instead of
    torch.hub, registered once per resize mode (DINOV2_EXTRACTORS: `ctcoupling-dinov2-vit-l-14-MODE`,
    so cached statistics of the modes never mix). Mode torch-fidelity runs torch-fidelity's own
    forward; pil and torch run EDM2's: resize (`dinov2_resize`), x / 255, ImageNet mean and std."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        FeatureExtractorBase.__init__(self, name, features_list)  # not FeatureExtractorDinoV2's: torch.hub
        if feature_extractor_weights_path is None:
            raise UserError(f"feature extractor {name!r} needs the DINOv2 weights file "
                            "(feature_extractor_weights_path); it never downloads")
        self.resize = DINOV2_EXTRACTORS[name]
        self.feature_extractor_internal_dtype = torch.float32
        self.model = load_dinov2(feature_extractor_weights_path)

    def forward(self, x):
        if self.resize == "torch-fidelity":
            return super().forward(x)
        if not (torch.is_tensor(x) and x.dtype == torch.uint8 and x.dim() == 4 and x.shape[1] == 3):
            raise ValueError("expecting images as a torch.uint8 tensor (B, 3, H, W)")
        x = dinov2_resize(x, self.resize) / 255
        x = (x - x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return (self.model(x),)  # features_list is ("dinov2",), the only feature provided

    @staticmethod
    def can_be_compiled():
        return False  # the pil mode leaves the graph


def dinov2_extractor(resize: str = DINOV2_RESIZE) -> str:
    """The registered name of the DINOv2 extractor that resizes by `resize` (DINOV2_RESIZES)."""
    for name, mode in DINOV2_EXTRACTORS.items():
        if mode == resize:
            return name
    raise UserError(f"DINOv2 resize {resize!r}: choose from {', '.join(DINOV2_RESIZES)}")


for _name in DINOV2_EXTRACTORS:
    if _name not in FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor(_name, DinoV2Features)


# ---------------------------------------------------------------------------------------------
# The metrics.


def kid_subset_size(n_generated: int, n_reference: int) -> int:
    """KID subset size: torch-fidelity's 1000, or the smaller sample count when that is below 1000."""
    return min(KID_SUBSET_SIZE, n_generated, n_reference)


def compute(generated, reference: np.ndarray, extractor: str, weights_path, cache_dir, reference_key: str,
            metrics=METRICS, batch: int = 64, device: str = "cpu", seed: int = 0,
            weights_sha256: str | None = None, verbose: bool = False, kid_subsets: int = KID_SUBSETS) -> dict[str, float]:
    """Metrics of generated images against reference images, on one feature extractor.

    generated: uint8 (N, C, H, W) array or tensor, or a `SampleStream` (any Dataset of uint8 CHW
        tensors read in order); reference: uint8 (M, C, H, W) array.
    extractor: "inception-v3-compat" (1-channel images are repeated to RGB; weights resolved by
        `inception_weights`, so weights_path may be None to use CTCOUPLING_INCEPTION_WEIGHTS),
        "ctcoupling-classifier" (weights_path: a `classifier.train_classifier` state file) or a DINOv2
        extractor of DINOV2_EXTRACTORS (RGB as Inception; weights by `dinov2_weights`; its "fid" is FD_DINOv2).
    metrics: any of "fid", "kid", "isc" (IS of the generated set), "prc" (precision, recall).
    cache_dir: torch-fidelity's cache_root; the reference features and FID statistics are cached
        there under `reference_cache_name(reference_key, reference, sha256 of the weights)`, the
        generated ones never.
    seed: torch-fidelity's rng_seed (KID subsets, IS split shuffling); kid_subsets: how many.
    Returns a subset of fid, kid_mean, kid_std, is_mean, is_std, precision, recall.
    """
    unknown = set(metrics) - set(METRICS)
    if unknown or not metrics:
        raise UserError(f"metrics {sorted(unknown) or '[]'}: choose from {', '.join(METRICS)}")
    weights_sha, weights = _extractor_weights(extractor, weights_path, weights_sha256)
    gen = generated if isinstance(generated, Dataset) else ImageArray(generated)
    ref = ImageArray(reference)
    cache_name = reference_cache_name(reference_key, ref.images.numpy(), weights_sha)
    if extractor != classifier.EXTRACTOR:  # Inception and DINOv2 read RGB
        gen, ref = RGB(gen), RGB(ref)
    binary = bool({"fid", "kid", "prc"} & set(metrics))  # IS alone does not look at the reference
    kwargs = dict(
        input1=gen, input2=ref if binary else None, input2_cache_name=cache_name,
        cache=True, cache_root=str(Path(cache_dir)),  # only named inputs are cached: input1 has no name
        feature_extractor=extractor, feature_extractor_weights_path=str(weights),
        feature_extractor_compile=False, datasets_download=False,
        batch_size=batch, cuda=torch.device(device).type == "cuda", rng_seed=seed, verbose=verbose,
        save_cpu_ram=True,  # num_workers=0: the stream is read in order in this process (PRC in blocks)
        kid_subset_size=kid_subset_size(len(gen), len(ref)), kid_subsets=kid_subsets,
        **{m: m in metrics for m in METRICS},
    )
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    if torch.device(device).type == "cuda":
        with torch.cuda.device(torch.device(device)):
            out = torch_fidelity.calculate_metrics(**kwargs)
    else:
        out = torch_fidelity.calculate_metrics(**kwargs)
    return {ours: float(out[theirs]) for theirs, ours in _KEYS.items() if theirs in out}


# ---------------------------------------------------------------------------------------------
# One experiment's evaluation: every (NFE, seed) run of a params `evaluate.fidelity` section.

RESULT_NAMES = {"fid": "fid", "kid_mean": "kid", "is_mean": "is", "precision": "precision", "recall": "recall",
                "fd_dinov2": "fd_dinov2"}


def cache_dir() -> Path:
    """Where reference statistics are cached: $CTCOUPLING_CACHE/fidelity, else ~/.cache/ctcoupling/fidelity.
    Safe to share between checkouts: entries are keyed by content (`reference_cache_name`)."""
    root = os.environ.get("CTCOUPLING_CACHE") or Path.home() / ".cache" / "ctcoupling"
    return Path(root) / "fidelity"


def _summary(values: list[float]) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else None, "n": len(v)}


def _dinov2_spec(spec: dict) -> dict:
    """The FD_DINOv2 settings of params `evaluate.fidelity`: extractor, resize, checked weights file."""
    resize = spec.get("dinov2_resize") or DINOV2_RESIZE
    sha, path = _dinov2_weights(spec.get("dinov2_weights"), spec.get("dinov2_sha256"))
    return {"extractor": dinov2_extractor(resize), "resize": resize, "path": path, "weights_sha256": sha}


def evaluate(spec: dict, reference: np.ndarray, reference_key: str, weights_path=None, samples=None,
             sample_nfe: int | None = None, make_stream=None, device: str = "cpu", cache=None) -> dict:
    """Run `compute` for an experiment as `spec` (params `evaluate.fidelity`) says and summarise.

    Samples mode (stream false): once, on `samples` (uint8), recorded at `sample_nfe`. Stream mode:
    for every NFE in spec.steps and seed in spec.seeds, on `make_stream(nfe, seed)` (a SampleStream
    of spec.n images). Inception weights that are missing or wrong give a record with available
    false and the reason (one line saying where to get the file), not an exception, so a suite
    still reports and audits ("unavailable"). "fd_dinov2" in spec.metrics adds FD_DINOv2 per run,
    on a second pass over the same images (a stream is made again: it is seeded), with the
    extractor of spec.dinov2_resize; it is asked for explicitly, so missing DINOv2 weights are a
    UserError. Returns a JSON-ready record.
    """
    metrics = [m for m in spec["metrics"] if m in METRICS]
    dinov2 = _dinov2_spec(spec) if "fd_dinov2" in spec["metrics"] else None
    extractor = INCEPTION if spec["features"] == "inception" else classifier.EXTRACTOR
    if extractor == INCEPTION:
        weights_path, sha = spec["inception_weights"], spec["inception_sha256"]
    else:
        sha = None
    fid_protocol = spec.get("protocol", "standard")
    reference = reference_uint8(reference, fid_protocol)
    record = {"features": spec["features"], "extractor": extractor, "reference": spec["reference"],
              "steps": list(spec["steps"]) if spec["stream"] else [sample_nfe],
              "n_reference": len(reference), "metrics": list(spec["metrics"]), "torch_fidelity": torch_fidelity.__version__,
              "fid_protocol": fid_protocol, "uint8": PROTOCOLS[fid_protocol],
              "checkpoint": "final"}  # the trained model.pt: no selection of the best checkpoint
    if dinov2:
        record["fd_dinov2"] = {k: dinov2[k] for k in ("extractor", "resize", "weights_sha256")} | {
            "how": DINOV2_RESIZES[dinov2["resize"]]}
    try:
        if metrics:
            _extractor_weights(extractor, weights_path, sha)
    except UserError as e:
        return record | {"available": False, "reason": str(e), "runs": [], "summary": {}}
    runs = []
    if spec["stream"]:
        jobs = [(nfe, seed, lambda nfe=nfe, seed=seed: make_stream(nfe, seed)) for nfe in spec["steps"]
                for seed in spec["seeds"]]
    else:
        jobs = [(sample_nfe, None, lambda: samples)]
    for nfe, seed, source in jobs:
        values = compute(source(), reference, extractor, weights_path, cache or cache_dir(), reference_key,
                         metrics, spec["batch"], device, seed or 0, sha) if metrics else {}
        if dinov2:
            values["fd_dinov2"] = compute(source(), reference, dinov2["extractor"], dinov2["path"], cache or cache_dir(),
                                          reference_key, ("fid",), spec["batch"], device, seed or 0,
                                          dinov2["weights_sha256"])["fid"]
        runs.append({"nfe": nfe, "seed": seed, "n_generated": spec["n"] if spec["stream"] else len(samples)} | values)
    summary = {}
    for nfe in dict.fromkeys(r["nfe"] for r in runs):
        mine = [r for r in runs if r["nfe"] == nfe]
        summary[str(nfe)] = {ours: _summary([r[k] for r in mine]) for k, ours in RESULT_NAMES.items() if k in mine[0]}
    n_gen = runs[0]["n_generated"]
    extractors = ([extractor] if metrics else []) + ([f"fd_dinov2 on {dinov2['extractor']}"] if dinov2 else [])
    protocol = (f"{fid_protocol} protocol, {', '.join(extractors)}, {n_gen} generated vs {len(reference)} "
                f"{spec['reference']} images, torch-fidelity {torch_fidelity.__version__}, "
                f"{len(runs) // len(summary)} seed(s)")
    return record | {"available": True, "n_generated": n_gen, "protocol": protocol, "runs": runs, "summary": summary}
