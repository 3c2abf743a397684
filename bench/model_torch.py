#!/usr/bin/env python3
"""PyTorch side of the model benchmark: openai-clip (`clip.load(path)`, fp32 on the CPU), 2 threads.

    model_torch.py image --model ViT-B-32 [--batch 1 16] [--warmup 2] [--runs 10]
    model_torch.py text  --model ViT-B-32 --kind short|long [--warmup 2] [--runs 5]
    model_torch.py load  --model ViT-B-32
    model_torch.py matmul [--runs 9]   (F.linear GFLOP/s on ViT-B/32's Linear shapes; no model)

Prints one JSON object per measurement. `text` times `clip.tokenize` + `encode_text` on 16
prompts; `load` runs alone in its process so its peak RSS is the load's.
"""

import argparse
import time

import model_common as mc
import torch

import clip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("task", choices=["image", "text", "load", "matmul"])
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--batch", type=int, nargs="*", default=[1, 16])
    ap.add_argument("--kind", choices=["short", "long"], default="short")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    path = mc.OUT / f"{args.model}.pt"
    base = {"framework": "pytorch", "model": args.model, "task": args.task,
            "version": torch.__version__, "threads": torch.get_num_threads()}

    if args.task == "matmul":
        matmul_shapes(args.runs, base)
        return
    before = mc.rss_mb()
    t0 = time.perf_counter()
    model, _ = clip.load(str(path), device="cpu")
    load_s = time.perf_counter() - t0
    if args.task == "load":
        mc.emit({**base, "load_s": load_s, "rss_before_mb": before["rss_mb"], **mc.rss_mb()})
        return
    model.eval()

    with torch.inference_mode():
        if args.task == "image":
            for batch in args.batch:
                x = torch.from_numpy(mc.pixels(batch))
                stats = mc.time_calls(lambda: model.encode_image(x), args.warmup, args.runs)
                if batch == max(args.batch):
                    mc.dump(model.encode_image(x).numpy(), f"pytorch_{args.model}_image_b{batch}.f32")
                mc.emit({**base, "batch": batch, "items_per_s": batch / stats["median_s"], **stats})
        else:
            prompts = mc.read_prompts(mc.OUT / f"prompts_{args.kind}.txt")
            truncate = args.kind == "long"

            def run():
                return model.encode_text(clip.tokenize(prompts, truncate=truncate))

            stats = mc.time_calls(run, args.warmup, args.runs)
            mc.dump(run().numpy(), f"pytorch_{args.model}_text_{args.kind}.f32")
            mc.emit({**base, "kind": args.kind, "batch": len(prompts),
                     "items_per_s": len(prompts) / stats["median_s"], **stats})


@torch.inference_mode()
def matmul_shapes(runs: int, base: dict) -> None:
    """The shapes of bench_model's `matmul` task, through the GEMM PyTorch's Linear uses."""
    shapes = [("in_proj b16", 800, 768, 2304), ("out_proj b16", 800, 768, 768), ("c_fc b16", 800, 768, 3072),
              ("c_proj b16", 800, 3072, 768), ("in_proj b1", 50, 768, 2304), ("c_fc b1", 50, 768, 3072),
              ("c_proj b1", 50, 3072, 768), ("text c_fc 16 short prompts", 128, 512, 2048)]
    for name, m, k, n in shapes:
        x, w = torch.randn(m, k), torch.randn(n, k) * 0.02
        stats = mc.time_calls(lambda: torch.nn.functional.linear(x, w), 2, runs)
        mc.emit({**base, "task": "matmul", "shape": f"{name}: {m}x{k}x{n}",
                 "gflops": 2 * m * k * n / stats["median_s"] / 1e9})


if __name__ == "__main__":
    main()
