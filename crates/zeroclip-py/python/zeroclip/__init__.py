"""zeroclip: OpenAI CLIP zero-shot image classification, in Rust, from Python.

The reference's API with numpy instead of torch — change one import::

    import numpy as np
    from PIL import Image
    import zeroclip as clip

    model, preprocess = clip.load("ViT-B/32")
    image = preprocess(Image.open("CLIP.png"))[None]
    text = clip.tokenize(["a diagram", "a dog", "a cat"])
    logits_per_image, logits_per_text = model(image, text)

For many images, :class:`Classifier`; on a Ray cluster, :class:`zeroclip.ray.Predictor`.
All work runs in the library's threads (:func:`set_num_threads`) with the GIL released.
"""

from __future__ import annotations

from . import _native
from ._classifier import Classifier
from ._errors import (
    ImageDecodeError,
    InvalidInputError,
    ModelLoadError,
    TokenizeError,
    ZeroclipError,
)
from ._model import CLIP, LogitScale, Preprocess, available_models, load, tokenize

__version__: str = _native.__version__

__all__ = [
    "available_models",
    "load",
    "tokenize",
    "CLIP",
    "Preprocess",
    "LogitScale",
    "Classifier",
    "set_num_threads",
    "get_num_threads",
    "ZeroclipError",
    "ModelLoadError",
    "ImageDecodeError",
    "TokenizeError",
    "InvalidInputError",
]


def set_num_threads(n: int) -> None:
    """Sets how many threads decode images and run the model (default: one per core).

    Takes effect for the calls that follow. A process forked after using zeroclip
    (``multiprocessing``, Ray workers) starts its own threads on first use.
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise InvalidInputError(f"number of threads must be an int, got {n!r}")
    if not 1 <= n <= _native.MAX_THREADS:
        raise InvalidInputError(
            f"number of threads must be between 1 and {_native.MAX_THREADS}, got {n}"
        )
    _native.set_num_threads(n)


def get_num_threads() -> int:
    """How many threads zeroclip works with."""
    return _native.get_num_threads()
