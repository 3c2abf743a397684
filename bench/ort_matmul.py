#!/usr/bin/env python3
"""ONNX Runtime's MatMul (MLAS) on ViT-B/32's Linear shapes, GFLOP/s of the median call and of the
best (`gflops_best`): the peer of `bench_model matmul`, one JSON object per shape. The weight is a graph constant, as in the
exported towers, so ONNX Runtime may prepack it.

    ort_matmul.py [--threads 1] [--runs 15]

Restricted to a CPU class as the bench does it (bench/cpuid_mask.c):

    LD_PRELOAD=bench/out/model/cpuid_mask.so ZEROCLIP_CPUID_MASK=avx2 ort_matmul.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

# (label, m, k, n), as bench_model matmul names them.
SHAPES = [
    ("in_proj b16", 800, 768, 2304),
    ("out_proj b16", 800, 768, 768),
    ("c_fc b16", 800, 768, 3072),
    ("c_proj b16", 800, 3072, 768),
    ("in_proj b1", 50, 768, 2304),
    ("c_fc b1", 50, 768, 3072),
    ("c_proj b1", 50, 3072, 768),
]


def session(k: int, n: int, threads: int, rng: np.random.Generator) -> ort.InferenceSession:
    w = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--shape", action="append", default=[], metavar="MxKxN",
                    help="measure this shape instead of ViT-B/32's (repeatable)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    shapes = []
    for s in args.shape:
        dims = s.split("x")
        if len(dims) != 3 or not all(d.isdigit() for d in dims):
            ap.error(f"--shape: {s!r} is not MxKxN")
        shapes.append(("--shape", *map(int, dims)))
    shapes = shapes or SHAPES
    for label, m, k, n in shapes:
        s = session(k, n, args.threads, rng)
        x = {"x": rng.standard_normal((m, k)).astype(np.float32)}
        for _ in range(3):
            s.run(None, x)
        times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            s.run(None, x)
            times.append(time.perf_counter() - t)
        gflops = 2 * m * k * n / statistics.median(times) / 1e9
        print(json.dumps({"framework": "onnxruntime", "task": "matmul", "shape": f"{label}: {m}x{k}x{n}",
                          "threads": args.threads, "gflops": round(gflops, 1),
                          "gflops_best": round(2 * m * k * n / min(times) / 1e9, 1)}))


if __name__ == "__main__":
    main()
