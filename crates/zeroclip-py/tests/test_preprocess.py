"""`preprocess` against the reference's uint8 crops committed in tests/fixtures/image (made by
scripts/make_image_fixtures.py with Pillow + torchvision): from a path, from bytes, and from a
PIL image in whatever mode Pillow opens it."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

import zeroclip
from conftest import FIXTURES, MODELS

IMAGES = FIXTURES / "image"
MANIFEST = json.loads((IMAGES / "manifest.json").read_text())

Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def preprocess_224():
    return zeroclip.Preprocess.openai(224)


def test_a_model_brings_its_preprocessing():
    model, pre = zeroclip.load(str(MODELS / "vit_zip.pt"))
    assert pre.resolution == model.visual.input_resolution == 32
    assert pre.mean == zeroclip.Preprocess.openai(32).mean


def normalized(crop: np.ndarray, pre) -> np.ndarray:
    """ToTensor + Normalize on a uint8 [n, n, 3] crop, in float32 as torchvision computes it."""
    x = crop.astype(np.float32) / np.float32(255)
    mean = np.array(pre.mean, dtype=np.float32)[:, None, None]
    std = np.array(pre.std, dtype=np.float32)[:, None, None]
    return (x.transpose(2, 0, 1) - mean) / std


def cases():
    for fx in MANIFEST["fixtures"]:
        if fx.get("expected", "").endswith(".png") and not fx.get("exif_transpose") and "error" not in fx:
            yield fx


def expected_crop(fx) -> np.ndarray:
    with Image.open(IMAGES / "expected" / fx["expected"]) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


@pytest.mark.parametrize("fx", list(cases()), ids=lambda fx: fx["input"])
def test_pil_images_in_every_mode_match_the_reference(fx):
    pre = zeroclip.Preprocess.openai(fx["resolution"])
    n = fx["resolution"]
    path = IMAGES / "inputs" / fx["input"]
    want = normalized(expected_crop(fx), pre)
    # As scripts/make_image_fixtures.py opens them: from memory. (Opened from a path, Pillow's TIFF
    # plugin turns an oriented TIFF on load, after which the reference's Resize fails.)
    with Image.open(io.BytesIO(path.read_bytes())) as im:
        assert im.mode == fx["mode"], "Pillow opens the fixture in the recorded mode"
        got = pre(im)
    assert got.dtype == np.float32 and got.shape == (3, n, n)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("fx", list(cases())[:12], ids=lambda fx: fx["input"])
def test_paths_and_bytes_match_the_reference(fx):
    pre = zeroclip.Preprocess.openai(fx["resolution"])
    path = IMAGES / "inputs" / fx["input"]
    want = normalized(expected_crop(fx), pre)
    np.testing.assert_array_equal(pre(str(path)), want)
    np.testing.assert_array_equal(pre(path), want)
    np.testing.assert_array_equal(pre(path.read_bytes()), want)


@pytest.mark.parametrize("mode", ["I", "F", "RGBX", "YCbCr", "HSV", "LAB", "I;16B", "PA", "La", "RGBa"])
def test_modes_without_a_native_path_follow_pillow(mode, preprocess_224):
    """Modes the native path does not take are resized by Pillow itself, as the reference does."""
    with Image.open(IMAGES / "inputs" / "photo_camera.png") as im:
        base = im.convert("RGB").resize((300, 250))
    try:
        img = base.convert(mode)
    except ValueError:
        pytest.skip(f"Pillow cannot convert to {mode}")
    n = 224
    tw, th = int(n * 300 / 250), n  # torchvision's Resize(n): the short side becomes n
    ref = img.resize((tw, th), Image.BICUBIC) if mode not in ("P", "1") else img
    left, top = round((tw - n) / 2.0), round((th - n) / 2.0)
    try:
        crop = ref.crop((left, top, left + n, top + n)).convert("RGB")
    except ValueError:
        pytest.skip(f"Pillow cannot convert {mode} to RGB")
    want = normalized(np.asarray(crop, dtype=np.uint8), preprocess_224)
    np.testing.assert_array_equal(preprocess_224(img), want)


def test_errors_name_the_input(tmp_path, preprocess_224):
    with pytest.raises(FileNotFoundError) as info:
        preprocess_224(tmp_path / "missing.png")
    assert "missing.png" in str(info.value)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(zeroclip.ImageDecodeError, match="bad.png"):
        preprocess_224(bad)
    with pytest.raises(zeroclip.ImageDecodeError):
        preprocess_224(b"hello")
    with pytest.raises(TypeError, match="PIL image, a path or the bytes"):
        preprocess_224(3.5)
    unreadable = tmp_path / "unreadable.png"
    unreadable.write_bytes((IMAGES / "inputs" / "gray8.png").read_bytes())
    unreadable.chmod(0)
    import os

    if os.geteuid() != 0:  # root reads anything
        with pytest.raises(PermissionError):
            preprocess_224(unreadable)


def test_zero_size_pil_image(preprocess_224):
    with pytest.raises(zeroclip.ImageDecodeError, match="zero size"):
        preprocess_224(Image.new("RGB", (0, 5)))
