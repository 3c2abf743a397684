"""Ray Data: `examples/ray_classify.py` on a local Ray gives, row for row, what
`zeroclip classify --format jsonl` gives on the same files, bad images included."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURES, MODELS

pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ray_classify.py"
LABELS = ["a diagram", "a dog", "a cat", "a rocket"]


def test_parquet_equals_the_cli(cli, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    inputs = FIXTURES / "image" / "inputs"
    for p in sorted(inputs.iterdir()):
        if p.suffix in (".jpg", ".png", ".gif", ".bmp", ".webp") and p.stat().st_size < 400_000:
            shutil.copy(p, images / p.name)
    (images / "empty.png").write_bytes(b"")
    (images / "text.jpg").write_bytes(b"this is not a JPEG")
    (images / "truncated.png").write_bytes((inputs / "gray8.png").read_bytes()[:60])
    files = sorted(images.iterdir())
    assert len(files) >= 30

    model = str(MODELS / "hf_real_vocab")
    out = subprocess.run(
        [cli, "classify", str(images), "--model", model, "--labels", *LABELS, "--top-k", "3",
         "--format", "jsonl", "--no-cache"],
        capture_output=True, text=True,
    )
    assert out.returncode == 1, out.stderr  # some inputs fail
    expected = {r["input"]: r for r in map(json.loads, out.stdout.splitlines())}
    assert len(expected) == len(files)

    parquet = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, str(EXAMPLE), str(images), "--model", model, "--labels", *LABELS,
         "--top-k", "3", "--output", str(parquet), "--num-cpus", "2", "--threads", "1",
         "--concurrency", "1", "--batch-size", "8"],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    rows = pq.read_table(parquet).to_pylist()
    assert len(rows) == len(files)
    assert "bytes" not in rows[0]
    failed = 0
    for row in rows:
        want = expected[row["path"]]
        if "error" in want:
            failed += 1
            assert row["error"] == want["error"], row["path"]
            assert row["label"] is None and np.isnan(row["score"])
            assert row["labels_top_k"] == [] and row["scores_top_k"] == []
            continue
        assert row["error"] is None, row
        labels = [p["label"] for p in want["predictions"]]
        scores = [np.float32(p["score"]) for p in want["predictions"]]
        assert row["labels_top_k"] == labels
        assert [np.float32(s) for s in row["scores_top_k"]] == scores
        assert row["label"] == labels[0] and np.float32(row["score"]) == scores[0]
    assert failed == 3
    assert f"{len(files)} images in" in run.stdout


def test_predictor_on_a_path_batch_and_a_dataframe(tmp_path):
    import pandas as pd

    import zeroclip.ray

    good = FIXTURES / "image" / "inputs" / "gray8.png"
    pred = zeroclip.ray.Predictor(str(MODELS / "hf_real_vocab"), LABELS, top_k=2, cache=False, embedding=True)
    batch = {"path": np.array([str(good), str(tmp_path / "missing.png")], dtype=object)}
    out = pred(batch).to_pydict()
    assert out["label"][0] in LABELS and out["error"][0] is None
    assert len(out["labels_top_k"][0]) == 2
    assert len(out["embedding"][0]) == pred.classifier.model.embed_dim
    assert abs(np.linalg.norm(out["embedding"][0]) - 1) < 1e-5
    assert out["label"][1] is None and "missing.png" in out["error"][1]
    frame = pred(pd.DataFrame(batch))
    assert isinstance(frame, pd.DataFrame) and list(frame["label"])[0] == out["label"][0]
    with pytest.raises(ValueError, match="'bytes' or a 'path' column"):
        pred({"image": np.zeros(2)})
