"""`zeroclip.Classifier`: the same predictions as `zeroclip classify` (the Rust CLI) for the
same labels and templates, every input in the result, and embeddings."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

import zeroclip
from conftest import FIXTURES, MODELS

IMAGES = FIXTURES / "image" / "inputs"
LABELS = ["a diagram", "a dog", "a cat"]


@pytest.fixture(scope="module")
def model():
    m, _ = zeroclip.load(str(MODELS / "hf_real_vocab"))
    return m


def cli_jsonl(cli, inputs, *args):
    out = subprocess.run(
        [cli, "classify", *map(str, inputs), "--model", str(MODELS / "hf_real_vocab"),
         "--format", "jsonl", "--no-cache", *args],
        capture_output=True,
        text=True,
    )
    assert out.returncode in (0, 1), out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()], out.returncode


def same(ours, theirs, same_error=True):
    assert ours["input"] == theirs["input"]
    if "error" in theirs:
        assert "error" in ours, ours
        if same_error:
            assert ours["error"] == theirs["error"]
        return
    assert [p["label"] for p in ours["predictions"]] == [p["label"] for p in theirs["predictions"]]
    # The CLI prints each f32 score in its shortest form: read back as f32, it is the same value.
    assert [np.float32(p["score"]) for p in ours["predictions"]] == [
        np.float32(p["score"]) for p in theirs["predictions"]
    ]


@pytest.mark.parametrize(
    "templates,cli_args",
    [
        (None, []),
        (["a photo of a {}."], ["--template", "a photo of a {}."]),
        ("imagenet7", ["--templates", "imagenet7"]),
    ],
)
def test_same_predictions_as_the_cli(model, cli, tmp_path, templates, cli_args):
    inputs = sorted(IMAGES.glob("photo_*.jpg"))[:4] + [IMAGES / "gray8.png"]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    inputs = [str(p) for p in inputs] + [str(bad), str(tmp_path / "missing.png")]
    expected, code = cli_jsonl(cli, inputs, "--labels", *LABELS, "--top-k", "3", *cli_args)
    assert code == 1
    clf = zeroclip.Classifier(model, LABELS, templates=templates, top_k=3, cache=False)
    results = clf.classify(inputs)
    assert len(results) == len(inputs) == len(expected)
    for ours, theirs in zip(results[:-1], expected[:-1]):
        same(ours, theirs)
    # The CLI finds a missing file while listing its inputs, the library when reading it.
    same(results[-1], expected[-1], same_error=False)
    assert "error" in results[-2] and "broken.jpg" in results[-2]["error"]
    assert "error" in results[-1] and "missing.png" in results[-1]["error"]


def test_label_set_and_single_template_as_the_cli(model, cli):
    inputs = [str(IMAGES / "photo_rocket.jpg")]
    expected, _ = cli_jsonl(cli, inputs, "--label-set", "cifar10", "--top-k", "5")
    clf = zeroclip.Classifier(model, label_set="cifar10", cache=False)
    assert len(clf.labels) == 10 and clf.templates == ["a photo of a {}."]
    same(clf.classify(inputs)[0], expected[0])


def test_pil_bytes_and_paths_give_the_same_predictions(model):
    Image = pytest.importorskip("PIL.Image")
    path = IMAGES / "photo_chelsea_422.jpg"
    clf = zeroclip.Classifier(model, LABELS, cache=False)
    with Image.open(path) as im:
        a, b, c = clf.classify([str(path), path.read_bytes(), im])
    assert a["predictions"] == b["predictions"] == c["predictions"]
    assert b["input"] == "<bytes 1>" and c["input"].endswith("photo_chelsea_422.jpg")


def test_bad_inputs_never_raise_out_of_a_batch(model):
    clf = zeroclip.Classifier(model, LABELS, cache=False)
    results = clf.classify([b"junk", 42, str(IMAGES / "gray8.png")])
    assert "error" in results[0] and "error" in results[1] and "predictions" in results[2]
    assert "expected a path" in results[1]["error"]


def test_cache_hits_on_second_build(model, tmp_path):
    first = zeroclip.Classifier(model, LABELS, cache=tmp_path)
    second = zeroclip.Classifier(model, LABELS, cache=tmp_path)
    assert first.cache_stats == {"hits": 0, "misses": 3}
    assert second.cache_stats == {"hits": 3, "misses": 0}
    np.testing.assert_array_equal(first.class_embeddings, second.class_embeddings)


def test_embeddings(model):
    clf = zeroclip.Classifier(model, LABELS, cache=False)
    paths = [str(IMAGES / "gray8.png"), str(IMAGES / "photo_rocket.jpg")]
    emb = clf.embed_images(paths)
    pre = zeroclip.Preprocess.openai(model.visual.input_resolution)
    direct = model.encode_image(np.stack([pre(p) for p in paths]))
    np.testing.assert_array_equal(emb, direct)
    unit = clf.embed_images(paths, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-6)
    texts = clf.embed_texts(LABELS)
    np.testing.assert_array_equal(texts, model.encode_text(zeroclip.tokenize(LABELS)))
    # With templates=None the class embeddings are the labels' own, normalized.
    np.testing.assert_allclose(clf.class_embeddings, clf.embed_texts(LABELS, normalize=True), atol=1e-6)


def test_embed_images_reports_every_failure(model):
    clf = zeroclip.Classifier(model, LABELS, cache=False)
    inputs = [b"junk", str(IMAGES / "gray8.png"), "/nonexistent/x.png"]
    with pytest.raises(zeroclip.ImageDecodeError) as info:
        clf.embed_images(inputs)
    assert [i for i, _, _ in info.value.errors] == [0, 2]
    rows = clf.embed_images(inputs, on_error="nan")
    assert np.isnan(rows[0]).all() and np.isnan(rows[2]).all() and np.isfinite(rows[1]).all()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({}, "either labels or label_set"),
        ({"labels": LABELS, "label_set": "cifar10"}, "either labels or label_set"),
        ({"labels": "a dog"}, "list of strings"),
        ({"labels": LABELS, "top_k": 0}, "top_k"),
        ({"label_set": "nope"}, "unknown label set"),
        ({"labels": LABELS, "templates": "nope"}, "unknown template set"),
        ({"labels": LABELS, "templates": ["no placeholder"]}, "template"),
        ({"labels": []}, "no labels"),
    ],
)
def test_bad_classifier_arguments(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        zeroclip.Classifier(model, cache=False, **kwargs)
