"""Shared pieces of the model benchmark: inputs, timing protocol, memory readings, JSON output.

Every framework gets the same pixels (`pixels_224x16.f32` from bench/make_checkpoints.py) and the
same prompt files (written here), and is timed the same way: `warmup` untimed calls, then `runs`
timed calls; the median call time is reported.
"""

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "model"
RES = 224
TEXT_BATCH = 16
# "a photo of a {class}" over the first CIFAR-100 class names: 6-8 tokens each with SOT/EOT.
CLASSES = [
    "apple", "aquarium fish", "baby", "bear", "beaver", "bed", "bee", "beetle",
    "bicycle", "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel",
]
LONG_WORDS = ("a detailed photograph of a {} standing in a sunny meadow next to an old wooden fence "
              "with mountains and a lake in the background on a clear summer afternoon ")


def short_prompts() -> list:
    return [f"a photo of a {c}" for c in CLASSES[:TEXT_BATCH]]


def long_prompts() -> list:
    """Prompts longer than the context, tokenized with truncate=True: all 77 positions used."""
    return [(LONG_WORDS.format(c) * 4).strip() for c in CLASSES[:TEXT_BATCH]]


def write_prompt_files(out: Path = OUT) -> dict:
    paths = {}
    for kind, prompts in (("short", short_prompts()), ("long", long_prompts())):
        p = out / f"prompts_{kind}.txt"
        p.write_text("\n".join(prompts) + "\n")
        paths[kind] = p
    return paths


def read_prompts(path) -> list:
    return [l for l in Path(path).read_text().splitlines() if l]


def pixels(batch: int, out: Path = OUT) -> np.ndarray:
    all_px = np.fromfile(out / f"pixels_{RES}x16.f32", dtype="<f4").reshape(16, 3, RES, RES)
    return np.ascontiguousarray(all_px[:batch])


def time_calls(fn, warmup: int, runs: int) -> dict:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "runs": runs, "times_s": times}


def rss_mb() -> dict:
    """Current and peak resident set size of this process (VmRSS, VmHWM), in MB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return {"rss_mb": fields["VmRSS"], "peak_rss_mb": fields["VmHWM"]}


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def dump(array, name: str, out: Path = OUT) -> None:
    d = out / "embeddings"
    d.mkdir(parents=True, exist_ok=True)
    np.ascontiguousarray(np.asarray(array, dtype="<f4")).tofile(d / name)


def fail(msg: str) -> None:
    print(msg, file=sys.stderr)
    sys.exit(2)
