"""zeroclip's exceptions: one hierarchy under :class:`ZeroclipError`.

Files that are missing or unreadable raise Python's own :class:`FileNotFoundError` and
:class:`PermissionError` (subclasses of :class:`OSError`), as any Python library does.
"""

from __future__ import annotations

__all__ = [
    "ZeroclipError",
    "ModelLoadError",
    "ImageDecodeError",
    "TokenizeError",
    "InvalidInputError",
]


class ZeroclipError(Exception):
    """Base class of every error zeroclip raises (other than OSError for files)."""


class ModelLoadError(ZeroclipError):
    """A checkpoint or model name that cannot be loaded: unknown name, failed download, a file
    that is not a CLIP checkpoint, a missing, unexpected or misshapen tensor, a bad config."""


class ImageDecodeError(ZeroclipError):
    """An image that cannot be decoded or preprocessed: corrupt, truncated, unsupported format,
    zero size, or over the pixel limit.

    When raised for several inputs at once (``Classifier.embed_images``), ``errors`` lists each
    failure as ``(index, input, message)``.
    """

    def __init__(self, message: str, errors: list[tuple[int, str, str]] | None = None):
        super().__init__(message)
        self.errors: list[tuple[int, str, str]] = list(errors or [])


class TokenizeError(ZeroclipError, ValueError):
    """A text that cannot be tokenized: too long for the context without ``truncate=True``
    (the reference raises ``RuntimeError`` there). Also a :class:`ValueError`."""


class InvalidInputError(ZeroclipError, ValueError):
    """An argument with the wrong value: pixels or token ids of the wrong shape, dtype or range,
    an unknown label or template set, an invalid template. Also a :class:`ValueError`."""
