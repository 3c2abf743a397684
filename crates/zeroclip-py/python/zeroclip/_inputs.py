"""Telling inputs apart: a path, an encoded file's bytes, or a Pillow image, turned into what the
native module runs. Pillow is imported only when a Pillow image is handed over.

A Pillow image in a mode the native preprocessing takes (``RAW_MODES``) goes over as its mode, size
and ``tobytes()``; in any other mode (``I``, ``F``, ``RGBX``, ``YCbCr``, ...) Pillow itself resizes,
crops and converts it, exactly the reference's steps, and only the normalization is ours.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Tuple

import numpy as np

from . import _native

Source = Tuple[Any, ...]


def is_pil_image(obj: object) -> bool:
    """Whether ``obj`` is a ``PIL.Image.Image``, without importing Pillow."""
    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(obj, pil.Image)


def describe(obj: object, index: int) -> str:
    """How results and errors name an input."""
    if isinstance(obj, (str, os.PathLike)):
        path = os.fspath(obj)
        return path if isinstance(path, str) else os.fsdecode(path)
    if is_pil_image(obj):
        name = getattr(obj, "filename", "") or ""
        return name if name else f"<PIL image {index}>"
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return f"<bytes {index}>"
    return f"<{type(obj).__name__} {index}>"


def pil_source(pre: "_native.Preprocess", image: Any, name: str) -> Source:
    """A Pillow image as a native source."""
    # Loading can change the image: Pillow's TIFF plugin applies the orientation tag on load.
    image.load()
    mode = image.mode
    width, height = image.size
    if mode in _native.RAW_MODES:
        palette = None
        if mode == "P":
            palette = bytes(image.getpalette("RGB") or [])
        return ("raw", name, mode, width, height, image.tobytes(), palette)
    from PIL import Image

    n = pre.resolution
    tw, th, left, top = pre.crop_geometry(width, height, name)
    resized = image if (tw, th) == (width, height) else image.resize((tw, th), Image.BICUBIC)
    crop = resized.crop((left, top, left + n, top + n)).convert("RGB")
    pixels = pre.normalize(np.ascontiguousarray(np.asarray(crop, dtype=np.uint8)))
    return ("pixels", np.ascontiguousarray(pixels.reshape(-1)))


def to_source(pre: "_native.Preprocess", obj: object, index: int, name: str | None = None) -> Source:
    """One user input as a native source (``name``, if given, names it in errors); an input of
    no known kind becomes a failed source, so a batch still reports it in place."""
    name = describe(obj, index) if name is None else name
    if isinstance(obj, (str, os.PathLike)):
        return ("path", os.fspath(obj))
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return ("bytes", bytes(obj), name)
    if is_pil_image(obj):
        try:
            return pil_source(pre, obj, name)
        except Exception as e:  # a Pillow error on one image must not end the batch
            return ("failed", f"{name}: {e}")
    return (
        "failed",
        f"{name}: expected a path, the bytes of an image file, or a PIL image; "
        f"got {type(obj).__name__}",
    )
