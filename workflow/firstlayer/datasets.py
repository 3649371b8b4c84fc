"""Datasets as one uint8 array plus a tidy manifest: embedded photos, CIFAR, image folders.

Every loader returns a :class:`PreparedDataset`: ``images`` (N, 3, H, W) uint8 with the
train rows first, and a manifest with one row per image. Nothing here downloads unless a
caller asks for it (``download=True`` for CIFAR); the embedded photos ship inside the
scikit-image and scikit-learn wheels, so the default experiment runs offline.
"""

from __future__ import annotations

import inspect
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = [
    "EMBEDDED_LABELS",
    "EMBEDDED_PHOTOS",
    "EMBEDDED_PRESETS",
    "POLARITY_CLASSES",
    "POLARITY_KERNELS",
    "ROTATION_CLASSES",
    "DatasetError",
    "PreparedDataset",
    "channel_stats",
    "embedded_preset",
    "image_extensions",
    "image_folder_notes",
    "load_cifar",
    "load_image_folder",
    "load_photo",
    "make_embedded_dataset",
    "neutral_colour",
    "normalisation_frame",
    "normalisation_values",
    "patch_pixel_means",
    "polarity_crops",
    "prepare_dataset",
    "rescale_photo",
    "shard_bounds",
]


class DatasetError(ValueError):
    """A dataset cannot be built from the given config, paths or files."""


SPLITS = ("train", "test")
ROTATION_CLASSES = ("0°", "90°", "180°", "270°")
POLARITY_CLASSES = ("positive", "negative")


@dataclass(frozen=True)
class PreparedDataset:
    """(N, 3, H, W) uint8 images, train rows then test rows, and their manifest."""

    images: np.ndarray
    manifest: pd.DataFrame
    # The full class list; labels alone undercount it when a subset misses a class.
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be (N, 3, H, W) uint8, got {self.images.dtype} {self.images.shape}")
        if self.images.shape[1] != 3 or not self.images.flags.c_contiguous:
            raise ValueError(f"images must be C-contiguous with 3 channels, got {self.images.shape}")
        if len(self.manifest) != len(self.images):
            raise ValueError(f"manifest has {len(self.manifest)} rows for {len(self.images)} images")

    @property
    def num_classes(self) -> int:
        """Number of classes: len(class_names), else max label + 1."""
        if self.class_names is not None:
            return len(self.class_names)
        return int(self.manifest["label"].max()) + 1 if len(self.manifest) else 0

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Split name -> ((n, 3, H, W) uint8 images, (n,) int64 labels)."""
        if name not in SPLITS:
            raise DatasetError(f"unknown split {name!r}; use one of {list(SPLITS)}")
        rows = np.flatnonzero(self.manifest["split"].to_numpy() == name)
        labels = self.manifest["label"].to_numpy(dtype=np.int64)[rows]
        if len(rows) and rows[-1] - rows[0] + 1 == len(rows):  # contiguous: a view
            return self.images[rows[0] : rows[-1] + 1], labels
        return self.images[rows], labels


def _finish(
    images: Sequence[np.ndarray],
    columns: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
) -> PreparedDataset:
    """Per-split (n, 3, H, W) images + manifest columns -> PreparedDataset."""
    frames = [pd.DataFrame(dict(cols)) for cols in columns]
    manifest = pd.concat(frames, ignore_index=True)
    manifest.insert(0, "index", np.arange(len(manifest), dtype=np.int64))
    manifest["label"] = manifest["label"].astype(np.int64)
    names = np.asarray(class_names, dtype=object)
    manifest.insert(3, "class_name", names[manifest["label"].to_numpy()].astype(str))
    stacked = np.ascontiguousarray(np.concatenate(images, axis=0), dtype=np.uint8)
    return PreparedDataset(stacked, manifest, tuple(str(c) for c in class_names))


# --------------------------------------------------------------------------- photos


def _skimage_photo(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        image = getattr(skimage.data, name)()
        return image[0] if isinstance(image, tuple) else image  # stereo pair: left

    return load


def _sklearn_photo(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(filename)

    return load


# Colour photographs whose files ship in the wheels (checked offline, no pooch);
# sizes (H, W): astronaut 512x512, chelsea 300x451, coffee 400x600, rocket 427x640,
# hubble_deep_field 872x1000, immunohistochemistry 512x512, retina 1411x1411,
# motorcycle 500x741, china 427x640, flower 427x640.
_PHOTO_LOADERS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage_photo("astronaut"),
    "chelsea": _skimage_photo("chelsea"),
    "coffee": _skimage_photo("coffee"),
    "rocket": _skimage_photo("rocket"),
    "hubble_deep_field": _skimage_photo("hubble_deep_field"),
    "immunohistochemistry": _skimage_photo("immunohistochemistry"),
    "retina": _skimage_photo("retina"),
    "motorcycle": _skimage_photo("stereo_motorcycle"),
    "china": _sklearn_photo("china.jpg"),
    "flower": _sklearn_photo("flower.jpg"),
}
EMBEDDED_PHOTOS: tuple[str, ...] = tuple(_PHOTO_LOADERS)


def _check_photo_names(photos: Sequence[str] | None) -> tuple[str, ...]:
    """Photo names (None = all) -> validated tuple, in the given order."""
    if photos is None:
        return EMBEDDED_PHOTOS
    if isinstance(photos, str):
        photos = [photos]
    names = tuple(photos)
    unknown = [p for p in names if p not in _PHOTO_LOADERS]
    if unknown:
        raise DatasetError(f"unknown photos {unknown} in `photos`; allowed names: {list(EMBEDDED_PHOTOS)}")
    if not names or len(set(names)) != len(names):
        raise DatasetError(f"`photos` must list distinct photo names, got {list(names)}")
    return names


@lru_cache(maxsize=16)
def _cached_photo(name: str) -> np.ndarray:
    image = np.ascontiguousarray(_PHOTO_LOADERS[name](), dtype=np.uint8)
    image.setflags(write=False)
    return image


def load_photo(name: str) -> np.ndarray:
    """Embedded photo name -> (H, W, 3) uint8 RGB image (a fresh copy)."""
    (name,) = _check_photo_names([name])
    return _cached_photo(name).copy()


def rescale_photo(photo: np.ndarray, scale: float) -> np.ndarray:
    """(H, W, 3) uint8 -> (round(H*scale), round(W*scale), 3) uint8, anti-aliased."""
    if scale == 1.0:
        return np.array(photo, dtype=np.uint8, copy=True)
    from skimage.transform import rescale

    out = rescale(photo, scale, order=1, anti_aliasing=True, channel_axis=-1, preserve_range=True)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


@lru_cache(maxsize=32)
def _cached_rescaled(name: str, scale: float) -> np.ndarray:
    image = rescale_photo(_cached_photo(name), scale)
    image.setflags(write=False)
    return image


# ------------------------------------------------------------------ embedded dataset


def _photo_rng(seed: int, name: str, stream: int) -> np.random.Generator:
    """A generator keyed by (seed, photo, stream): a photo's draws ignore the others."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), stream])


def _tile_grid(
    shape: tuple[int, ...],
    tile: int,
    test_fraction: float,
    rng: np.random.Generator,
    name: str,
    scale: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) photo -> (n_tiles, 2) tile top-left corners and (n_tiles,) is-test mask."""
    n_rows, n_cols = shape[0] // tile, shape[1] // tile
    n_tiles = n_rows * n_cols
    if n_tiles < 2:
        raise DatasetError(
            f"photo {name!r} rescaled by scale={scale} is {shape[0]}x{shape[1]} px and "
            f"holds {n_tiles} tile(s) of {tile} px (2*image_size); at least 2 are needed "
            f"(one train, one test): increase `scale`, decrease `image_size`, or drop "
            f"it from `photos`"
        )
    corners = np.stack(np.divmod(np.arange(n_tiles), n_cols), axis=1) * tile
    n_test = min(max(round(test_fraction * n_tiles), 1), n_tiles - 1)
    is_test = np.zeros(n_tiles, dtype=bool)
    is_test[rng.permutation(n_tiles)[:n_test]] = True
    return corners, is_test


def _sample_crops(
    photo: np.ndarray,
    corners: np.ndarray,
    tile_ids: np.ndarray,
    count: int,
    size: int,
    tile: int,
    min_std: float,
    rng: np.random.Generator,
    where: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draw `count` distinct crops inside the given tiles with std >= min_std.

    -> (count, size, size, 3) uint8 crops, (count,) rows, cols, tile ids.
    """
    positions = len(tile_ids) * (tile - size + 1) ** 2
    if count > positions:
        raise DatasetError(
            f"{where} hold only {positions} distinct crop positions but {count} crops "
            f"were asked for: lower `train_per_class`/`test_per_class`, raise `scale`, "
            f"or change `test_fraction`"
        )
    offsets = np.arange(size)
    seen: set[tuple[int, int]] = set()
    kept: list[tuple[int, int, int]] = []
    crops: list[np.ndarray] = []
    budget = 20 * count + 1000  # bounded retries: candidates drawn in all
    while len(kept) < count and budget > 0:
        m = min(max(2 * (count - len(kept)), 64), budget)
        budget -= m
        tiles = tile_ids[rng.integers(len(tile_ids), size=m)]
        rows = corners[tiles, 0] + rng.integers(tile - size + 1, size=m)
        cols = corners[tiles, 1] + rng.integers(tile - size + 1, size=m)
        batch = photo[
            (rows[:, None] + offsets)[:, :, None], (cols[:, None] + offsets)[:, None, :]
        ]  # (m, size, size, 3)
        stds = batch.reshape(m, -1).std(axis=1, dtype=np.float64)
        for i in range(m):
            key = (int(rows[i]), int(cols[i]))
            if stds[i] < min_std or key in seen:
                continue
            seen.add(key)
            kept.append((key[0], key[1], int(tiles[i])))
            crops.append(batch[i])
            if len(kept) == count:
                break
    if len(kept) < count:
        raise DatasetError(
            f"found only {len(kept)} of {count} distinct crops with pixel std >= "
            f"min_std={min_std} in {where}: lower `min_std`, ask for fewer crops "
            f"(`train_per_class`/`test_per_class`), raise `scale`, or drop the photo "
            f"from `photos`"
        )
    info = np.asarray(kept, dtype=np.int64)
    return np.stack(crops), info[:, 0], info[:, 1], info[:, 2]


def _even_counts(total: int, parts: int) -> list[int]:
    """Split `total` into `parts` near-equal counts, the larger ones first."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DatasetError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_fraction(name: str, value: Any) -> float:
    if not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise DatasetError(f"`{name}` must be a number strictly between 0 and 1, got {value!r}")
    return float(value)


#: Labellings of the embedded crops (``labels`` of ``make_embedded_dataset``).
EMBEDDED_LABELS = ("photo", "rotation", "texture", "polarity")


def neutral_colour(crops: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(n, h, w, 3) uint8 crops -> crops with their channels in a seeded random order, each channel shifted to mean
    128 (rounded, clipped to 0..255), and (n, 3) the source channel of each output channel."""
    order = rng.permuted(np.tile(np.arange(3), (len(crops), 1)), axis=1)
    permuted = np.take_along_axis(crops, order[:, None, None, :], axis=3)
    shifted = permuted + (128.0 - permuted.mean(axis=(1, 2), keepdims=True, dtype=np.float64))
    return np.clip(np.round(shifted), 0, 255).astype(np.uint8), order


def polarity_crops(crops: np.ndarray, negate: np.ndarray) -> np.ndarray:
    """(n, h, w, 3) uint8 crops, (n,) bool -> each crop centred on 127.5 per channel (contrast reduced only where
    it would leave 0..255; rounded), then inverted (255 - x) where `negate`. Inversion maps every patch p to 255 - p:
    a crop and its negative have the same patch covariance exactly, and patch means mirrored about 127.5."""
    centred = crops - crops.mean(axis=(1, 2), keepdims=True, dtype=np.float64)
    # a common gain per crop, not clipping: clipping would cut the bright tails and move the mean with the skew
    gain = np.minimum(1.0, 127.5 / np.maximum(np.abs(centred).max(axis=(1, 2, 3), keepdims=True), 1e-9))
    out = np.clip(np.floor(centred * gain + 128.0), 0, 255).astype(np.uint8)  # 127.5 + x, rounded half up
    out[negate] = 255 - out[negate]
    return out


def _rotate(crops: np.ndarray, k_rot: np.ndarray) -> np.ndarray:
    """(n, h, w, 3) crops rotated in place by np.rot90(k_rot[i]) each."""
    for k in range(1, 4):
        crops[k_rot == k] = np.rot90(crops[k_rot == k], k, axes=(1, 2))
    return crops


#: Kernel sizes at which ``labels="polarity"`` balances its classes' patch means.
POLARITY_KERNELS = (3, 5, 7)


def patch_pixel_means(crops: np.ndarray, kernel_sizes: Sequence[int]) -> np.ndarray:
    """(n, h, w, c) uint8 -> (n, sum_k k*k*c): for each kernel size k and patch pixel (a, b, channel), the mean of that
    pixel over the crop's stride-1 k x k patches, i.e. of rows a..a+h-k, columns b..b+w-k."""
    n, h, w, c = crops.shape
    out = np.empty((n, sum(k * k * c for k in kernel_sizes)))
    for start in range(0, n, 1024):  # integral images of 1024 crops at a time
        block = crops[start : start + 1024]
        sums = np.zeros((len(block), h + 1, w + 1, c), dtype=np.int64)
        sums[:, 1:, 1:] = block.cumsum(axis=1, dtype=np.int64).cumsum(axis=2)
        column = 0
        for k in kernel_sizes:
            lh, lw, a, b = h - k + 1, w - k + 1, np.arange(k)[:, None], np.arange(k)[None, :]
            window = sums[:, a + lh, b + lw] - sums[:, a, b + lw] - sums[:, a + lh, b] + sums[:, a, b]  # (m, k, k, c)
            out[start : start + len(block), column : column + k * k * c] = window.reshape(len(block), -1) / (lh * lw)
            column += k * k * c
    return out


def _balanced_polarity(candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(2n, h, w, 3) ``polarity_crops``, in consecutive pairs -> (n,) index of one crop of each pair and (n,) its
    rotation k, chosen greedily so that the running sum of their patch pixel means minus 127.5 stays near zero.

    Crops of one photo overlap and share its gradients, so class means drawn at random differ by far more than
    labels permuted across images would give; balancing keeps the positive class's means at 127.5 to within a few
    crops' worth, and the negatives' are their mirror image."""
    n = len(candidates) // 2
    feats = [patch_pixel_means(np.rot90(candidates, k, axes=(1, 2)), POLARITY_KERNELS) - 127.5 for k in range(4)]
    options = np.stack(feats, axis=1).reshape(n, 8, -1)  # slot j: crops 2j, 2j+1 x rotations 0..3
    total, pick = np.zeros(options.shape[-1]), np.empty(n, dtype=np.int64)
    for j in range(n):
        pick[j] = np.argmin(np.square(total + options[j]).sum(axis=1))
        total += options[j, pick[j]]
    return 2 * np.arange(n) + pick // 4, pick % 4


def _label_crops(
    labels: str, crops: np.ndarray, photo_index: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One split's (n, h, w, 3) crops grouped by photo -> (crops, labels, rotation k, (m, 3) channel order, (m,) the
    input crop of each output crop)."""
    n = len(crops)
    k_rot, channels, source = np.zeros(n, dtype=np.int64), np.tile(np.arange(3), (n, 1)), np.arange(n)
    if labels == "rotation":
        # Crops are grouped by photo in random order: cycling k gives every photo
        # (near-)equal counts of each rotation, and exactly n/4 per rotation overall.
        k_rot = np.arange(n, dtype=np.int64) % 4
        return _rotate(crops, k_rot), k_rot, k_rot, channels, source
    if labels == "polarity":  # the crops are candidate pairs: keep one of each, then add its negative
        kept, k_kept = _balanced_polarity(polarity_crops(crops, np.zeros(n, dtype=bool)))
        source, k_rot = np.tile(kept, 2), np.tile(k_kept, 2)
        label = np.repeat(np.arange(2, dtype=np.int64), len(kept))
        return polarity_crops(_rotate(crops[source], k_rot), label == 1), label, k_rot, channels[source], source
    if labels == "texture":  # colour independent of the label (docs/method.md, A learnable label-neutral dataset)
        crops, channels = neutral_colour(crops, rng)
    return crops, photo_index, k_rot, channels, source


def make_embedded_dataset(
    *,
    labels: str = "photo",
    photos: Sequence[str] | None = None,
    train_per_class: int = 256,
    test_per_class: int = 64,
    image_size: int = 32,
    scale: float = 0.5,
    test_fraction: float = 0.25,
    min_std: float = 6.0,
    seed: int = 0,
) -> PreparedDataset:
    """CIFAR-like (N, 3, image_size, image_size) crops of the embedded photos.

    Each rescaled photo is tiled into squares of side 2*image_size; a seeded draw puts
    ~test_fraction of the tiles in test, and every crop lies inside one tile of its
    split, so no train crop overlaps a test crop. labels="photo": label = photo index.
    labels="rotation": label k = crop rotated by np.rot90(k) (counter-clockwise k*90°),
    drawn evenly across photos, so labels carry no mean-colour information.
    labels="texture": label = photo index, each crop's colour randomised by ``neutral_colour``
    (column ``channels`` of the manifest), so only spatial structure tells the classes apart.
    labels="polarity": train_per_class source crops drawn evenly across photos (each the better of two draws, and
    rotated, by ``_balanced_polarity``), each twice in its split: label 0 = ``polarity_crops`` as is, label 1 = its
    negative, so class patch covariances match exactly, class patch means nearly, and only higher orders (the skew
    of natural images) tell the classes apart.
    """
    if labels not in EMBEDDED_LABELS:
        raise DatasetError(f"`labels` must be one of {list(EMBEDDED_LABELS)}, got {labels!r}")
    names = _check_photo_names(photos)
    counts = {
        "train": _check_int("train_per_class", train_per_class, 1),
        "test": _check_int("test_per_class", test_per_class, 1),
    }
    size = _check_int("image_size", image_size, 8)
    seed = _check_int("seed", seed, 0)
    test_fraction = _check_fraction("test_fraction", test_fraction)
    if not isinstance(scale, (int, float)) or not float(scale) > 0:
        raise DatasetError(f"`scale` must be a number > 0, got {scale!r}")
    if not isinstance(min_std, (int, float)) or not float(min_std) >= 0:
        raise DatasetError(f"`min_std` must be a number >= 0, got {min_std!r}")
    scale, tile = float(scale), 2 * size

    if labels == "rotation":
        class_names: tuple[str, ...] = ROTATION_CLASSES
        per_photo = {s: _even_counts(4 * counts[s], len(names)) for s in SPLITS}
    elif labels == "polarity":
        class_names = POLARITY_CLASSES
        per_photo = {s: [2 * c for c in _even_counts(counts[s], len(names))] for s in SPLITS}  # candidate pairs
    else:
        class_names = names
        per_photo = {s: [counts[s]] * len(names) for s in SPLITS}

    parts: dict[str, list[dict[str, np.ndarray]]] = {s: [] for s in SPLITS}
    for p, name in enumerate(names):
        photo = _cached_rescaled(name, scale)
        corners, is_test = _tile_grid(photo.shape, tile, test_fraction, _photo_rng(seed, name, 0), name, scale)
        crop_rng = _photo_rng(seed, name, 1)
        for split in SPLITS:
            n = per_photo[split][p]
            if n == 0:
                continue
            tile_ids = np.flatnonzero(is_test == (split == "test"))
            crops, rows, cols, tiles = _sample_crops(
                photo,
                corners,
                tile_ids,
                n,
                size,
                tile,
                float(min_std),
                crop_rng,
                where=f"the {split} tiles of photo {name!r}",
            )
            parts[split].append({"crops": crops, "row": rows, "col": cols, "tile": tiles, "photo_index": np.full(n, p)})

    images, columns = [], []
    for s, split in enumerate(SPLITS):
        cat = {k: np.concatenate([d[k] for d in parts[split]]) for k in parts[split][0]}
        crops, label, k_rot, channels, source = _label_crops(
            labels, cat["crops"], cat["photo_index"], np.random.default_rng([seed, 2, s])
        )
        cat, n = {k: v[source] for k, v in cat.items() if k != "crops"}, len(source)
        order = np.random.default_rng([seed, 0, s]).permutation(n)  # shuffle the split
        photo_names = np.asarray(names, dtype=object)[cat["photo_index"]]
        images.append(crops[order].transpose(0, 3, 1, 2))
        columns.append(
            {
                "split": split,
                "label": label[order],
                "source": photo_names[order].astype(str),
                "photo": photo_names[order].astype(str),
                "row": cat["row"][order],
                "col": cat["col"][order],
                "tile": cat["tile"][order],
                "rotation": 90 * k_rot[order],
                "channels": np.asarray(["".join("rgb"[c] for c in o) for o in channels[order]]),
            }
        )
    return _finish(images, columns, class_names)


#: Embedded datasets by name (``embedded:NAME`` in ``firstlayer.analyze`` and ``firstlayer profile``): the default
#: experiment's datasets of the same names (tests/test_profile_api.py holds config.yaml to these values), and
#: `rotations`, the default's label-neutral dataset before `textures` (its labels are not learned by small networks).
EMBEDDED_PRESETS: dict[str, dict[str, Any]] = {
    "photos": {"labels": "photo", "train_per_class": 256, "test_per_class": 64, "seed": 0},
    "textures": {"labels": "texture", "train_per_class": 256, "test_per_class": 64, "seed": 2},
    "polarity": {"labels": "polarity", "train_per_class": 2560, "test_per_class": 640, "seed": 2},
    "rotations": {"labels": "rotation", "train_per_class": 512, "test_per_class": 128, "seed": 1},
}


def embedded_preset(name: str) -> PreparedDataset:
    """The embedded dataset of preset `name` (a key of ``EMBEDDED_PRESETS``)."""
    if name not in EMBEDDED_PRESETS:
        raise DatasetError(f"unknown embedded dataset {name!r}; allowed: {', '.join(EMBEDDED_PRESETS)}")
    return make_embedded_dataset(**EMBEDDED_PRESETS[name])


# -------------------------------------------------------------------------- CIFAR


def _cifar_class(variant: str) -> type:
    from torchvision.datasets import CIFAR10, CIFAR100

    classes = {"cifar10": CIFAR10, "cifar100": CIFAR100}
    if variant not in classes:
        raise DatasetError(f"`variant` must be one of {list(classes)}, got {variant!r}")
    return classes[variant]


def _check_max(name: str, value: Any) -> int | None:
    return None if value is None else _check_int(name, value, 1)


def load_cifar(
    root: str | Path,
    *,
    variant: str = "cifar10",
    download: bool = False,
    max_train: int | None = None,
    max_test: int | None = None,
) -> PreparedDataset:
    """CIFAR-10/100 python-pickle files under root -> (N, 3, 32, 32) PreparedDataset.

    max_train / max_test keep the first n images of each split.
    """
    cls = _cifar_class(variant)
    limits = {"train": _check_max("max_train", max_train), "test": _check_max("max_test", max_test)}
    root = Path(root).expanduser()
    folder = root / cls.base_folder
    expected = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    missing = [f for f in expected if not (folder / f).is_file()]
    if missing and not download:
        raise DatasetError(
            f"{variant} not found: expected {expected} in {folder} (missing "
            f"{missing}). Set `download: true` in this dataset's config to fetch it "
            f"into `root` {root}, or place the extracted files there"
        )
    images, columns = [], []
    for split in SPLITS:
        # torchvision reads the pickles and checks every file's md5 against the
        # published archive; we keep its checks rather than re-implementing the format.
        try:
            data = cls(str(root), train=split == "train", download=download)
        except RuntimeError as err:
            raise DatasetError(
                f"{variant} files in {folder} failed torchvision's md5 integrity check "
                f"({err}); delete them and set `download: true`, or place the original "
                f"files there"
            ) from err
        except OSError as err:  # urllib's URLError: no network, proxy, ...
            raise DatasetError(
                f"downloading {variant} into {root} failed ({err}); place the extracted "
                f"{cls.base_folder}/ folder there by hand and set `download: false`"
            ) from err
        n = len(data.data) if limits[split] is None else min(limits[split], len(data))
        images.append(np.ascontiguousarray(data.data[:n].transpose(0, 3, 1, 2)))
        columns.append({"split": split, "label": np.asarray(data.targets[:n], dtype=np.int64), "source": variant})
    return _finish(images, columns, data.classes)


# -------------------------------------------------------------------- image folder

# Formats Pillow only identifies (stubs wait for an external handler, MPEG has no decoder): never images to us.
_IDENTIFY_ONLY_FORMATS = frozenset({"BUFR", "GRIB", "HDF5", "WMF", "MPEG"})
# Unsigned 16-bit greyscale. Pillow keeps 16-bit PGM (rescaled to 0..65535), and older Pillows 16-bit PNG, in mode I.
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
_SIXTEEN_BIT_IN_I = frozenset({"PPM", "PNG"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_SKIPPED_LISTED = 1000  # skipped paths kept in the manifest's metadata; the counts are always complete


@lru_cache(maxsize=1)
def image_extensions() -> frozenset[str]:
    """Lower-case extensions of every format Pillow can decode, as Pillow registers them (".png", ".tif", ...)."""
    from PIL import Image

    # MPO files open through the JPEG plugin, so MPO has no entry of its own in Image.OPEN.
    return frozenset(
        ext
        for ext, fmt in Image.registered_extensions().items()
        if (fmt in Image.OPEN or fmt == "MPO") and fmt not in _IDENTIFY_ONLY_FORMATS
    )


def _class_files(folder: Path) -> tuple[dict[str, list[Path]], list[tuple[Path, str]]]:
    """Folder with one sub-folder per class -> ({class: sorted image files (recursive)}, [(skipped file, kind)]).

    Image files have an extension in image_extensions() and are not hidden; every other file is skipped, with
    its kind: its extension, "no extension", "hidden file", or "outside class folders" (directly in `folder`).
    """
    readable = image_extensions()
    entries = sorted(folder.iterdir(), key=lambda p: p.name)
    skipped = [(p, "outside class folders") for p in entries if p.is_file()]
    files: dict[str, list[Path]] = {}
    for sub in entries:
        if not sub.is_dir() or sub.name.startswith("."):
            continue
        files[sub.name] = []
        for p in sorted((p for p in sub.rglob("*") if p.is_file()), key=lambda p: p.relative_to(folder).as_posix()):
            if p.name.startswith("."):
                skipped.append((p, "hidden file"))
            elif p.suffix.lower() not in readable:
                skipped.append((p, p.suffix.lower() or "no extension"))
            else:
                files[sub.name].append(p)
    return files, skipped


def _skipped_record(skipped: Sequence[tuple[Path, str]], root: Path) -> dict[str, Any]:
    """[(file, kind)] -> JSON-able {"count", "by_kind": {kind: n}, "files": first paths under root}."""
    by_kind: dict[str, int] = {}
    for _, kind in skipped:
        by_kind[kind] = by_kind.get(kind, 0) + 1
    return {
        "count": len(skipped),
        "by_kind": dict(sorted(by_kind.items(), key=lambda kv: (-kv[1], kv[0]))),
        "files": sorted(p.relative_to(root).as_posix() for p, _ in skipped)[:_SKIPPED_LISTED],
    }


def _describe_skipped(record: Mapping[str, Any]) -> str:
    """Skipped-files record -> one line with counts by kind and the first few paths ("" when none)."""
    if not record["count"]:
        return ""
    kinds = ", ".join(f"{n} {kind}" for kind, n in record["by_kind"].items())
    first = ", ".join(record["files"][:5]) + (", ..." if record["count"] > 5 else "")
    return f"skipped {record['count']} file(s) that are not images Pillow reads in a class folder ({kinds}): {first}"


def image_folder_notes(manifest: pd.DataFrame) -> list[str]:
    """An image folder's manifest -> log lines: the Pillow modes converted to 8-bit RGB, the files skipped."""
    notes = []
    modes = manifest["orig_mode"].value_counts().to_dict() if "orig_mode" in manifest else {}
    if set(modes) - {"RGB"}:
        counts = ", ".join(f"{n} {mode}" for mode, n in sorted(modes.items(), key=lambda kv: (-kv[1], kv[0])))
        notes.append(
            f"images by Pillow mode: {counts}; all converted to 8-bit RGB (16-bit grey keeps its high byte, v >> 8; "
            f"alpha and transparency are composited on black)"
        )
    record = manifest.attrs.get("skipped_files")
    if record and record["count"]:
        notes.append(f"{_describe_skipped(record)}; the manifest's metadata lists them (attrs['skipped_files'])")
    return notes


def _to_rgb(im: PILImage, path: Path) -> PILImage:
    """Decoded Pillow image of any mode -> RGB, 8 bits per channel, by one fixed rule per mode.

    16-bit grey keeps the high byte (v >> 8: one mapping for all images, where scaling by each image's maximum
    would change contrast per image); transparent pixels are composited on black; float and 32-bit pixels are refused.
    """
    from PIL import Image

    if im.mode in _SIXTEEN_BIT_MODES or (im.mode == "I" and im.format in _SIXTEEN_BIT_IN_I):
        return Image.fromarray((np.asarray(im) >> 8).astype(np.uint8)).convert("RGB")
    if im.mode in ("I", "F"):
        kind = "floating-point" if im.mode == "F" else "32-bit or signed integer"
        raise DatasetError(
            f"image {path} has {kind} pixels (Pillow mode {im.mode}, format {im.format}), which have no fixed "
            f"range to map to 0..255; save it as an 8- or 16-bit PNG or TIFF, or remove it"
        )
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        black = Image.new("RGBA", im.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, im.convert("RGBA")).convert("RGB")
    return im.convert("RGB")


def _read_square(path: Path, size: int) -> tuple[np.ndarray, int, int, str]:
    """Image file (first frame) -> (3, size, size) uint8 (shorter side resized, centre-cropped), H, W, Pillow mode."""
    from PIL import Image

    try:
        # Pillow only warns between its limit and twice it; a bomb is a bomb either way.
        with warnings.catch_warnings(action="error", category=Image.DecompressionBombWarning), Image.open(path) as im:
            im.load()  # Pillow opens lazily: decode inside this try, so that a damaged file is named
            mode, rgb = im.mode, _to_rgb(im, path)
    except DatasetError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DatasetError(
            f"image {path} is larger than Pillow's safety limit against decompression bombs ({err}); "
            f"resize it below {Image.MAX_IMAGE_PIXELS:,} pixels or remove it"
        ) from err
    except Exception as err:  # damaged files raise OSError, SyntaxError, ValueError, EOFError, struct.error, ...
        raise DatasetError(f"cannot read image {path}: {err}; remove or replace it") from err
    w, h = rgb.size
    short = min(w, h)
    new_w, new_h = max(size, round(w * size / short)), max(size, round(h * size / short))
    # Pillow's bilinear resize widens its kernel when shrinking, i.e. it anti-aliases.
    resized = rgb.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    square = np.asarray(resized.crop((left, top, left + size, top + size)))
    return np.ascontiguousarray(square.transpose(2, 0, 1)), h, w, mode


def _folder_hint(skipped: Sequence[tuple[Path, str]], root: Path) -> str:
    """The end of an error about missing images: what an image folder should hold, and what was skipped."""
    note = _describe_skipped(_skipped_record(skipped, root))
    return (
        "expected one sub-folder per class holding image files (any format Pillow reads: .png, .jpg, .tif, "
        ".gif, .webp, .bmp, ...)" + (f"; {note}" if note else "")
    )


def _files_from_split_folders(
    root: Path, test_dir: Path, cap: int | None
) -> tuple[dict[str, dict[str, list[Path]]], list[tuple[Path, str]]]:
    """root/train + root/val|test -> ({split: {class: files}}, skipped files)."""
    base = {"train": root / "train", "test": test_dir}
    found = {s: _class_files(base[s]) for s in SPLITS}
    files = {s: {c: fs[:cap] for c, fs in found[s][0].items()} for s in SPLITS}
    skipped = found["train"][1] + found["test"][1]
    if list(files["train"]) != list(files["test"]):
        raise DatasetError(
            f"class folders differ between {base['train']} and {base['test']}: "
            f"{sorted(set(files['train']) ^ set(files['test']))}; both splits need "
            f"the same class sub-folders"
        )
    for split in SPLITS:
        empty = [c for c, fs in files[split].items() if not fs]
        if not files[split] or empty:
            raise DatasetError(f"no images in {base[split]} (empty classes: {empty}); {_folder_hint(skipped, root)}")
    return files, skipped


def _files_split_by_seed(
    root: Path, cap: int | None, test_fraction: float, seed: int
) -> tuple[dict[str, dict[str, list[Path]]], list[tuple[Path, str]]]:
    """root/<class>/ -> ({split: {class: files}} by a seeded per-class permutation, skipped files)."""
    found, skipped = _class_files(root)
    by_class = {c: fs[:cap] for c, fs in found.items()}
    small = [c for c, fs in by_class.items() if len(fs) < 2]
    if not by_class:
        raise DatasetError(
            f"no usable images in {root}: it has no class sub-folders; {_folder_hint(skipped, root)} (or train/ "
            f"and val/ folders of them)"
        )
    if small:
        raise DatasetError(
            f"too few images in {root}: classes {small} have fewer than 2 image files; the seeded train/test "
            f"split needs at least 2 per class; {_folder_hint(skipped, root)}"
        )
    rng = np.random.default_rng(seed)
    files: dict[str, dict[str, list[Path]]] = {s: {} for s in SPLITS}
    for c, fs in by_class.items():
        n_test = min(max(round(test_fraction * len(fs)), 1), len(fs) - 1)
        is_test = np.zeros(len(fs), dtype=bool)
        is_test[rng.permutation(len(fs))[:n_test]] = True
        files["train"][c] = [fs[i] for i in np.flatnonzero(~is_test)]
        files["test"][c] = [fs[i] for i in np.flatnonzero(is_test)]
    return files, skipped


def load_image_folder(
    root: str | Path,
    *,
    image_size: int = 32,
    test_fraction: float = 0.2,
    seed: int = 0,
    max_per_class: int | None = None,
) -> PreparedDataset:
    """Class sub-folders under root -> (N, 3, image_size, image_size) PreparedDataset.

    Uses root/train and root/val (else root/test) as the splits when they exist; otherwise splits each class's
    files by a seeded permutation. max_per_class keeps the first n sorted files of each class (per split with
    train/val folders, before the split otherwise). Reads every format Pillow decodes (an animation's first
    frame, see _to_rgb for modes); the files it skips are counted in the manifest's attrs["skipped_files"].
    """
    size = _check_int("image_size", image_size, 8)
    seed = _check_int("seed", seed, 0)
    test_fraction = _check_fraction("test_fraction", test_fraction)
    cap = _check_max("max_per_class", max_per_class)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(
            f"image folder `root` {root} does not exist; point `root` "
            f"at a folder with one sub-folder of images per class"
        )
    test_dir = next((root / d for d in ("val", "test") if (root / d).is_dir()), None)
    if (root / "train").is_dir() and test_dir is not None:
        files, skipped = _files_from_split_folders(root, test_dir, cap)
    else:
        files, skipped = _files_split_by_seed(root, cap, test_fraction, seed)

    class_names = list(files["train"])
    images, columns = [], []
    for split in SPLITS:
        paths = [(label, f) for label, c in enumerate(class_names) for f in files[split][c]]
        read = [_read_square(f, size) for _, f in paths]
        images.append(np.stack([r[0] for r in read]))
        columns.append(
            {
                "split": split,
                "label": np.asarray([label for label, _ in paths], dtype=np.int64),
                "source": [f.relative_to(root).as_posix() for _, f in paths],
                "orig_height": np.asarray([r[1] for r in read], dtype=np.int64),
                "orig_width": np.asarray([r[2] for r in read], dtype=np.int64),
                "orig_mode": [r[3] for r in read],
            }
        )
    dataset = _finish(images, columns, class_names)
    dataset.manifest.attrs["skipped_files"] = _skipped_record(skipped, root)
    return dataset


# ---------------------------------------------------------------------- dispatch


_LOADERS: dict[str, Callable[..., PreparedDataset]] = {
    "embedded": make_embedded_dataset,
    "cifar10": load_cifar,
    "cifar100": load_cifar,
    "folder": load_image_folder,
}


def prepare_dataset(spec: Mapping[str, Any]) -> PreparedDataset:
    """Config mapping {source: embedded|cifar10|cifar100|folder, **options} -> dataset."""
    options = dict(spec)
    source = options.pop("source", None)
    if source not in _LOADERS:
        raise DatasetError(f"dataset `source` must be one of {list(_LOADERS)}, got {source!r}")
    loader = _LOADERS[source]
    allowed = [p for p in inspect.signature(loader).parameters if p != "variant"]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise DatasetError(f"unknown options {unknown} for dataset source {source!r}; allowed: {allowed}")
    if "root" in allowed and options.get("root") is None:
        raise DatasetError(f"dataset source {source!r} needs `root`: the folder that holds (or will hold) its files")
    if source.startswith("cifar"):
        options["variant"] = source
    return loader(**options)


# ------------------------------------------------------------------- statistics


def channel_stats(images: np.ndarray, *, chunk_bytes: int = 16 << 20) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, H, W) uint8 -> (3,) mean, (3,) std in [0, 1] units, exact float64; read in blocks of about
    `chunk_bytes` of images (their squares take 4x that), so memory does not grow with the number or size of images."""
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) == 0:
        raise DatasetError(
            f"channel_stats needs non-empty (N, C, H, W) uint8 images, got {images.dtype} {images.shape}"
        )
    channels = images.shape[1]
    chunk = max(1, chunk_bytes // max(1, images[0].nbytes))
    s1 = np.zeros(channels, dtype=np.uint64)
    s2 = np.zeros(channels, dtype=np.uint64)
    for start in range(0, len(images), chunk):
        block = images[start : start + chunk]
        s1 += block.sum(axis=(0, 2, 3), dtype=np.uint64)
        s2 += np.square(block, dtype=np.uint32).sum(axis=(0, 2, 3), dtype=np.uint64)
    n = images.shape[0] * images.shape[2] * images.shape[3]
    # Integer sums are exact; the variance numerator n*S2 - S1^2 uses Python ints.
    mean = np.array([int(a) / n for a in s1], dtype=np.float64)
    var = np.array([(n * int(s2[c]) - int(s1[c]) ** 2) / n**2 for c in range(channels)], dtype=np.float64)
    return mean / 255.0, np.sqrt(var) / 255.0


def normalisation_frame(images: np.ndarray, dataset: str) -> pd.DataFrame:
    """A dataset's training images -> its input normalisation (``channel_stats``), one row per channel: the table
    that training and the patch PCA both read."""
    mean, std = channel_stats(images)
    return pd.DataFrame(
        {"dataset": dataset, "channel": np.arange(len(mean)), "mean": mean, "std": std, "images": len(images)}
    )


def normalisation_values(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """A normalisation table -> (C,) mean and (C,) std in [0, 1] units, in channel order."""
    frame = frame.sort_values("channel")
    if frame["channel"].tolist() != list(range(len(frame))):
        raise DatasetError(f"a normalisation table has one row per channel 0, 1, ...; got {frame['channel'].tolist()}")
    return frame["mean"].to_numpy(np.float64), frame["std"].to_numpy(np.float64)


def shard_bounds(n: int, shard_size: int) -> list[tuple[int, int]]:
    """[start, stop) image ranges of consecutive patch-statistics shards of at most `shard_size` images (at least
    one shard): the patch_shard jobs of a dataset."""
    if shard_size < 1:
        raise ValueError(f"shard size must be positive, got {shard_size}")
    return [(start, min(start + shard_size, n)) for start in range(0, n, shard_size)] or [(0, 0)]
