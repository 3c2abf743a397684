#!/usr/bin/env python3
"""ONNX Runtime side of the model benchmark: the fp32 image tower exported by
bench/make_checkpoints.py, CPU execution provider, intra-op 2 threads, all graph optimizations.

    model_ort.py image --model ViT-B-32 [--batch 1 16] [--warmup 2] [--runs 10] [--int8]
    model_ort.py load  --model ViT-B-32 [--int8]

`--int8`: the `quantize_dynamic` model bench/make_checkpoints.py writes beside the fp32 one.
"""

import argparse
import time

import model_common as mc
import onnxruntime as ort


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("task", choices=["image", "load"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, nargs="*", default=[1, 16])
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--int8", action="store_true")
    args = ap.parse_args()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    precision = "int8" if args.int8 else "fp32"
    base = {"framework": "onnxruntime", "model": args.model, "task": args.task,
            "version": ort.__version__, "threads": args.threads, "precision": precision}

    before = mc.rss_mb()
    t0 = time.perf_counter()
    suffix = ".int8.onnx" if args.int8 else ".onnx"
    sess = ort.InferenceSession(str(mc.OUT / f"{args.model}.visual{suffix}"), opts,
                                providers=["CPUExecutionProvider"])
    load_s = time.perf_counter() - t0
    if args.task == "load":
        mc.emit({**base, "load_s": load_s, "rss_before_mb": before["rss_mb"], **mc.rss_mb()})
        return
    name = sess.get_inputs()[0].name
    for batch in args.batch:
        x = mc.pixels(batch)
        stats = mc.time_calls(lambda: sess.run(None, {name: x}), args.warmup, args.runs)
        if batch == max(args.batch):
            tag = "_int8" if args.int8 else ""
            mc.dump(sess.run(None, {name: x})[0], f"onnxruntime{tag}_{args.model}_image_b{batch}.f32")
        mc.emit({**base, "batch": batch, "items_per_s": batch / stats["median_s"], **stats})


if __name__ == "__main__":
    main()
