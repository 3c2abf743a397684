#!/usr/bin/env python3
"""Benchmark: the reference decode + preprocess (Pillow + torchvision, clip's _transform(224)).

Usage: "$(scripts/ref_python.sh)" bench/image_preprocess.py [--runs N] [--batch K] FILE...
Prints the median wall time of `preprocess(Image.open(f))` (decode, resize, crop, ToTensor,
Normalize) over N runs, and the throughput over K images processed one after another, as the
reference does (clip has no batch preprocessing).
"""

import statistics
import sys
import time

import torch
from PIL import Image

from clip.clip import _transform


def main():
    args = sys.argv[1:]
    runs, batch, files = 15, 16, []
    while args:
        a = args.pop(0)
        if a == "--runs":
            runs = int(args.pop(0))
        elif a == "--batch":
            batch = int(args.pop(0))
        else:
            files.append(a)
    pre = _transform(224)
    print(f"Pillow + torchvision reference, torch threads {torch.get_num_threads()}")
    for f in files:
        pre(Image.open(f))  # warm-up
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            pre(Image.open(f))
            times.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        for _ in range(batch):
            pre(Image.open(f))
        rate = batch / (time.perf_counter() - t)
        print(f"{f}: single median {statistics.median(times):.1f} ms (n={runs}); "
              f"batch of {batch}: {rate:.1f} images/s")


if __name__ == "__main__":
    main()
