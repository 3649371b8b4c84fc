"""Fault suite, image folders: odd image files are read exactly, refused by name, or listed as skipped."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from firstlayer.datasets import DatasetError, image_folder_notes, load_image_folder
from firstlayer.io import load_dataset, save_dataset

SIDE = 8  # images are written SIDE x SIDE and loaded at image_size=SIDE: Pillow's resize is then the identity


def png_bytes(pixels: np.ndarray, bit_depth: int = 8, width: int | None = None, height: int | None = None) -> bytes:
    """(H, W[, C]) samples -> a PNG file written by hand (Pillow cannot write 48-bit RGB or a bomb)."""
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels
    h, w, c = pixels.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    dtype = ">u2" if bit_depth == 16 else "u1"
    raw = b"".join(b"\0" + row.astype(dtype).tobytes() for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width or w, height or h, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def plain(path: Path, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((SIDE, SIDE, 3), value, dtype=np.uint8)).save(path)


def load_one(root: Path, name: str, write: Callable[[Path], None]) -> tuple[np.ndarray, pd.DataFrame]:
    """Write one file as the first training image of a two-class train/val folder -> its (H, W, 3) uint8 pixels."""
    (root / "train" / "a").mkdir(parents=True, exist_ok=True)
    write(root / "train" / "a" / name)
    for split in ("train", "val"):
        plain(root / split / "b" / "x.png", 200)
    plain(root / "val" / "a" / "x.png", 100)
    dataset = load_image_folder(root, image_size=SIDE)
    assert dataset.manifest.source.iloc[0] == f"train/a/{name}"
    return dataset.images[0].transpose(1, 2, 0), dataset.manifest


def refusal(root: Path, name: str, write: Callable[[Path], None]) -> str:
    with pytest.raises(DatasetError) as err:
        load_one(root, name, write)
    return str(err.value)


GREY16 = np.random.default_rng(0).integers(0, 65536, (SIDE, SIDE), dtype=np.uint16)
RGB16 = np.random.default_rng(1).integers(0, 65536, (SIDE, SIDE, 3), dtype=np.uint16)
RGB8 = np.random.default_rng(2).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)


# ------------------------------------------------------------------ high bit depth


def write_pgm16(path: Path) -> None:
    path.write_bytes(b"P5 %d %d 65535\n" % (SIDE, SIDE) + GREY16.astype(">u2").tobytes())


@pytest.mark.parametrize(
    ("name", "write", "mode"),
    [
        ("grey16.png", lambda p: Image.fromarray(GREY16).save(p), "I;16"),
        ("grey16.tif", lambda p: tifffile.imwrite(p, GREY16), "I;16"),
        ("grey16_big_endian.tif", lambda p: tifffile.imwrite(p, GREY16, byteorder=">"), "I;16B"),
        ("grey16.pgm", write_pgm16, "I"),
    ],
)
def test_16bit_grey_keeps_the_high_byte(tmp_path, name, write, mode):
    pixels, manifest = load_one(tmp_path, name, write)
    expected = (GREY16 >> 8).astype(np.uint8)
    np.testing.assert_array_equal(pixels, np.repeat(expected[..., None], 3, axis=2))
    assert manifest.orig_mode.iloc[0] == mode
    assert image_folder_notes(manifest)[0].startswith(
        f"images by Pillow mode: 3 RGB, 1 {mode}; all converted to 8-bit RGB"
    )


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("rgb48.png", lambda p: p.write_bytes(png_bytes(RGB16, bit_depth=16))),
        ("rgb48.tif", lambda p: tifffile.imwrite(p, RGB16)),
    ],
)
def test_48bit_rgb_keeps_the_high_byte(tmp_path, name, write):
    pixels, _ = load_one(tmp_path, name, write)
    np.testing.assert_array_equal(pixels, (RGB16 >> 8).astype(np.uint8))


@pytest.mark.parametrize(
    ("name", "array", "kind", "mode"),
    [
        ("float.tif", GREY16.astype(np.float32) / 65535, "floating-point", "F"),
        ("int32.tif", GREY16.astype(np.int32), "32-bit or signed integer", "I"),
        ("signed16.tif", (GREY16 // 2).astype(np.int16), "32-bit or signed integer", "I"),
    ],
)
def test_unscalable_pixels_are_refused(tmp_path, name, array, kind, mode):
    message = refusal(tmp_path, name, lambda p: tifffile.imwrite(p, array))
    assert message == (
        f"image {tmp_path / 'train' / 'a' / name} has {kind} pixels (Pillow mode {mode}, format TIFF), which have "
        f"no fixed range to map to 0..255; save it as an 8- or 16-bit PNG or TIFF, or remove it"
    )


# --------------------------------------------------------------------- formats


def write_animated_gif(path: Path) -> None:
    palette = [0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 12)
    frames = []
    for k in range(2):
        frame = Image.fromarray(((np.arange(SIDE * SIDE).reshape(SIDE, SIDE) + k) % 4).astype(np.uint8), "P")
        frame.putpalette(palette)
        frames.append(frame)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)


def test_every_format_pillow_reads_is_loaded(tmp_path):
    """TIFF, GIF (first frame of an animation), WebP, BMP all load exactly; other files are listed as skipped."""
    writers = {
        "a.tif": lambda p: Image.fromarray(RGB8).save(p),
        "b.tiff": lambda p: Image.fromarray(RGB8).save(p, compression="tiff_lzw"),
        "c.webp": lambda p: Image.fromarray(RGB8).save(p, lossless=True),
        "d.BMP": lambda p: Image.fromarray(RGB8).save(p, format="BMP"),
        "e.gif": write_animated_gif,
    }
    for split in ("train", "val"):
        for cls in ("a", "b"):
            for name, write in writers.items():
                (tmp_path / split / cls).mkdir(parents=True, exist_ok=True)
                write(tmp_path / split / cls / name)
    for other in ("train/a/notes.txt", "train/a/.DS_Store", "train/b/features.h5", "val/a/LICENSE", "train/README"):
        (tmp_path / other).write_text("not an image")
    dataset = load_image_folder(tmp_path, image_size=SIDE)
    manifest = dataset.manifest
    assert manifest.source.tolist()[:5] == ["train/a/a.tif", "train/a/b.tiff", "train/a/c.webp", "train/a/d.BMP",
                                            "train/a/e.gif"]  # fmt: skip
    assert len(manifest) == 20
    for row in range(4):
        np.testing.assert_array_equal(dataset.images[row].transpose(1, 2, 0), RGB8)
    colours = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)
    first_frame = colours[np.arange(SIDE * SIDE).reshape(SIDE, SIDE) % 4]
    np.testing.assert_array_equal(dataset.images[4].transpose(1, 2, 0), first_frame)
    record = {
        "count": 5,
        "by_kind": {".h5": 1, ".txt": 1, "hidden file": 1, "no extension": 1, "outside class folders": 1},
        "files": ["train/README", "train/a/.DS_Store", "train/a/notes.txt", "train/b/features.h5", "val/a/LICENSE"],
    }
    assert manifest.attrs["skipped_files"] == record
    assert image_folder_notes(manifest)[-1] == (
        "skipped 5 file(s) that are not images Pillow reads in a class folder (1 .h5, 1 .txt, 1 hidden file, "
        "1 no extension, 1 outside class folders): train/README, train/a/.DS_Store, train/a/notes.txt, "
        "train/b/features.h5, val/a/LICENSE; the manifest's metadata lists them (attrs['skipped_files'])"
    )
    save_dataset(dataset, tmp_path / "images.npy", tmp_path / "manifest.parquet")  # the list survives on disk
    assert (
        load_dataset(tmp_path / "images.npy", tmp_path / "manifest.parquet").manifest.attrs["skipped_files"] == record
    )


def test_only_unreadable_files_says_what_was_skipped(tmp_path):
    for i in range(2):
        (tmp_path / "a" / f"{i}.heic").parent.mkdir(exist_ok=True)
        (tmp_path / "a" / f"{i}.heic").write_bytes(b"\0" * 16)
    with pytest.raises(DatasetError) as err:
        load_image_folder(tmp_path)
    assert str(err.value) == (
        f"too few images in {tmp_path}: classes ['a'] have fewer than 2 image files; the seeded train/test split "
        f"needs at least 2 per class; expected one sub-folder per class holding image files (any format Pillow "
        f"reads: .png, .jpg, .tif, .gif, .webp, .bmp, ...); skipped 2 file(s) that are not images Pillow reads in "
        f"a class folder (2 .heic): a/0.heic, a/1.heic"
    )


# ------------------------------------------------------------ modes other than RGB


PALETTE = np.random.default_rng(3).integers(0, 256, (256, 3), dtype=np.uint8)
INDEX = np.random.default_rng(4).integers(0, 256, (SIDE, SIDE), dtype=np.uint8)
ALPHA = np.random.default_rng(5).integers(0, 256, (SIDE, SIDE), dtype=np.uint8)
CLEAR = int(INDEX[0, 0])  # the transparent palette index: present in the image


def palette_image(transparent: int | None) -> Image.Image:
    image = Image.fromarray(INDEX, "P")
    image.putpalette(PALETTE.ravel().tolist())
    if transparent is not None:
        image.info["transparency"] = transparent
    return image


def on_black(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return np.round(rgb.astype(np.float64) * alpha[..., None] / 255).astype(np.uint8)


def write_cmyk(path: Path) -> None:
    Image.fromarray(np.concatenate([RGB8, ALPHA[..., None]], axis=2), "CMYK").save(path)


@pytest.mark.parametrize(
    ("name", "write", "expected"),
    [
        ("palette.png", lambda p: palette_image(None).save(p), PALETTE[INDEX]),
        ("palette_transparent.png", lambda p: palette_image(CLEAR).save(p, transparency=CLEAR),
         np.where((INDEX == CLEAR)[..., None], 0, PALETTE[INDEX])),
        ("palette.gif", lambda p: palette_image(CLEAR).save(p, transparency=CLEAR),
         np.where((INDEX == CLEAR)[..., None], 0, PALETTE[INDEX])),
        ("rgba.png", lambda p: Image.fromarray(np.concatenate([RGB8, ALPHA[..., None]], axis=2)).save(p),
         on_black(RGB8, ALPHA)),
        ("la.png", lambda p: Image.fromarray(np.stack([INDEX, ALPHA], axis=2)).save(p),
         on_black(np.repeat(INDEX[..., None], 3, axis=2), ALPHA)),
        ("cmyk.tif", write_cmyk,  # Pillow's CMYK -> RGB: (255 - C) * (255 - K) / 255, rounded
         on_black(255 - RGB8, 255 - ALPHA)),
    ],
)  # fmt: skip
def test_modes_convert_to_rgb_exactly(tmp_path, name, write, expected):
    """Palettes expand, transparency and alpha are composited on black (docs/configuration.md, Image folders)."""
    pixels, _ = load_one(tmp_path, name, write)
    np.testing.assert_array_equal(pixels, expected)


# --------------------------------------------------- bombs and damaged files


def write_bomb(path: Path) -> None:
    """A real decompression bomb: a 20000 x 20000 1-bit PNG (400 Mpx) of zeros, about 50 kB on disk."""
    side = 20_000
    row = b"\0" * (1 + side // 8)
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def test_decompression_bomb_is_named(tmp_path):
    message = refusal(tmp_path, "bomb.png", write_bomb)
    path = tmp_path / "train" / "a" / "bomb.png"
    assert message.startswith(f"image {path} is larger than Pillow's safety limit against decompression bombs (")
    assert "400000000 pixels" in message  # Pillow's own words, with the image's size and its limit
    assert message.endswith(f"); resize it below {Image.MAX_IMAGE_PIXELS:,} pixels or remove it")


def test_decompression_bomb_warning_is_an_error(tmp_path, monkeypatch):
    """Between Pillow's limit and twice it Pillow only warns; the image is refused all the same."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", SIDE * SIDE - 1)
    message = refusal(tmp_path, "big.png", lambda p: Image.fromarray(RGB8).save(p))
    assert message.startswith(f"image {tmp_path / 'train' / 'a' / 'big.png'} is larger than Pillow's safety limit")
    assert message.endswith(f"resize it below {SIDE * SIDE - 1:,} pixels or remove it")


def truncated_png(path: Path) -> None:
    Image.fromarray(RGB8).save(path)
    path.write_bytes(path.read_bytes()[:-40])


@pytest.mark.parametrize(
    ("name", "write", "reason"),
    [
        ("garbage.png", lambda p: p.write_bytes(b"not a png"), "cannot identify image file"),
        ("empty.jpg", lambda p: p.write_bytes(b""), "cannot identify image file"),
        ("truncated.png", truncated_png, "image file is truncated"),
    ],
)
def test_damaged_image_is_named(tmp_path, name, write, reason):
    message = refusal(tmp_path, name, write)
    path = tmp_path / "train" / "a" / name
    assert message.startswith(f"cannot read image {path}: ") and reason in message, message
    assert message.endswith("; remove or replace it")
