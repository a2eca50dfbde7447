"""Tiny files in the official formats of the image sources (imagesets.py): downsampled ImageNet npz
batches, CelebA's aligned zip and partition list, an LSUN lmdb of webp images, an EDM dataset zip.
Shared by the reader tests (test_imagesets.py) and the presets' end-to-end tests (test_presets.py)."""
import hashlib
import io
import json
import zipfile

import numpy as np
from PIL import Image

from ctcoupling.data import imagesets

CELEBA_PARTS = [0] * 8 + [1] * 2 + [2] * 8  # interleaved below, as in the real file's order


def imagenet_image(k: int, res: int) -> np.ndarray:
    """Image k as (3, res, res): R constant k, G a ramp over the pixels, B constant 255 - k."""
    g = (np.arange(res * res) % 251).reshape(res, res)
    return np.stack([np.full((res, res), k), g, np.full((res, res), 255 - k)]).astype(np.uint8)


def imagenet_dir(d, res, per_batch=1, n_val=8, labels=None):
    """Writes the 11 official files; returns the expected x/y arrays (y 0-based)."""
    d.mkdir(exist_ok=True)
    k, expected = 0, {}
    for split, files, n in (("train", imagesets.IMAGENET_TRAIN, per_batch), ("test", [imagesets.IMAGENET_VAL], n_val)):
        xs, ys = [], []
        for f in files:
            x = np.stack([imagenet_image(k + i, res) for i in range(n)])
            y = np.array([1 + (k + i) * 111 % 1000 for i in range(n)]) if labels is None else labels(f, n)
            k += n
            kw = {"mean": x.reshape(n, -1).mean(0)} if split == "train" else {}
            np.savez(d / f, data=x.reshape(n, -1), labels=y, **kw)  # the official row layout: R plane, G, B
            xs.append(x)
            ys.append(y - 1)
        expected[f"x_{split}"], expected[f"y_{split}"] = np.concatenate(xs), np.concatenate(ys)
    return expected


def photo(w, h, seed):
    """A smooth-plus-noise RGB picture (the resampling filter sees real structure)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / max(w - 1, 1), yy * 255 / max(h - 1, 1), (xx + yy) % 256], -1)
    return Image.fromarray(np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8))


def celeba(tmp_path, parts=None, extra=None, corrupt=None):
    parts = parts or [CELEBA_PARTS[i] for i in np.random.default_rng(0).permutation(len(CELEBA_PARTS))]
    names = [f"{i + 1:06d}.jpg" for i in range(len(parts))]
    blobs = {}
    with zipfile.ZipFile(tmp_path / "img_align_celeba.zip", "w") as z:
        z.writestr("img_align_celeba/", b"")
        for i, n in enumerate(names):
            buf = io.BytesIO()
            photo(178, 218, i).save(buf, format="JPEG", quality=90)
            blobs[n] = b"not a jpeg" if n == corrupt else buf.getvalue()
            z.writestr(f"img_align_celeba/{n}", blobs[n])
        for k, v in (extra or {}).items():
            z.writestr(k, v)
    (tmp_path / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, p in zip(names, parts)))
    return names, parts, blobs


def lsun(d, images: dict[bytes, Image.Image], lossless=True, raw=None):
    import lmdb

    blobs = {}
    env = lmdb.open(str(d), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for key in sorted(images, key=lambda k: hashlib.md5(k).digest()):  # not in key order
            buf = io.BytesIO()
            images[key].save(buf, format="WEBP", lossless=lossless, quality=75)
            blobs[key] = (raw or {}).get(key, buf.getvalue())
            txn.put(key, blobs[key])
    env.close()
    return blobs


def edm_zip(path, n=10, labels="ints", mode="RGB", size=32, extra=None):
    names = [f"{i // 4:05d}/img{i:08d}.png" for i in range(n)]
    order = np.random.default_rng(1).permutation(n)  # written out of order: read back sorted
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for i in order:
            a = np.full((size, size, 3), (i * 10, 200 - i * 10, 7), np.uint8)
            a[0, 0] = 255
            buf = io.BytesIO()
            (Image.fromarray(a).convert(mode)).save(buf, format="PNG")
            z.writestr(names[i], buf.getvalue())
        z.writestr("README.txt", "not an image")
        if labels == "ints":
            z.writestr("dataset.json", json.dumps({"labels": [[nm, i % 3] for i, nm in enumerate(names)]}))
        elif labels is not None:
            z.writestr("dataset.json", json.dumps({"labels": labels(names)}))
        for k, v in (extra or {}).items():
            z.writestr(k, v)
    return names
