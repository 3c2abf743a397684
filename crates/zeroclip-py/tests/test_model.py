"""`zeroclip.load` and the model against the reference's outputs committed in tests/fixtures/model
(made by scripts/make_model_fixtures.py with the reference on random weights), in every format
the Rust library loads, and bit for bit against the Rust library (the `zeroclip` CLI)."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

import zeroclip
from conftest import MODELS, read_safetensors

EMBED_TOL = 1e-4
LOGIT_TOL = 1e-3

FORMATS = [
    ("vit_jit", "vit_jit.pt"),
    ("vit_zip", "vit_zip.pt"),
    ("rn_jit", "rn_jit.pt"),
    ("rn_legacy", "rn_legacy.pt"),
    ("hf_gelu_bin", "hf_gelu_bin"),
    ("openclip_vit_gelu", "openclip_vit_gelu"),
    ("openclip_rn_quickgelu", "openclip_rn_quickgelu"),
]


@pytest.mark.parametrize("name,path", FORMATS)
def test_every_format_matches_the_reference(name, path):
    model, preprocess = zeroclip.load(str(MODELS / path))
    exp = read_safetensors(MODELS / f"{name}.expected.safetensors")
    pixels, ids = exp["pixels"], exp["input_ids"]
    image = model.encode_image(pixels)
    text = model.encode_text(ids)
    per_image, per_text = model(pixels, ids)
    assert image.dtype == np.float32 and image.shape == exp["image_embeds"].shape
    assert np.abs(image - exp["image_embeds"]).max() <= EMBED_TOL
    assert np.abs(text - exp["text_embeds"]).max() <= EMBED_TOL
    assert np.abs(per_image - exp["logits_per_image"]).max() <= LOGIT_TOL
    np.testing.assert_array_equal(per_text, per_image.T)
    assert preprocess.resolution == model.visual.input_resolution == pixels.shape[-1]


def test_reference_example_with_the_real_vocabulary():
    """The reference example's steps on the HF fixture whose reference run used real labels."""
    model, preprocess = zeroclip.load(str(MODELS / "hf_real_vocab"))
    exp = read_safetensors(MODELS / "hf_real_vocab.expected.safetensors")
    text = zeroclip.tokenize(["a diagram", "a dog", "a cat"])
    np.testing.assert_array_equal(text, exp["label_ids"])
    image = preprocess(str(MODELS / "tiny.png"))[None]
    np.testing.assert_array_equal(image, exp["png_pixels"])
    logits_per_image, logits_per_text = model(image, text)
    assert np.abs(logits_per_image - exp["png_logits_per_image"]).max() <= LOGIT_TOL
    probs = np.exp(logits_per_image - logits_per_image.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    ref = np.exp(exp["png_logits_per_image"] - exp["png_logits_per_image"].max(-1, keepdims=True))
    ref /= ref.sum(-1, keepdims=True)
    assert np.abs(probs - ref).max() <= 1e-4


def test_attributes_as_the_reference():
    model, _ = zeroclip.load(str(MODELS / "vit_zip.pt"))
    assert model.context_length == 77
    assert model.visual.input_resolution == 32
    # CLIP initializes logit_scale to log(1 / 0.07); the fixture keeps it.
    assert isinstance(model.logit_scale, float)
    assert abs(model.logit_scale - np.log(1 / 0.07)) < 1e-5
    assert abs(float(model.logit_scale.exp()) - 1 / 0.07) < 1e-3
    assert model.eval() is model
    assert len(model.checksum()) == 64


def test_results_equal_the_rust_library_bit_for_bit(cli, tmp_path):
    """`zeroclip embed` (the Rust CLI) and the Python package give the same float32 bits."""
    model, preprocess = zeroclip.load(str(MODELS / "hf_real_vocab"))
    image_path = MODELS / "tiny.png"
    out = tmp_path / "img.jsonl"
    subprocess.run(
        [cli, "embed", str(image_path), "--model", str(MODELS / "hf_real_vocab"), "--output", str(out)],
        check=True,
    )
    rust = np.array(json.loads(out.read_text().splitlines()[0])["embedding"], dtype=np.float32)
    ours = model.encode_image(preprocess(str(image_path))[None])[0]
    np.testing.assert_array_equal(ours, rust)
    texts = ["a diagram", "a dog", "a cat"]
    out = tmp_path / "txt.jsonl"
    subprocess.run(
        [cli, "embed", "--text", *texts, "--model", str(MODELS / "hf_real_vocab"), "--output", str(out)],
        check=True,
    )
    rust = np.array(
        [json.loads(line)["embedding"] for line in out.read_text().splitlines()], dtype=np.float32
    )
    np.testing.assert_array_equal(model.encode_text(zeroclip.tokenize(texts)), rust)


def test_inputs_through_numpy_asarray_and_other_dtypes():
    model, _ = zeroclip.load(str(MODELS / "vit_zip.pt"))
    exp = read_safetensors(MODELS / "vit_zip.expected.safetensors")
    pixels = exp["pixels"]
    as_f64 = model.encode_image(pixels.astype(np.float64))
    np.testing.assert_array_equal(as_f64, model.encode_image(pixels))
    as_list = model.encode_text(exp["input_ids"].astype(np.int32).tolist())
    np.testing.assert_array_equal(as_list, model.encode_text(exp["input_ids"]))
    # A non-contiguous view is taken as well.
    flipped = np.ascontiguousarray(pixels[::-1])[::-1]
    np.testing.assert_array_equal(model.encode_image(flipped), model.encode_image(pixels))


@pytest.mark.parametrize(
    "pixels,match",
    [
        (np.zeros((1, 3, 32, 32), dtype=np.int32), "float array"),
        (np.zeros((3, 32, 32), dtype=np.float32), r"batch axis"),
        (np.zeros((1, 3, 31, 32), dtype=np.float32), r"\[b, 3, 32, 32\]"),
        ("not pixels", "float array"),
    ],
)
def test_wrong_pixels_raise_value_error(pixels, match):
    model, _ = zeroclip.load(str(MODELS / "vit_zip.pt"))
    with pytest.raises(ValueError, match=match):
        model.encode_image(pixels)


@pytest.mark.parametrize(
    "tokens,match",
    [
        (np.zeros((1, 77), dtype=np.float32), "integer array"),
        (np.zeros(77, dtype=np.int64), r"shape \[b, n\]"),
        (np.zeros((1, 78), dtype=np.int64), r"1 <= n <= 77"),
        (np.full((1, 77), -1, dtype=np.int64), "outside the model's vocabulary"),
        (np.full((1, 77), 10**6, dtype=np.int64), "outside the model's vocabulary"),
    ],
)
def test_wrong_tokens_raise_value_error(tokens, match):
    model, _ = zeroclip.load(str(MODELS / "vit_zip.pt"))
    with pytest.raises(ValueError, match=match):
        model.encode_text(tokens)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        zeroclip.load(str(tmp_path / "nope.pt"))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(zeroclip.ModelLoadError, match="junk.pt"):
        zeroclip.load(str(junk))
    with pytest.raises(ValueError, match="CPU"):
        zeroclip.load(str(MODELS / "vit_zip.pt"), device="cuda")
    model, _ = zeroclip.load(str(MODELS / "vit_zip.pt"), device="cpu", jit=True)
    assert model.visual.input_resolution == 32


def test_available_models_are_the_nine_openai_names():
    assert zeroclip.available_models() == [
        "RN50",
        "RN101",
        "RN50x4",
        "RN50x16",
        "RN50x64",
        "ViT-B/32",
        "ViT-B/16",
        "ViT-L/14",
        "ViT-L/14@336px",
    ]


def test_exception_hierarchy():
    for cls in (
        zeroclip.ModelLoadError,
        zeroclip.ImageDecodeError,
        zeroclip.TokenizeError,
        zeroclip.InvalidInputError,
    ):
        assert issubclass(cls, zeroclip.ZeroclipError)
    assert issubclass(zeroclip.TokenizeError, ValueError)
    assert issubclass(zeroclip.InvalidInputError, ValueError)


def test_help_is_useful():
    doc = zeroclip.load.__doc__ or ""
    assert "available_models" in doc and "download_root" in doc and "jit" in doc


def _cosines(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("precision,min_cosine", [("bf16", 0.9995), ("int8", 0.998)])
@pytest.mark.parametrize("name,path", [FORMATS[1], FORMATS[2]])
def test_low_precision_is_close_to_the_reference_and_survives_pickling(name, path, precision, min_cosine):
    import pickle

    model, _ = zeroclip.load(str(MODELS / path), precision=precision)
    assert model.precision == precision
    exp = read_safetensors(MODELS / f"{name}.expected.safetensors")
    image = model.encode_image(exp["pixels"])
    text = model.encode_text(exp["input_ids"])
    for got, want in [(image, exp["image_embeds"]), (text, exp["text_embeds"])]:
        assert _cosines(got, want).min() >= min_cosine
        assert not np.array_equal(got, want)
    again = pickle.loads(pickle.dumps(model))
    assert again.precision == precision
    np.testing.assert_array_equal(again.encode_image(exp["pixels"]), image)


def test_an_unknown_precision_is_an_invalid_input():
    with pytest.raises(zeroclip.InvalidInputError, match="int4"):
        zeroclip.load(str(MODELS / "vit_zip.pt"), precision="int4")
    model, _ = zeroclip.load(str(MODELS / "vit_zip.pt"))
    assert model.precision == "fp32"
