"""Unit tests for firstlayer.datasets: embedded crops, CIFAR pickles, image folders."""

from __future__ import annotations

import functools
import hashlib
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import firstlayer.datasets as D
from firstlayer.config import config_images
from firstlayer.datasets import DatasetError

SMALL = {
    "photos": ["chelsea", "coffee", "astronaut"],
    "train_per_class": 12,
    "test_per_class": 6,
    "image_size": 16,
    "scale": 0.5,
    "seed": 3,
}


@functools.cache
def rescaled(name: str, scale: float) -> np.ndarray:
    return D.rescale_photo(D.load_photo(name), scale)


def crop_of(name: str, scale: float, row: int, col: int, size: int) -> np.ndarray:
    """Reconstruct an unrotated (size, size, 3) crop from the rescaled photo."""
    return rescaled(name, scale)[row : row + size, col : col + size]


def assert_split_disjoint(manifest: pd.DataFrame, size: int) -> None:
    for photo, rows in manifest.groupby("photo"):
        train, test = rows[rows.split == "train"], rows[rows.split == "test"]
        dr = np.abs(train.row.to_numpy()[:, None] - test.row.to_numpy()[None, :])
        dc = np.abs(train.col.to_numpy()[:, None] - test.col.to_numpy()[None, :])
        assert not ((dr < size) & (dc < size)).any(), f"train/test overlap in {photo}"
        assert not set(train.tile) & set(test.tile), photo


# ------------------------------------------------------------------------ embedded


def test_embedded_photos_load_offline():
    assert len(D.EMBEDDED_PHOTOS) >= 8
    for name in D.EMBEDDED_PHOTOS:
        photo = D.load_photo(name)
        assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3
        assert min(photo.shape[:2]) >= 256 and photo.std() > 10, name


@pytest.mark.parametrize("labels", ["photo", "rotation", "texture", "polarity"])
def test_embedded_deterministic(labels):
    a = D.make_embedded_dataset(labels=labels, **SMALL)
    b = D.make_embedded_dataset(labels=labels, **SMALL)
    assert a.images.tobytes() == b.images.tobytes()
    pd.testing.assert_frame_equal(a.manifest, b.manifest)
    c = D.make_embedded_dataset(labels=labels, **{**SMALL, "seed": 4})
    assert a.images.tobytes() != c.images.tobytes()


def test_embedded_photo_labels():
    ds = D.make_embedded_dataset(**SMALL)
    m = ds.manifest
    assert ds.images.shape == (3 * 18, 3, 16, 16) and ds.images.dtype == np.uint8
    assert ds.images.flags.c_contiguous
    assert ds.num_classes == 3 and ds.class_names == ("chelsea", "coffee", "astronaut")
    assert m["index"].tolist() == list(range(len(m)))
    assert m.split.tolist() == ["train"] * 36 + ["test"] * 18
    assert m.label.dtype == np.int64
    assert (m.class_name == m.photo).all() and (m.source == m.photo).all()
    assert (m.rotation == 0).all()
    counts = m.groupby(["split", "label"]).size()
    assert (counts.loc["train"] == 12).all() and (counts.loc["test"] == 6).all()
    x, y = ds.split("test")
    assert x.shape == (18, 3, 16, 16) and y.dtype == np.int64
    np.testing.assert_array_equal(y, m.label[m.split == "test"])
    for i in range(0, len(m), 5):
        r = m.iloc[i]
        expected = crop_of(r.photo, 0.5, r.row, r.col, 16).transpose(2, 0, 1)
        np.testing.assert_array_equal(ds.images[i], expected)
    assert_split_disjoint(m, 16)
    # Crops are distinct positions: no duplicate (photo, row, col).
    assert not m.duplicated(["photo", "row", "col"]).any()


def test_embedded_rotation_labels():
    ds = D.make_embedded_dataset(labels="rotation", **SMALL)
    m = ds.manifest
    assert ds.class_names == ("0°", "90°", "180°", "270°") and ds.num_classes == 4
    counts = m.groupby(["split", "label"]).size()
    assert (counts.loc["train"] == 12).all() and (counts.loc["test"] == 6).all()
    per_photo = m[m.split == "train"].groupby("photo").size()
    assert per_photo.max() - per_photo.min() <= 1  # drawn evenly across photos
    assert (m.rotation == 90 * m.label).all()
    assert_split_disjoint(m, 16)
    for i in range(len(m)):
        r = m.iloc[i]
        crop = crop_of(r.photo, 0.5, r.row, r.col, 16)
        rotated = np.rot90(crop, r.label, axes=(0, 1)).transpose(2, 0, 1)
        np.testing.assert_array_equal(ds.images[i], rotated)


def test_embedded_texture_labels():
    ds = D.make_embedded_dataset(labels="texture", **SMALL)
    m = ds.manifest
    assert ds.images.shape == (3 * 18, 3, 16, 16) and ds.class_names == ("chelsea", "coffee", "astronaut")
    assert (m.class_name == m.photo).all() and (m.rotation == 0).all()
    counts = m.groupby(["split", "label"]).size()
    assert (counts.loc["train"] == 12).all() and (counts.loc["test"] == 6).all()
    assert_split_disjoint(m, 16)
    assert m.channels.nunique() >= 4  # random orders, not one fixed one
    for i in range(len(m)):
        r = m.iloc[i]
        order = ["rgb".index(c) for c in r.channels]
        assert sorted(order) == [0, 1, 2]
        permuted = crop_of(r.photo, 0.5, r.row, r.col, 16)[..., order].astype(np.float64)
        expected = np.clip(np.round(permuted - permuted.mean(axis=(0, 1)) + 128), 0, 255).transpose(2, 0, 1)
        np.testing.assert_array_equal(ds.images[i], expected)
    config = {"source": "embedded", "labels": "texture", "photos": SMALL["photos"], "train_per_class": 12,
              "test_per_class": 6, "image_size": 16}  # fmt: skip
    assert config_images(config) == (36, 18, 16)


def test_config_counts_the_images_a_polarity_dataset_makes():
    """Every source crop is in both classes: the images of a split are 2 x its per-class count, whatever the photos."""
    spec = {"source": "embedded", "labels": "polarity", "photos": SMALL["photos"], "train_per_class": 8,
            "test_per_class": 4, "image_size": 16}  # fmt: skip
    ds = D.make_embedded_dataset(**{k: v for k, v in spec.items() if k != "source"})
    assert config_images(spec) == (len(ds.split("train")[0]), len(ds.split("test")[0]), 16) == (16, 8, 16)


def test_schema_lists_every_embedded_labelling():
    from firstlayer.config import load_schema

    enum = load_schema()["$defs"]["embedded_dataset"]["properties"]["labels"]["enum"]
    assert tuple(enum) == D.EMBEDDED_LABELS


def test_neutral_colour_shifts_and_permutes():
    crops = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    crops[..., 0], crops[..., 1], crops[..., 2] = 10, 200, 255
    crops[:, 0, 0, 0] = 26  # channel 0: mean 11, one pixel 16 above it
    out, order = D.neutral_colour(crops, np.random.default_rng(0))
    assert out.dtype == np.uint8 and out.shape == crops.shape and order.shape == (2, 3)
    for i in range(2):
        assert sorted(order[i]) == [0, 1, 2]
        red = int(np.flatnonzero(order[i] == 0)[0])  # where channel 0 went
        assert out[i, 0, 0, red] == 143 and (out[i, 1:, :, red] == 127).all()
        others = [c for c in range(3) if c != red]
        assert (out[i][..., others] == 128).all()


def test_texture_labels_carry_no_class_mean_signal():
    from firstlayer.analysis import label_information
    from firstlayer.patches import patch_moments, patch_pca

    def class_means_and_share(labels: str) -> tuple[np.ndarray, float]:
        ds = D.make_embedded_dataset(labels=labels, **{**SMALL, "train_per_class": 48, "image_size": 32})
        x, y = ds.split("train")
        means = np.stack([x[y == c].mean(axis=(0, 2, 3)) for c in range(ds.num_classes)])  # (classes, 3)
        mean, std = D.channel_stats(x)
        lam, basis = patch_pca(patch_moments(x, mean, std, 3).covariance())
        info = label_information(x, y, 3, mean, std, lam, basis)
        return means, float(info.between_class_variance.sum() / info.eigenvalue.sum())

    texture_means, texture_share = class_means_and_share("texture")
    photo_means, photo_share = class_means_and_share("photo")
    # every class's mean pixel is 128 in every channel, up to the pixels clipped at 0 or 255
    assert np.abs(texture_means - 128).max() < 1.5
    assert np.ptp(photo_means, axis=0).max() > 20  # the same crops as labelled by photo: the signal removed
    assert texture_share < 0.02 < photo_share


def test_embedded_polarity_labels():
    ds = D.make_embedded_dataset(labels="polarity", **SMALL)
    m = ds.manifest
    assert ds.images.shape == (2 * 18, 3, 16, 16) and ds.class_names == ("positive", "negative")
    counts = m.groupby(["split", "label"]).size()
    assert (counts.loc["train"] == 12).all() and (counts.loc["test"] == 6).all()
    per_photo = m[(m.split == "train") & (m.label == 0)].groupby("photo").size()
    assert per_photo.tolist() == [4, 4, 4]  # drawn evenly across photos
    assert_split_disjoint(m, 16)  # a crop and its negative share a split
    pairs = m.groupby(["photo", "row", "col"])
    assert pairs.size().eq(2).all() and all(sorted(v) == [0, 1] for v in pairs.label.apply(list))
    assert pairs.split.nunique().eq(1).all() and pairs.rotation.nunique().eq(1).all()
    for _, rows in pairs:
        pos, neg = rows.sort_values("label")["index"]
        np.testing.assert_array_equal(ds.images[neg], 255 - ds.images[pos])
        r = m.iloc[pos]
        crop = np.rot90(crop_of(r.photo, 0.5, r.row, r.col, 16), r.rotation // 90, axes=(0, 1))
        expected = D.polarity_crops(crop[None].copy(), np.zeros(1, dtype=bool))[0]
        np.testing.assert_array_equal(ds.images[pos], expected.transpose(2, 0, 1))
    config = {"source": "embedded", "labels": "polarity", "photos": SMALL["photos"], "train_per_class": 12,
              "test_per_class": 6, "image_size": 16}  # fmt: skip
    assert len(D.prepare_dataset(config).split("train")[0]) == 24


def test_polarity_crops_centre_and_negate():
    rng = np.random.default_rng(0)
    crops = rng.integers(60, 90, size=(3, 8, 8, 3), dtype=np.uint8)
    crops[1, 0, 0] = 255  # a highlight 180 above the mean: contrast reduced to fit, not clipped
    crops[2] = 0  # flat
    out = D.polarity_crops(crops, np.array([False, False, True]))
    assert out.dtype == np.uint8 and out.shape == crops.shape
    means = out[:2].mean(axis=(1, 2), dtype=np.float64)
    assert np.abs(means - 127.5).max() <= 0.5
    assert out[1].max() == 255 and out[1].min() > 0  # the highlight sets the gain
    assert np.ptp(out[0].astype(int) - crops[0].astype(int), axis=(0, 1)).max() == 0  # a whole-number shift
    assert (out[2] == 255 - 128).all()
    np.testing.assert_array_equal(D.polarity_crops(crops, np.ones(3, dtype=bool)), 255 - D.polarity_crops(
        crops, np.zeros(3, dtype=bool)))  # fmt: skip


def test_patch_pixel_means_are_patch_means():
    import torch
    import torch.nn.functional as F

    x = np.random.default_rng(0).integers(0, 256, size=(5, 12, 10, 3), dtype=np.uint8)
    means = D.patch_pixel_means(x, (3, 5))
    start = 0
    for k in (3, 5):
        patches = F.unfold(torch.from_numpy(x.transpose(0, 3, 1, 2)).double(), k).mean(-1).numpy()  # (n, c*k*k)
        expected = patches.reshape(5, 3, k, k).transpose(0, 2, 3, 1).reshape(5, -1)
        np.testing.assert_allclose(means[:, start : start + 3 * k * k], expected, rtol=0, atol=1e-12)
        start += 3 * k * k
    assert start == means.shape[1]


def test_polarity_classes_share_patch_means_and_covariances():
    from firstlayer.label_information import class_patch_moments, label_information_frames

    ds = D.make_embedded_dataset(labels="polarity", **{**SMALL, "train_per_class": 96, "image_size": 32})
    x, y = ds.split("train")
    for k in (3, 5):
        counts, totals, outers = class_patch_moments(x, y[None], k)
        mean = totals[0] / counts[0][:, None]  # (2, d), pixel units minus 128
        cov = outers[0] / counts[0][:, None, None] - mean[:, :, None] * mean[:, None, :]
        np.testing.assert_allclose(cov[0], cov[1], rtol=0, atol=1e-9 * np.abs(cov).max())  # exactly, to rounding
        np.testing.assert_allclose(mean[0] + mean[1], -1.0, rtol=0, atol=1e-9)  # mirrored about 127.5
    mean, std = D.channel_stats(x)
    _, summary = label_information_frames(x, y, 3, mean, std, rng=np.random.default_rng(0), draws=5)
    r = summary.iloc[0]
    assert r.first_order < r.first_order_null_mean
    assert r.second_order < 1e-4 * r.second_order_null_mean  # not 0: the pooled covariance holds the means' split

    def drift(crops: np.ndarray) -> float:  # largest patch pixel mean's distance from 127.5
        return float(np.abs(D.patch_pixel_means(crops, D.POLARITY_KERNELS).mean(axis=0) - 127.5).max())

    # balanced: the positives' patch means sit on 127.5 several times closer than those of as many random crops
    raw = D.make_embedded_dataset(labels="photo", **{**SMALL, "train_per_class": 32, "image_size": 32})
    random_crops = D.polarity_crops(raw.split("train")[0].transpose(0, 2, 3, 1), np.zeros(96, dtype=bool))
    assert drift(np.ascontiguousarray(x[y == 0].transpose(0, 2, 3, 1))) < 0.6 < 1.0 < drift(random_crops)


def test_embedded_defaults():
    ds = D.make_embedded_dataset()
    m = ds.manifest
    assert ds.images.shape == (len(D.EMBEDDED_PHOTOS) * 320, 3, 32, 32)
    assert ds.num_classes == len(D.EMBEDDED_PHOTOS)
    counts = m.groupby(["split", "label"]).size()
    assert set(counts.loc["train"]) == {256} and set(counts.loc["test"]) == {64}
    stds = ds.images.reshape(len(ds.images), -1).std(axis=1)
    assert stds.min() >= 6.0
    assert_split_disjoint(m, 32)


def test_embedded_rejects_flat_crops(monkeypatch):
    rng = np.random.default_rng(0)
    photo = np.full((128, 128, 3), 120, dtype=np.uint8)
    photo[:, 64:] = rng.integers(0, 256, size=(128, 64, 3), dtype=np.uint8)
    monkeypatch.setitem(D._PHOTO_LOADERS, "synthetic", lambda: photo)
    D._cached_photo.cache_clear()
    D._cached_rescaled.cache_clear()
    try:
        ds = D.make_embedded_dataset(
            photos=["synthetic"],
            train_per_class=20,
            test_per_class=10,
            image_size=16,
            scale=1.0,
            test_fraction=0.5,
            min_std=6.0,
        )
        stds = ds.images.reshape(len(ds.images), -1).std(axis=1)
        assert stds.min() >= 6.0
        assert (ds.manifest.col >= 64).all()  # only the textured half survives
        with pytest.raises(DatasetError, match="min_std"):
            D.make_embedded_dataset(photos=["synthetic"], image_size=16, scale=1.0, min_std=200.0)
    finally:
        D._cached_photo.cache_clear()
        D._cached_rescaled.cache_clear()


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"image_size": 4}, "image_size"),
        ({"train_per_class": 0}, "train_per_class"),
        ({"test_per_class": 0}, "test_per_class"),
        ({"test_fraction": 0.0}, "test_fraction"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"scale": 0.0}, "scale"),
        ({"min_std": -1.0}, "min_std"),
        ({"seed": -1}, "seed"),
        ({"labels": "colour"}, "labels"),
        ({"photos": ["astronaut", "lena"]}, "astronaut"),
        ({"photos": ["chelsea"], "scale": 0.1}, "scale"),
        ({"photos": ["chelsea"], "train_per_class": 100_000}, "train_per_class"),
    ],
)
def test_embedded_bad_args(kwargs, option):
    with pytest.raises(DatasetError, match=option):
        D.make_embedded_dataset(**{**SMALL, **kwargs})


# --------------------------------------------------------------------------- CIFAR


def write_cifar(root: Path, variant: str, n_train: int, n_test: int, seed: int = 0):
    """Tiny CIFAR pickles in the real layout; returns (train, test) images and labels.

    The real files are Python 2 pickles whose str keys torchvision loads with
    encoding="latin1" as str; Python 3 str keys load identically.
    """
    rng = np.random.default_rng(seed)
    n_classes = 10 if variant == "cifar10" else 100
    if variant == "cifar10":
        folder, files, label_key = "cifar-10-batches-py", None, "labels"
        meta = ("batches.meta", {"label_names": [f"c{i}" for i in range(10)]})
    else:
        folder, files, label_key = "cifar-100-python", ["train", "test"], "fine_labels"
        meta = (
            "meta",
            {"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": [f"k{i}" for i in range(20)]},
        )
    out = root / folder
    out.mkdir(parents=True)
    sets = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, n_classes, size=n).tolist()
        sets[split] = (images, labels)
    if files is None:  # cifar10: train split over data_batch_1..5
        chunks = np.array_split(np.arange(n_train), 5)
        batches = {f"data_batch_{i + 1}": c for i, c in enumerate(chunks)}
        named = [(name, "train", idx) for name, idx in batches.items()]
        named.append(("test_batch", "test", np.arange(n_test)))
    else:
        named = [("train", "train", np.arange(n_train)), ("test", "test", np.arange(n_test))]
    for name, split, idx in named:
        images, labels = sets[split]
        entry = {
            "batch_label": name,
            "data": images[idx].reshape(len(idx), 3072),
            label_key: [labels[i] for i in idx],
            "filenames": [f"img{i}.png" for i in idx],
        }
        if variant == "cifar100":
            entry["coarse_labels"] = [labels[i] // 5 for i in idx]
        with open(out / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
    with open(out / meta[0], "wb") as f:
        pickle.dump(meta[1], f, protocol=2)
    return sets


def trust_tiny_files(monkeypatch, root: Path, variant: str) -> None:
    """Point torchvision's md5 lists at the tiny files (test only; code path unchanged)."""
    cls = D._cifar_class(variant)
    folder = root / cls.base_folder

    def md5(name: str) -> str:
        return hashlib.md5((folder / name).read_bytes()).hexdigest()

    monkeypatch.setattr(cls, "train_list", [[f, md5(f)] for f, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[f, md5(f)] for f, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(cls.meta["filename"])})


@pytest.mark.parametrize("variant", ["cifar10", "cifar100"])
def test_cifar_roundtrip(tmp_path, monkeypatch, variant):
    sets = write_cifar(tmp_path, variant, n_train=23, n_test=7)
    trust_tiny_files(monkeypatch, tmp_path, variant)
    ds = D.load_cifar(tmp_path, variant=variant)
    assert ds.images.shape == (30, 3, 32, 32) and ds.images.flags.c_contiguous
    for split in ("train", "test"):
        x, y = ds.split(split)
        np.testing.assert_array_equal(x, sets[split][0])
        np.testing.assert_array_equal(y, sets[split][1])
    # The (3072,) row is the R plane, then G, then B, each 32x32 row-major.
    raw = sets["train"][0][0].reshape(3072)
    np.testing.assert_array_equal(ds.images[0, 1].ravel(), raw[1024:2048])
    n_classes = 10 if variant == "cifar10" else 100
    assert ds.num_classes == n_classes
    prefix = "c" if variant == "cifar10" else "f"
    assert (ds.manifest.class_name == prefix + ds.manifest.label.astype(str)).all()
    assert (ds.manifest.source == variant).all()

    small = D.prepare_dataset({"source": variant, "root": str(tmp_path), "max_train": 5, "max_test": 100})
    assert small.manifest.split.value_counts().to_dict() == {"train": 5, "test": 7}
    np.testing.assert_array_equal(small.split("train")[0], sets["train"][0][:5])
    assert small.num_classes == n_classes


def test_cifar_md5_mismatch(tmp_path):
    write_cifar(tmp_path, "cifar10", n_train=10, n_test=5)
    with pytest.raises(DatasetError, match="md5"):
        D.load_cifar(tmp_path)


@pytest.mark.parametrize("variant", ["cifar10", "cifar100"])
def test_cifar_missing(tmp_path, variant):
    folder = "cifar-10-batches-py" if variant == "cifar10" else "cifar-100-python"
    with pytest.raises(DatasetError) as err:
        D.load_cifar(tmp_path / "data", variant=variant)
    message = str(err.value)
    assert str(tmp_path / "data") in message and folder in message
    assert "download: true" in message


def test_cifar_bad_args(tmp_path):
    with pytest.raises(DatasetError, match="variant"):
        D.load_cifar(tmp_path, variant="cifar1000")
    with pytest.raises(DatasetError, match="max_train"):
        D.load_cifar(tmp_path, max_train=0)


# -------------------------------------------------------------------- image folder


def write_png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)


def half_red_blue(h: int, w: int) -> np.ndarray:
    image = np.zeros((h, w, 3), dtype=np.uint8)
    image[:, : w // 2, 0] = 255
    image[:, w // 2 :, 2] = 255
    return image


def noise(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_folder_train_val_layout(tmp_path):
    for split, n in (("train", 3), ("val", 2)):
        for c, cls in enumerate(["dog", "cat"]):
            for i in range(n):
                write_png(tmp_path / split / cls / f"{i}.png", noise(20 + i, 30, i + c))
        (tmp_path / split / "cat" / "notes.txt").write_text("not an image")
    Image.fromarray(half_red_blue(40, 60)).save(tmp_path / "train" / "cat" / "x.JPEG", quality=95)
    ds = D.load_image_folder(tmp_path, image_size=16)
    m = ds.manifest
    assert ds.images.shape == (11, 3, 16, 16) and ds.class_names == ("cat", "dog")
    assert m.split.tolist() == ["train"] * 7 + ["test"] * 4
    assert m.label.tolist() == [0, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1]
    assert m.source.tolist()[:4] == ["train/cat/0.png", "train/cat/1.png", "train/cat/2.png", "train/cat/x.JPEG"]
    assert m.source.iloc[-1] == "val/dog/1.png"
    # Left half red, right half blue survive resize (40x60 -> 16x24) + centre crop.
    red_blue = ds.images[3].astype(int)
    assert (red_blue[0, :, :6] > 200).all() and (red_blue[2, :, :6] < 60).all()
    assert (red_blue[2, :, 10:] > 200).all() and (red_blue[0, :, 10:] < 60).all()
    assert (m.orig_height.iloc[3], m.orig_width.iloc[3]) == (40, 60)
    assert m.orig_mode.tolist() == ["RGB"] * 11
    assert m.attrs["skipped_files"] == {
        "count": 2,
        "by_kind": {".txt": 2},
        "files": ["train/cat/notes.txt", "val/cat/notes.txt"],
    }
    capped = D.load_image_folder(tmp_path, image_size=16, max_per_class=1)
    assert capped.manifest.groupby(["split", "label"]).size().tolist() == [1, 1, 1, 1]


def test_image_extensions_follow_pillow():
    readable = D.image_extensions()
    assert {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".pgm", ".ppm"} <= readable
    assert not {".txt", ".csv", ".npy", ".h5", ".pdf", ".mpg", ""} & readable  # identify-only or write-only
    assert all(ext == ext.lower() and ext.startswith(".") for ext in readable)


def test_image_folder_notes():
    manifest = pd.DataFrame({"orig_mode": ["RGB", "RGB"]})
    assert D.image_folder_notes(manifest) == []  # nothing converted, nothing skipped: nothing to say
    manifest.attrs["skipped_files"] = {"count": 0, "by_kind": {}, "files": []}
    assert D.image_folder_notes(manifest) == []
    assert D.image_folder_notes(pd.DataFrame({"label": [0]})) == []  # not an image folder
    manifest = pd.DataFrame({"orig_mode": ["P", "RGB", "P", "I;16"]})
    manifest.attrs["skipped_files"] = {"count": 7, "by_kind": {".txt": 6, "hidden file": 1}, "files": list("abcdefg")}
    assert D.image_folder_notes(manifest) == [
        "images by Pillow mode: 2 P, 1 I;16, 1 RGB; all converted to 8-bit RGB (16-bit grey keeps its high byte, "
        "v >> 8; alpha and transparency are composited on black)",
        "skipped 7 file(s) that are not images Pillow reads in a class folder (6 .txt, 1 hidden file): a, b, c, d, "
        "e, ...; the manifest's metadata lists them (attrs['skipped_files'])",
    ]


def test_folder_resize_centre_crop_portrait(tmp_path):
    image = np.zeros((64, 32, 3), dtype=np.uint8)  # top half green, bottom half white
    image[:32, :, 1] = 255
    image[32:] = 255
    for split in ("train", "test"):
        write_png(tmp_path / split / "a" / "p.png", image)
    ds = D.load_image_folder(tmp_path, image_size=8)
    x = ds.images[0].astype(int)  # 32x64 -> 8x16 -> centre rows 4..11
    assert (x[1, :3] > 200).all() and (x[0, :3] < 60).all()
    assert (x[:, 5:] > 200).all()


def test_folder_seeded_split(tmp_path):
    for c, cls in enumerate(["b", "a", "c"]):
        for i in range(10):
            write_png(tmp_path / cls / f"{i:02d}.png", noise(12, 12, 10 * c + i))
    ds = D.load_image_folder(tmp_path, image_size=8, test_fraction=0.3, seed=1)
    again = D.load_image_folder(tmp_path, image_size=8, test_fraction=0.3, seed=1)
    assert ds.images.tobytes() == again.images.tobytes()
    pd.testing.assert_frame_equal(ds.manifest, again.manifest)
    m = ds.manifest
    assert ds.class_names == ("a", "b", "c")
    assert m.groupby(["split", "label"]).size().to_dict() == {
        ("test", 0): 3,
        ("test", 1): 3,
        ("test", 2): 3,
        ("train", 0): 7,
        ("train", 1): 7,
        ("train", 2): 7,
    }
    assert not set(m.source[m.split == "train"]) & set(m.source[m.split == "test"])
    assert (m.source.str.split("/").str[0] == m.class_name).all()
    others = [D.load_image_folder(tmp_path, image_size=8, test_fraction=0.3, seed=s) for s in (2, 3)]
    tests = {tuple(o.manifest.source[o.manifest.split == "test"]) for o in others}
    assert tuple(m.source[m.split == "test"]) not in tests or len(tests) > 1
    capped = D.load_image_folder(tmp_path, image_size=8, max_per_class=4)
    assert capped.manifest.groupby("label").size().tolist() == [4, 4, 4]


def test_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        D.load_image_folder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no usable images"):
        D.load_image_folder(tmp_path / "empty")
    (tmp_path / "one" / "a").mkdir(parents=True)
    write_png(tmp_path / "one" / "a" / "x.png", noise(8, 8, 0))
    with pytest.raises(DatasetError, match="fewer than 2"):
        D.load_image_folder(tmp_path / "one")
    write_png(tmp_path / "tv" / "train" / "a" / "x.png", noise(8, 8, 0))
    write_png(tmp_path / "tv" / "val" / "b" / "x.png", noise(8, 8, 0))
    with pytest.raises(DatasetError, match="same class"):
        D.load_image_folder(tmp_path / "tv")
    (tmp_path / "bad" / "a").mkdir(parents=True)
    for i in range(2):
        (tmp_path / "bad" / "a" / f"{i}.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="cannot read"):
        D.load_image_folder(tmp_path / "bad")


# ------------------------------------------------------------------ dispatch, stats


def test_prepare_dataset_dispatch():
    spec = {"source": "embedded", "labels": "rotation", **SMALL}
    a = D.prepare_dataset(spec)
    b = D.make_embedded_dataset(labels="rotation", **SMALL)
    assert a.images.tobytes() == b.images.tobytes()
    with pytest.raises(DatasetError, match="embedded"):
        D.prepare_dataset({"source": "imagenet"})
    with pytest.raises(DatasetError, match="imge_size"):
        D.prepare_dataset({"source": "embedded", "imge_size": 8})
    with pytest.raises(DatasetError, match="root"):
        D.prepare_dataset({"source": "folder"})


def test_split_unknown_name():
    ds = D.make_embedded_dataset(**{**SMALL, "photos": ["chelsea"]})
    with pytest.raises(DatasetError, match="train"):
        ds.split("validation")


def test_channel_stats_exact():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(37, 3, 9, 11), dtype=np.uint8)
    images[:, 2] //= 4  # distinct channel statistics
    mean, std = D.channel_stats(images, chunk_bytes=5 * images[0].nbytes)  # several blocks, the last one short
    assert [v.tolist() for v in D.channel_stats(images)] == [mean.tolist(), std.tolist()]  # blocks change no bit
    x = images.astype(np.float64) / 255.0
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), rtol=1e-13, atol=0)
    np.testing.assert_allclose(std, x.std(axis=(0, 2, 3)), rtol=1e-12, atol=0)
    assert mean.dtype == np.float64 and std.shape == (3,)
    constant = np.full((4, 3, 2, 2), 7, dtype=np.uint8)
    np.testing.assert_array_equal(D.channel_stats(constant)[1], 0.0)
    with pytest.raises(DatasetError):
        D.channel_stats(images.astype(np.float32))


def test_one_normalisation_for_training_and_the_patch_pca():
    """The dataset_normalisation job's table (read by the patch PCA) holds exactly what training computes:
    channel_stats of the training split."""
    dataset = D.make_embedded_dataset(**SMALL)
    x_train, _ = dataset.split("train")
    table = D.normalisation_frame(x_train, "small")
    assert table.channel.tolist() == [0, 1, 2] and (table.images == len(x_train)).all()
    mean, std = D.normalisation_values(table.sample(frac=1.0, random_state=0))  # row order does not matter
    train_mean, train_std = D.channel_stats(x_train)
    np.testing.assert_array_equal(mean, train_mean)
    np.testing.assert_array_equal(std, train_std)
    with pytest.raises(DatasetError, match="one row per channel"):
        D.normalisation_values(table.iloc[1:])
