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
  classifier "ctcoupling-classifier" (see `classifier`).

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
from torch.utils.data import Dataset
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

from . import classifier
from .artifacts import sha256_file
from .data import to_uint8
from .errors import UserError

INCEPTION = "inception-v3-compat"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = URL_INCEPTION_V3  # torch-fidelity's GitHub release of the file (never fetched here)
INCEPTION_SHA256_PREFIX = "6726825d"  # torch.hub's convention: the sha256 prefix in the file name
INCEPTION_ENV = "CTCOUPLING_INCEPTION_WEIGHTS"
INCEPTION_PARAM = "evaluate.fidelity.inception_weights"  # where params name the file (named in the error message)
EXTRACTORS = (INCEPTION, classifier.EXTRACTOR)
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


def _inception_weights(path, sha256) -> tuple[str, Path]:
    """(sha256, path) of the checked Inception weights; see `inception_weights`."""
    raw = path if path not in (None, "") else os.environ.get(INCEPTION_ENV) or None
    where = (f"download {INCEPTION_URL} and set {INCEPTION_ENV} (or params `{INCEPTION_PARAM}`) "
             "to the file's path")
    if raw is None:
        raise UserError(f"Inception weights not configured: {where}")
    resolved = Path(raw).expanduser()
    if not resolved.is_file():
        raise UserError(f"{resolved}: Inception weights file not found: {where}")
    return verify_sha256(resolved, sha256 or INCEPTION_SHA256_PREFIX, INCEPTION_FILE), resolved


def _extractor_weights(extractor: str, path, sha256) -> tuple[str, Path]:
    """(sha256, path) of the weights file of a supported extractor."""
    if extractor == INCEPTION:
        return _inception_weights(path, sha256)
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
        `inception_weights`, so weights_path may be None to use CTCOUPLING_INCEPTION_WEIGHTS) or
        "ctcoupling-classifier" (weights_path: a `classifier.train_classifier` state file).
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
    if extractor == INCEPTION:
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

RESULT_NAMES = {"fid": "fid", "kid_mean": "kid", "is_mean": "is", "precision": "precision", "recall": "recall"}


def cache_dir() -> Path:
    """Where reference statistics are cached: $CTCOUPLING_CACHE/fidelity, else ~/.cache/ctcoupling/fidelity.
    Safe to share between checkouts: entries are keyed by content (`reference_cache_name`)."""
    root = os.environ.get("CTCOUPLING_CACHE") or Path.home() / ".cache" / "ctcoupling"
    return Path(root) / "fidelity"


def _summary(values: list[float]) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else None, "n": len(v)}


def evaluate(spec: dict, reference: np.ndarray, reference_key: str, weights_path=None, samples=None,
             sample_nfe: int | None = None, make_stream=None, device: str = "cpu", cache=None) -> dict:
    """Run `compute` for an experiment as `spec` (params `evaluate.fidelity`) says and summarise.

    Samples mode (stream false): once, on `samples` (uint8), recorded at `sample_nfe`. Stream mode:
    for every NFE in spec.steps and seed in spec.seeds, on `make_stream(nfe, seed)` (a SampleStream
    of spec.n images). Inception weights that are missing or wrong give a record with available
    false and the reason (one line saying where to get the file), not an exception, so a suite
    still reports and audits ("unavailable"). Returns a JSON-ready record.
    """
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
    try:
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
                         spec["metrics"], spec["batch"], device, seed or 0, sha)
        runs.append({"nfe": nfe, "seed": seed, "n_generated": spec["n"] if spec["stream"] else len(samples)} | values)
    summary = {}
    for nfe in dict.fromkeys(r["nfe"] for r in runs):
        mine = [r for r in runs if r["nfe"] == nfe]
        summary[str(nfe)] = {ours: _summary([r[k] for r in mine]) for k, ours in RESULT_NAMES.items() if k in mine[0]}
    n_gen = runs[0]["n_generated"]
    protocol = (f"{fid_protocol} protocol, {extractor}, {n_gen} generated vs {len(reference)} {spec['reference']} images, "
                f"torch-fidelity {torch_fidelity.__version__}, {len(runs) // len(summary)} seed(s)")
    return record | {"available": True, "n_generated": n_gen, "protocol": protocol, "runs": runs, "summary": summary}
