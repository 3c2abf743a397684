#!/usr/bin/env python3
"""Tokenizer throughput: OpenAI's `clip.tokenize` against zeroclip's, side by side on one core.

Run from the repository root (builds the Rust side in release mode first):

    cargo build --release -p zeroclip-tokenizer --example tokenize_bench
    "$(scripts/ref_python.sh)" bench/tokenizer.py

The corpus is the 5,000 ImageNet prompts of the tokenizer fixture (1,000 class names through
5 templates each). Both sides are pinned to CPU 0 and measured twice: a cold pass (a fresh
tokenizer, empty BPE cache) and the best of several warm passes (cache filled, as in a long-lived
process). Both produce the full [5000, 77] matrix; their checksums must agree.
"""

import gzip
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "tokenizer", "encode.jsonl.gz")
OUT = os.path.join(ROOT, "bench", "out")
RUST = os.path.join(ROOT, "target", "release", "examples", "tokenize_bench")
REPEATS = 10


def checksum(rows):
    total, i = 0, 0
    for row in rows:
        for tok in row:
            i += 1
            total = (total + i * tok) % (1 << 64)
    return total


def python_side(texts):
    import clip
    import clip.clip as clip_module
    from clip.simple_tokenizer import SimpleTokenizer

    start = time.perf_counter()
    clip_module._tokenizer = SimpleTokenizer()
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    rows = clip.tokenize(texts, truncate=True)
    cold_s = time.perf_counter() - start
    warm_s = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        clip.tokenize(texts, truncate=True)
        warm_s = min(warm_s, time.perf_counter() - start)
    return {"n": len(texts), "build_s": build_s, "cold_s": cold_s, "warm_s": warm_s,
            "checksum": checksum(rows.tolist())}


def main():
    os.sched_setaffinity(0, {0})
    with gzip.open(FIXTURE, "rt", encoding="utf-8") as f:
        texts = [r["text"] for r in map(json.loads, f) if r["kind"] == "imagenet"]
    assert len(texts) == 5000, len(texts)
    os.makedirs(OUT, exist_ok=True)
    corpus = os.path.join(OUT, "tokenizer_corpus.jsonl")
    with open(corpus, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps(t) + "\n")
    if not os.path.exists(RUST):
        sys.exit(f"{RUST} missing: cargo build --release -p zeroclip-tokenizer --example tokenize_bench")

    py = python_side(texts)
    rs = json.loads(subprocess.run(["taskset", "-c", "0", RUST, corpus, str(REPEATS * 5)],
                                   check=True, capture_output=True, text=True).stdout)
    assert py["checksum"] == rs["checksum"], ("ids differ", py["checksum"], rs["checksum"])

    print(f"corpus: {len(texts)} ImageNet prompts, context 77, one core (CPU 0)")
    print(f"{'':22}{'reference (Python)':>20}{'zeroclip (Rust)':>18}{'speed-up':>10}")
    for key, label in [("build_s", "build tokenizer"), ("cold_s", "cold pass"), ("warm_s", "warm pass (best)")]:
        print(f"{label:22}{py[key] * 1e3:>17.1f} ms{rs[key] * 1e3:>15.2f} ms{py[key] / rs[key]:>9.0f}x")
    for key, label in [("cold_s", "cold"), ("warm_s", "warm")]:
        print(f"throughput {label:5}: reference {len(texts) / py[key]:,.0f} texts/s, "
              f"zeroclip {len(texts) / rs[key]:,.0f} texts/s")
    print("checksums equal:", py["checksum"] == rs["checksum"])


if __name__ == "__main__":
    main()
