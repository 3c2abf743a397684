"""OpenAI ``clip``'s API with numpy instead of torch: ``load``, ``tokenize``,
``available_models``, the model's ``encode_image`` / ``encode_text`` / ``__call__``, and the
``preprocess`` callable. Names, arguments and shapes are the reference's; values are the Rust
library's, bit for bit.
"""

from __future__ import annotations

import os
from typing import Any, Sequence, Tuple, Union

import numpy as np

from . import _native
from ._errors import InvalidInputError
from ._inputs import describe, is_pil_image, pil_source

__all__ = ["available_models", "load", "tokenize", "CLIP", "Preprocess", "LogitScale"]

PathLike = Union[str, "os.PathLike[str]"]


def available_models() -> list[str]:
    """The names :func:`load` downloads: OpenAI's nine CLIP checkpoints, as
    ``clip.available_models()``."""
    return list(_native.available_models())


def tokenize(
    texts: Union[str, Sequence[str]], context_length: int = 77, truncate: bool = False
) -> np.ndarray:
    """Token ids of ``texts``, as ``clip.tokenize(texts, context_length, truncate).numpy()``.

    Returns an int64 array ``[len(texts), context_length]``: start token, BPE ids, end token,
    zero padding. A ``str`` is one text. A text too long for the context raises
    :class:`zeroclip.TokenizeError` (a ``ValueError``) naming it, unless ``truncate`` is true, when
    it is cut and ends with the end token, as the reference does.
    """
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InvalidInputError(f"texts[{i}] is {type(t).__name__}, expected str")
    if isinstance(context_length, bool) or not isinstance(context_length, int) or context_length < 1:
        raise InvalidInputError(f"context_length must be a positive int, got {context_length!r}")
    return _native.tokenize(texts, context_length, bool(truncate))


class LogitScale(float):
    """The model's ``logit_scale`` parameter: a float holding the log of the scale, as the
    reference's ``model.logit_scale``. ``.exp()`` gives the factor the logits use (as a numpy
    float32, the exact value the library multiplies by) and ``.item()`` the float."""

    _exp: np.float32

    def __new__(cls, value: float, exp: float) -> "LogitScale":
        obj = super().__new__(cls, value)
        obj._exp = np.float32(exp)
        return obj

    def exp(self) -> np.float32:
        """``exp(logit_scale)``."""
        return self._exp

    def item(self) -> float:
        """The value as a plain float, as ``tensor.item()``."""
        return float(self)


class Preprocess:
    """The reference's ``preprocess``: ``Resize(n, BICUBIC)``, ``CenterCrop(n)``, RGB,
    ``ToTensor()``, ``Normalize(mean, std)`` — pixel for pixel as Pillow and torchvision do it.

    Call it on a ``PIL.Image.Image`` (any mode), a path (``str`` or ``os.PathLike``) or the
    ``bytes`` of an encoded image file; it returns float32 ``[3, n, n]``.
    """

    def __init__(self, native: "_native.Preprocess"):
        self._native = native

    @classmethod
    def openai(cls, resolution: int) -> "Preprocess":
        """OpenAI's preprocessing at ``resolution`` (the reference's ``clip.clip._transform(n)``);
        :func:`zeroclip.load` gives each model's own."""
        return cls(_native.Preprocess.openai(int(resolution)))

    @property
    def resolution(self) -> int:
        """The side ``n`` of the output."""
        return self._native.resolution

    @property
    def mean(self) -> Tuple[float, float, float]:
        """Per-channel mean subtracted after scaling to [0, 1]."""
        return tuple(self._native.mean)  # type: ignore[return-value]

    @property
    def std(self) -> Tuple[float, float, float]:
        """Per-channel standard deviation divided by."""
        return tuple(self._native.std)  # type: ignore[return-value]

    def __call__(self, image: Any) -> np.ndarray:
        if isinstance(image, (str, os.PathLike)):
            return self._native.path(os.fspath(image))
        if isinstance(image, (bytes, bytearray, memoryview)):
            return self._native.bytes(bytes(image), "<bytes>")
        if is_pil_image(image):
            source = pil_source(self._native, image, describe(image, 0))
            if source[0] == "raw":
                return self._native.raw(*source[2:], source[1])
            return source[1].reshape(3, self.resolution, self.resolution)
        raise TypeError(
            "preprocess takes a PIL image, a path or the bytes of an image file, "
            f"got {type(image).__name__}"
        )

    def __reduce__(self) -> Any:
        return (_preprocess_from, (self.resolution, self.mean, self.std))

    def __repr__(self) -> str:
        return f"Preprocess(resolution={self.resolution}, mean={self.mean}, std={self.std})"


def _preprocess_from(resolution: int, mean: Sequence[float], std: Sequence[float]) -> Preprocess:
    return Preprocess(_native.Preprocess.openai(int(resolution), list(mean), list(std)))


class Visual:
    """What the reference's ``model.visual`` tells about the image tower."""

    def __init__(self, input_resolution: int):
        self.input_resolution = input_resolution

    def __repr__(self) -> str:
        return f"Visual(input_resolution={self.input_resolution})"


class CLIP:
    """A loaded CLIP model, as the reference's ``clip.model.CLIP`` with numpy arrays.

    ``encode_image(pixels)``: float32 ``[b, 3, n, n]`` → float32 ``[b, embed_dim]``;
    ``encode_text(tokens)``: int ``[b, context_length]`` → float32 ``[b, embed_dim]`` (both not
    normalized); ``model(pixels, tokens)`` → ``(logits_per_image, logits_per_text)``.
    Arrays of another library (``torch.Tensor`` on the CPU, ...) are taken through
    ``numpy.asarray``.
    """

    dtype = np.dtype(np.float32)

    def __init__(self, native: "_native.Model", preprocess: "_native.Preprocess", name: str):
        self._native = native
        self._preprocess = preprocess
        self.name = name
        self.visual = Visual(native.input_resolution)

    @property
    def precision(self) -> str:
        """The arithmetic of the linear layers: ``"fp32"`` (the reference's), ``"bf16"`` or
        ``"int8"``."""
        return self._native.precision

    @property
    def context_length(self) -> int:
        """The text context length (77 for every OpenAI model)."""
        return self._native.context_length

    @property
    def vocab_size(self) -> int:
        """The size of the token vocabulary."""
        return self._native.vocab_size

    @property
    def embed_dim(self) -> int:
        """The width of the joint embedding."""
        return self._native.embed_dim

    @property
    def logit_scale(self) -> LogitScale:
        """The ``logit_scale`` parameter (a log); the logits use its exponential."""
        return LogitScale(self._native.logit_scale, self._native.logit_scale_exp)

    def checksum(self) -> str:
        """SHA-256 of the checkpoint (the digest in OpenAI's download URLs)."""
        return self._native.checksum()

    def _pixels(self, image: Any) -> np.ndarray:
        a = np.asarray(image)
        n = self.visual.input_resolution
        if a.dtype.kind != "f":
            raise InvalidInputError(
                f"pixels must be a float array [b, 3, {n}, {n}] (as preprocess makes them), "
                f"got dtype {a.dtype}"
            )
        if a.ndim != 4 or a.shape[1:] != (3, n, n):
            hint = " (one image: add a batch axis, pixels[None])" if a.shape == (3, n, n) else ""
            raise InvalidInputError(
                f"pixels must have shape [b, 3, {n}, {n}], got {list(a.shape)}{hint}"
            )
        return np.ascontiguousarray(a, dtype=np.float32)

    def _tokens(self, text: Any) -> np.ndarray:
        a = np.asarray(text)
        if a.dtype.kind not in "iu":
            raise InvalidInputError(
                f"tokens must be an integer array [b, {self.context_length}] (as tokenize makes "
                f"them), got dtype {a.dtype}"
            )
        if a.ndim != 2 or not 1 <= a.shape[1] <= self.context_length:
            raise InvalidInputError(
                f"tokens must have shape [b, n] with 1 <= n <= {self.context_length}, "
                f"got {list(a.shape)}"
            )
        return np.ascontiguousarray(a, dtype=np.int64)

    def encode_image(self, image: Any) -> np.ndarray:
        """Image embeddings, float32 ``[b, embed_dim]``, not normalized."""
        return self._native.encode_image(self._pixels(image))

    def encode_text(self, text: Any) -> np.ndarray:
        """Text embeddings, float32 ``[b, embed_dim]``, not normalized; each row is pooled at
        its end token (the row's largest id), as the reference does."""
        return self._native.encode_text(self._tokens(text))

    def forward(self, image: Any, text: Any) -> Tuple[np.ndarray, np.ndarray]:
        """``(logits_per_image [b_img, b_txt], logits_per_text [b_txt, b_img])``: cosine
        similarities scaled by ``exp(logit_scale)``; the second is the transpose of the first."""
        return self._native.forward(self._pixels(image), self._tokens(text))

    __call__ = forward

    def eval(self) -> "CLIP":
        """Returns the model (there is no training mode); kept for code written for the
        reference."""
        return self

    def __reduce__(self) -> Any:
        # Pickled as the checkpoint to load again (Ray tasks, multiprocessing with spawn).
        return (_model_from, (self.name, self.precision))

    def __repr__(self) -> str:
        return (
            f"CLIP(name={self.name!r}, input_resolution={self.visual.input_resolution}, "
            f"embed_dim={self.embed_dim}, context_length={self.context_length})"
        )


def load(
    name: PathLike,
    device: Any = "cpu",
    jit: bool = False,
    download_root: PathLike | None = None,
    precision: str = "fp32",
) -> Tuple[CLIP, Preprocess]:
    """Loads a CLIP model and its preprocessing, as ``clip.load``.

    ``name`` is one of :func:`available_models` (downloaded with SHA-256 verification into
    ``download_root``, else ``~/.cache/clip`` — a cache the reference filled is reused), a Hugging
    Face Hub id such as ``openai/clip-vit-base-patch32``, or a local path: OpenAI's TorchScript
    ``.pt``, a ``torch.save`` state dict, a Hugging Face ``transformers`` directory or an
    open_clip checkpoint directory. Pickles are read without being executed.

    ``device`` must be the CPU (``"cpu"`` or ``torch.device("cpu")``). ``jit`` is accepted and
    ignored: there is no TorchScript here, and both settings give the same numbers.

    ``precision`` is ``"fp32"`` (the reference's arithmetic, the default), ``"bf16"`` or
    ``"int8"``. bf16: the transformer's linear layers keep bf16 weights and multiply bf16
    operands with fp32 sums — half the weight memory, about twice the speed with AVX-512 BF16
    (slower than fp32 elsewhere). int8: dynamic quantization (int8 weights per output channel,
    activations quantized per row), a quarter of the weight memory, fastest with AVX-512 VNNI.
    The tested models keep a cosine of 0.9995 (bf16) and 0.998 (int8) to the fp32 embeddings;
    random weights do not prove that for real ones (docs/FIDELITY.md).

    Returns ``(model, preprocess)``. Raises :class:`FileNotFoundError` for a missing path and
    :class:`zeroclip.ModelLoadError` for anything that is not a loadable checkpoint.
    """
    if str(device) != "cpu":
        raise InvalidInputError(f"zeroclip runs on the CPU; device {device!r} is not supported")
    del jit
    path = os.fspath(name)
    root = None if download_root is None else os.fspath(download_root)
    native, pre = _native.Model.load(path, root, precision)
    return CLIP(native, pre, path), Preprocess(pre)


def _model_from(name: str, precision: str = "fp32") -> CLIP:
    return load(name, precision=precision)[0]
