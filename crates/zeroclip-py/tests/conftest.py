"""Shared fixtures of the Python tests: the repository's committed fixtures (the same ones the
Rust tests use), a reader for their safetensors files, and the CLI binary to compare with."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures"
MODELS = FIXTURES / "model"

_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32, "U8": np.uint8}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file (numpy only: the tests need neither torch nor the
    safetensors package)."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        out[name] = np.frombuffer(body[start:end], dtype=_DTYPES[info["dtype"]]).reshape(
            info["shape"]
        )
    return out


def read_jsonl_gz(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="session")
def cli() -> str:
    """The `zeroclip` binary: $ZEROCLIP_CLI, else the workspace's build. The README's test
    command builds it before the Python tests run; its absence is a failure, not a skip."""
    path = os.environ.get("ZEROCLIP_CLI")
    candidates = [path] if path else [ROOT / "target" / p / "zeroclip" for p in ("debug", "release")]
    for c in candidates:
        if c and Path(c).is_file():
            return str(c)
    found = shutil.which("zeroclip")
    if found:
        return found
    pytest.fail(f"no zeroclip binary (set ZEROCLIP_CLI or build it); looked at {candidates}")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Label-embedding and model caches of the tests live in a temporary folder."""
    cache = tmp_path_factory.getbasetemp() / "cache"
    monkeypatch.setenv("ZEROCLIP_CACHE_DIR", str(cache))
    monkeypatch.setenv("ZEROCLIP_CACHE", str(cache / "clip"))
