"""Batch inference on Ray Data: :class:`Predictor` is the callable class that
``ray.data.Dataset.map_batches`` runs in each actor.

::

    import ray, zeroclip.ray
    ds = ray.data.read_binary_files("s3://bucket/images/", include_paths=True)
    ds = ds.map_batches(
        zeroclip.ray.Predictor,
        fn_constructor_kwargs={"model": "ViT-B/32", "labels": ["a dog", "a cat"], "threads": 4},
        concurrency=8,
        batch_size=64,
    )
    ds.write_parquet("s3://bucket/predictions/")

The model loads once per actor; a bad image becomes a row with its ``error``, never a failed task.
Ray itself is needed only to run the pipeline, not to import this module.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from . import set_num_threads
from ._classifier import Classifier
from ._model import load

__all__ = ["Predictor"]


def _column(batch: Any, name: str) -> Optional[list]:
    if name not in batch:
        return None
    values = batch[name]
    return list(values.tolist() if isinstance(values, np.ndarray) else values)


def _object_array(values: List[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


class Predictor:
    """Zero-shot classification of a Ray Data batch.

    Constructor (``fn_constructor_kwargs``): ``model`` (a name or path, as :func:`zeroclip.load`),
    ``labels`` or ``label_set``, ``templates``, ``top_k``, ``threads`` (the actor's threads; give
    Ray as many CPUs per actor with ``num_cpus``), ``embedding`` (add each image's unit embedding),
    ``cache`` (the label-embedding cache, as :class:`zeroclip.Classifier`), ``keep_bytes`` (keep
    the input ``bytes`` column in the output; off, so images are not written out again).

    ``__call__`` takes a batch with a ``bytes`` column (``read_binary_files``; a ``path`` column
    beside it names the inputs) or a ``path`` column — a dict of numpy arrays, a pyarrow Table or
    a pandas DataFrame — and returns it (a pyarrow Table with fixed column types, or a DataFrame
    for a DataFrame) with ``label``, ``score``, ``labels_top_k``, ``scores_top_k``,
    ``error`` (``None`` where the image was read) and, if asked for, ``embedding``. A failed row
    has ``label`` ``None``, ``score`` NaN and empty top-k lists.
    """

    def __init__(
        self,
        model: str,
        labels: Optional[Sequence[str]] = None,
        templates: Union[None, str, Sequence[str]] = None,
        label_set: Optional[str] = None,
        top_k: int = 5,
        threads: Optional[int] = None,
        embedding: bool = False,
        cache: Union[bool, str] = True,
        batch_size: int = 16,
        keep_bytes: bool = False,
    ):
        if threads is not None:
            set_num_threads(int(threads))
        clip_model, _ = load(model)
        self.classifier = Classifier(
            clip_model,
            labels,
            templates=templates,
            label_set=label_set,
            top_k=top_k,
            cache=cache,
            batch_size=batch_size,
        )
        self.embedding = bool(embedding)
        self.keep_bytes = bool(keep_bytes)

    def __call__(self, batch: Any) -> Any:
        is_frame = hasattr(batch, "to_dict") and hasattr(batch, "columns")
        is_table = hasattr(batch, "schema") and hasattr(batch, "to_pydict")
        if is_frame:
            batch = {c: batch[c].to_numpy() for c in batch.columns}
        elif is_table:
            batch = {c: np.asarray(batch[c].to_pylist(), dtype=object) for c in batch.column_names}
        blobs = _column(batch, "bytes")
        paths = _column(batch, "path")
        if blobs is not None:
            inputs: List[Any] = [bytes(b) for b in blobs]
        elif paths is not None:
            inputs = [str(p) for p in paths]
        else:
            raise ValueError(
                f"a batch needs a 'bytes' or a 'path' column; it has {sorted(batch.keys())}"
            )
        names = [str(p) for p in paths] if paths is not None else None
        outcomes = self.classifier.classify_raw(inputs, embeddings=self.embedding, names=names)
        labels, scores, top_labels, top_scores, embeddings, errors = [], [], [], [], [], []
        for outcome in outcomes:
            if isinstance(outcome, str):
                errors.append(outcome)
                labels.append(None)
                scores.append(np.float32("nan"))
                top_labels.append([])
                top_scores.append(np.zeros(0, dtype=np.float32))
                embeddings.append(None)
                continue
            predictions, vector = outcome
            errors.append(None)
            labels.append(predictions[0][0])
            scores.append(np.float32(predictions[0][1]))
            top_labels.append([label for label, _ in predictions])
            top_scores.append(np.array([s for _, s in predictions], dtype=np.float32))
            embeddings.append(None if vector is None else np.asarray(vector, dtype=np.float32))
        out = {k: v for k, v in batch.items() if self.keep_bytes or k != "bytes"}
        out["label"] = _object_array(labels)
        out["score"] = np.array(scores, dtype=np.float32)
        out["labels_top_k"] = _object_array(top_labels)
        out["scores_top_k"] = _object_array(top_scores)
        out["error"] = _object_array(errors)
        if self.embedding:
            out["embedding"] = _object_array(embeddings)
        if is_frame:
            import pandas as pd

            return pd.DataFrame(out)
        return _arrow_table(out)


def _arrow_table(columns: Dict[str, Any]) -> Any:
    """The batch as a pyarrow Table with fixed column types, so every block of a dataset has
    the same schema (a batch whose images all failed would otherwise infer null and empty-list
    types that Parquet readers cannot merge with the others)."""
    import pyarrow as pa

    types = {
        "label": pa.string(),
        "score": pa.float32(),
        "labels_top_k": pa.list_(pa.string()),
        "scores_top_k": pa.list_(pa.float32()),
        "error": pa.string(),
        "embedding": pa.list_(pa.float32()),
        "path": pa.string(),
    }
    arrays = {}
    for name, values in columns.items():
        values = list(values)
        if name in ("scores_top_k", "embedding"):
            values = [None if v is None else np.asarray(v, dtype=np.float32).tolist() for v in values]
        arrays[name] = pa.array(values, type=types.get(name))
    return pa.table(arrays)
