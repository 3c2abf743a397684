"""Zero-shot classification of a directory of images on Ray Data, written as Parquet.

    python ray_classify.py IMAGES_DIR --model ViT-B/32 --labels "a dog" "a cat" --output out/

Reads every file under IMAGES_DIR with ``ray.data.read_binary_files`` (so a cluster reads from
wherever the data lives: local disk, NFS, S3, GCS), classifies each batch in
``zeroclip.ray.Predictor`` actors (the model loads once per actor) and writes one Parquet dataset
with ``path``, ``label``, ``score``, ``labels_top_k``, ``scores_top_k`` and ``error`` columns. Ray
shows its progress bars as the stages run. On a cluster, start Ray there first (``ray start``) and
pass ``--address auto``; see docs/SCALING.md.
"""

from __future__ import annotations

import argparse
import os
import time

import ray

import zeroclip.ray


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("images", help="a directory (or file, or URI such as s3://bucket/prefix)")
    ap.add_argument("--model", default="ViT-B/32", help="model name or checkpoint path")
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--labels", nargs="+")
    group.add_argument("--label-set", choices=["imagenet", "cifar10", "cifar100"])
    ap.add_argument("--templates", help="imagenet80 or imagenet7 (default: labels as written)")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--output", required=True, help="Parquet output directory")
    ap.add_argument("--concurrency", type=int, default=1, help="number of actors")
    ap.add_argument("--threads", type=int, default=2, help="threads (and CPUs) per actor")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--embedding", action="store_true", help="add each image's embedding")
    ap.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    ap.add_argument(
        "--num-cpus",
        type=int,
        help="CPUs of the local Ray (default: all, and at least one more than the actors reserve, "
        "so the read stage is never starved)",
    )
    args = ap.parse_args()

    if args.address:
        ray.init(address=args.address)
    else:
        cpus = args.num_cpus or max(os.cpu_count() or 1, args.concurrency * args.threads + 1)
        ray.init(num_cpus=cpus, include_dashboard=False)
    start = time.perf_counter()
    ds = ray.data.read_binary_files(args.images, include_paths=True)
    ds = ds.map_batches(
        zeroclip.ray.Predictor,
        fn_constructor_kwargs={
            "model": args.model,
            "labels": args.labels,
            "label_set": args.label_set,
            "templates": args.templates,
            "top_k": args.top_k,
            "threads": args.threads,
            "embedding": args.embedding,
        },
        concurrency=args.concurrency,
        num_cpus=args.threads,
        batch_size=args.batch_size,
    )
    ds.write_parquet(args.output)
    elapsed = time.perf_counter() - start
    stats = ray.data.read_parquet(args.output)
    rows = stats.count()
    failed = stats.filter(lambda r: r["error"] is not None).count()
    print(f"{rows} images in {elapsed:.1f} s ({rows / elapsed:.1f} images/s), {failed} failed")
    ray.shutdown()


if __name__ == "__main__":
    main()
