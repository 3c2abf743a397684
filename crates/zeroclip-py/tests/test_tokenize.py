"""`zeroclip.tokenize` against the reference's `clip.tokenize` ids committed in
tests/fixtures/tokenizer (made by scripts/make_tokenizer_fixtures.py)."""

from __future__ import annotations

import numpy as np
import pytest

import zeroclip
from conftest import FIXTURES, read_jsonl_gz

SOT, EOT = 49406, 49407


def test_tokenize_cases_match_the_reference():
    cases = read_jsonl_gz(FIXTURES / "tokenizer" / "tokenize.jsonl.gz")
    assert len(cases) > 100
    for case in cases:
        args = (case["text"], case["context_length"], case["truncate"])
        if "error" in case:
            with pytest.raises(ValueError) as info:
                zeroclip.tokenize(*args)
            assert isinstance(info.value, zeroclip.TokenizeError)
        else:
            got = zeroclip.tokenize(*args)
            assert got.dtype == np.int64
            assert got.shape == (1, case["context_length"])
            assert got[0].tolist() == case["row"], args


def test_encodings_match_the_reference():
    rows = read_jsonl_gz(FIXTURES / "tokenizer" / "encode.jsonl.gz")
    rows = [r for r in rows if not r.get("mojibake")]  # ftfy's mojibake repair is not reproduced
    assert len(rows) > 8000
    got = zeroclip.tokenize([r["text"] for r in rows], truncate=True)
    assert got.shape == (len(rows), 77)
    for r, row in zip(rows, got):
        ids = [SOT] + r["ids"][:75] + [EOT]
        expected = ids + [0] * (77 - len(ids))
        assert row.tolist() == expected, r["text"]


def test_one_str_is_one_text_and_the_reference_example():
    one = zeroclip.tokenize("a dog")
    assert one.shape == (1, 77)
    three = zeroclip.tokenize(["a diagram", "a dog", "a cat"])
    assert three.shape == (3, 77)
    assert (three[1] == one[0]).all()
    # Each row ends with EOT at its largest id, as the reference's argmax pooling expects.
    assert [int(r.argmax()) for r in three] == [3, 3, 3]


def test_too_long_names_the_text_unless_truncated():
    text = "word " * 100
    with pytest.raises(ValueError, match="too long") as info:
        zeroclip.tokenize([text])
    assert "word word" in str(info.value)
    cut = zeroclip.tokenize([text], truncate=True)
    assert cut[0, -1] == EOT


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_context_length(bad):
    with pytest.raises(ValueError, match="context_length"):
        zeroclip.tokenize("x", context_length=bad)


def test_non_string_text():
    with pytest.raises(ValueError, match=r"texts\[1\]"):
        zeroclip.tokenize(["ok", 3])
