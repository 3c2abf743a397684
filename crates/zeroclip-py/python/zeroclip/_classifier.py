"""``Classifier``: zero-shot classification of many images against a label set, as the CLI's
``classify`` does it (templates, ensembling, the label-embedding cache, batches decoded in parallel
one batch ahead of the model), with every input in the result, its predictions or its error.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np

from . import _native
from ._errors import ImageDecodeError, InvalidInputError
from ._inputs import describe, to_source
from ._model import CLIP

__all__ = ["Classifier"]

Templates = Union[None, str, Sequence[str]]


def _as_list(inputs: Any) -> List[Any]:
    if isinstance(inputs, (str, os.PathLike, bytes, bytearray, memoryview)):
        return [inputs]
    if hasattr(inputs, "mode") and hasattr(inputs, "tobytes"):  # one PIL image
        return [inputs]
    return list(inputs)


class Classifier:
    """Zero-shot classifier: ``Classifier(model, ["a dog", "a cat"]).classify(["x.jpg"])``.

    - ``labels``: the class names. With ``templates=None`` they are used as written (as the
      reference example and the CLI do); with templates each label fills ``{}``.
    - ``templates``: ``None``, a built-in set (``"imagenet80"``: OpenAI's 80 ImageNet prompts,
      ``"imagenet7"``: their 7-prompt subset), or a list of templates such as
      ``["a photo of a {}."]``; several templates are ensembled as in OpenAI's ImageNet notebook.
    - ``label_set``: instead of ``labels``, a built-in set: ``"imagenet"`` (OpenAI's cleaned
      ImageNet-1k names), ``"cifar10"``, ``"cifar100"``; its default template is
      ``"a photo of a {}."``.
    - ``top_k``: predictions kept per image (``None``: all).
    - ``cache``: ``True`` caches label embeddings in the default folder
      (``$ZEROCLIP_CACHE_DIR/labels`` or ``~/.cache/zeroclip/labels``), ``False`` never caches, a
      path caches there.
    - ``truncate``: cut prompts longer than the context instead of raising.
    - ``batch_size``: images per model call.
    """

    def __init__(
        self,
        model: CLIP,
        labels: Optional[Sequence[str]] = None,
        templates: Templates = None,
        label_set: Optional[str] = None,
        top_k: Optional[int] = 5,
        cache: Union[bool, str, "os.PathLike[str]"] = True,
        truncate: bool = False,
        batch_size: int = 16,
    ):
        if not isinstance(model, CLIP):
            raise InvalidInputError(
                f"model must be what zeroclip.load returns, got {type(model).__name__}"
            )
        if (labels is None) == (label_set is None):
            raise InvalidInputError("give either labels or label_set")
        if isinstance(labels, str):
            raise InvalidInputError("labels must be a list of strings, got one str")
        if label_set is not None:
            label_list = list(_native.label_set(label_set))
            default_templates = [_native.DEFAULT_TEMPLATE]
        else:
            label_list = [str(label) for label in labels]  # type: ignore[union-attr]
            default_templates = ["{}"]
        if templates is None:
            template_list = default_templates
        elif isinstance(templates, str):
            template_list = list(_native.template_set(templates))
        else:
            template_list = [str(t) for t in templates]
        if top_k is not None and (isinstance(top_k, bool) or int(top_k) < 1):
            raise InvalidInputError(f"top_k must be at least 1 (or None for all), got {top_k!r}")
        if isinstance(batch_size, bool) or int(batch_size) < 1:
            raise InvalidInputError(f"batch_size must be at least 1, got {batch_size!r}")
        if cache is True:
            cache_dir = _native.default_cache_dir()
        elif cache is False or cache is None:
            cache_dir = None
        else:
            cache_dir = os.fspath(cache)
        self.model = model
        self.templates: List[str] = template_list
        self.top_k = None if top_k is None else int(top_k)
        self.batch_size = int(batch_size)
        self._native = _native.Classifier(
            model._native,
            model._preprocess,
            label_list,
            template_list,
            self.top_k,
            bool(truncate),
            cache_dir,
        )

    @property
    def labels(self) -> List[str]:
        """The labels, in the order given."""
        return list(self._native.labels)

    @property
    def class_embeddings(self) -> np.ndarray:
        """float32 ``[labels, embed_dim]``: one unit embedding per label, ensembled over the
        templates."""
        return self._native.class_embeddings

    @property
    def cache_stats(self) -> Dict[str, int]:
        """How the label cache served this classifier: ``{"hits": ..., "misses": ...}``."""
        hits, misses = self._native.cache_stats
        return {"hits": hits, "misses": misses}

    def _sources(
        self, inputs: Iterable[Any], names: Optional[Sequence[str]] = None
    ) -> tuple[list, list]:
        items = _as_list(inputs)
        pre = self.model._preprocess
        if names is None:
            return items, [to_source(pre, obj, i) for i, obj in enumerate(items)]
        if len(names) != len(items):
            raise InvalidInputError(f"{len(names)} names for {len(items)} inputs")
        return items, [to_source(pre, obj, i, str(n)) for i, (obj, n) in enumerate(zip(items, names))]

    def classify(self, inputs: Any) -> List[Dict[str, Any]]:
        """Classifies each input: paths, ``bytes`` of image files, or PIL images (or one of them).

        Returns one dict per input, in order: ``{"input": name, "predictions": [{"label": ...,
        "score": ...}, ...]}`` best first, or ``{"input": name, "error": message}``. A bad image
        never raises: it is reported in its place.
        """
        items, sources = self._sources(inputs)
        outcomes = self._native.classify(sources, self.batch_size, False)
        results = []
        for i, (obj, outcome) in enumerate(zip(items, outcomes)):
            name = describe(obj, i)
            if isinstance(outcome, str):
                results.append({"input": name, "error": outcome})
            else:
                predictions = [{"label": label, "score": score} for label, score in outcome[0]]
                results.append({"input": name, "predictions": predictions})
        return results

    def classify_raw(
        self, inputs: Any, embeddings: bool = False, names: Optional[Sequence[str]] = None
    ) -> list:
        """As :meth:`classify`, in the native form: per input ``(predictions, embedding)`` with
        predictions as ``(label, score)`` pairs and the unit image embedding (or ``None``), or the
        error message; ``names`` name the inputs in errors. For callers that build columns
        (``zeroclip.ray.Predictor``)."""
        _, sources = self._sources(inputs, names)
        return self._native.classify(sources, self.batch_size, bool(embeddings))

    def embed_images(
        self, inputs: Any, normalize: bool = False, on_error: str = "raise"
    ) -> np.ndarray:
        """Image embeddings, float32 ``[len(inputs), embed_dim]`` (unit rows if ``normalize``).

        If any input fails, ``on_error="raise"`` raises :class:`zeroclip.ImageDecodeError` whose
        ``errors`` lists every failure ``(index, input, message)``; ``on_error="nan"`` returns the
        array with a row of NaN for each failed input instead.
        """
        if on_error not in ("raise", "nan"):
            raise InvalidInputError(f"on_error must be 'raise' or 'nan', got {on_error!r}")
        items, sources = self._sources(inputs)
        array, errors = self._native.embed_images(sources, self.batch_size, bool(normalize))
        if errors and on_error == "raise":
            listed = [(i, describe(items[i], i), message) for i, message in errors]
            summary = "; ".join(message for _, _, message in listed[:3])
            more = f" (and {len(listed) - 3} more)" if len(listed) > 3 else ""
            raise ImageDecodeError(
                f"{len(listed)} of {len(items)} images failed: {summary}{more}", listed
            )
        return array

    def embed_texts(self, texts: Union[str, Sequence[str]], normalize: bool = False) -> np.ndarray:
        """Text embeddings of ``texts`` as written (no template), float32 ``[n, embed_dim]``
        (unit rows if ``normalize``)."""
        if isinstance(texts, str):
            texts = [texts]
        return self._native.embed_texts([str(t) for t in texts], bool(normalize))

    def __repr__(self) -> str:
        return (
            f"Classifier({len(self.labels)} labels, {len(self.templates)} templates, "
            f"top_k={self.top_k})"
        )
