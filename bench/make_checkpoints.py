#!/usr/bin/env python3
"""Full-size random-weight checkpoints, ONNX image towers and shared inputs for the model benchmark.

Writes into the cache folder (default bench/out/model, git-ignored; never commit it):
- `ViT-B-32.pt`, `RN50.pt`: `clip.model.CLIP` built with the published hyper-parameters (the
  values `clip.model.build_model` derives from OpenAI's files), CLIP's own random init, converted
  to fp16 with `convert_weights` and saved like OpenAI's files (`torch.jit.trace` of forward,
  encode_image and encode_text, then `torch.jit.save`), so `clip.load(path)` reads them as it
  reads the published ones;
- `ViT-B-32.visual.onnx`, `RN50.visual.onnx`: the image tower in fp32 (the weights as `clip.load`
  makes them on the CPU), exported with a dynamic batch axis;
- `ViT-B-32.visual.int8.onnx`, `RN50.visual.int8.onnx`: the same towers through ONNX Runtime's
  `quantize_dynamic` (int8 weights of the MatMul/Gemm layers, activations quantized as the model
  runs; convolutions stay fp32), the int8 peer of zeroclip's `--precision int8`;
- `pixels_224x16.f32`: 16 random normalized images, raw little-endian f32 `[16, 3, 224, 224]`;
  every framework reads the same file.

Files that already exist are kept (delete the folder to rebuild). Weights are random: the
benchmark measures speed, and `bench/model_run.py` checks that the frameworks agree on them.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

import clip
from clip.model import CLIP, convert_weights

# (embed_dim, image_resolution, vision_layers, vision_width, vision_patch_size,
#  context_length, vocab_size, transformer_width, transformer_heads, transformer_layers)
ARCHS = {
    "ViT-B-32": (512, 224, 12, 768, 32, 77, 49408, 512, 8, 12),
    "RN50": (1024, 224, (3, 4, 6, 3), 64, None, 77, 49408, 512, 8, 12),
}
BATCH = 16
RES = 224


def make_checkpoint(stem: str, path: Path, seed: int) -> None:
    torch.manual_seed(seed)
    model = CLIP(*ARCHS[stem]).eval()
    convert_weights(model)
    # OpenAI's archives hold these as buffers; clip.load(jit=True) reads them.
    for attr, value in (("input_resolution", RES), ("context_length", 77), ("vocab_size", 49408)):
        if hasattr(model, attr):
            delattr(model, attr)
        model.register_buffer(attr, torch.tensor(value))
    image = torch.randn(1, 3, RES, RES).half()
    text = clip.tokenize(["a diagram", "a dog"])
    traced = torch.jit.trace_module(
        model,
        {"forward": (image, text), "encode_image": (image,), "encode_text": (text,)},
        check_trace=False,
    )
    torch.jit.save(traced, str(path))


def export_onnx(ckpt: Path, path: Path) -> None:
    model, _ = clip.load(str(ckpt), device="cpu", jit=False)  # fp32 on the CPU, as benchmarked
    visual = model.visual.eval()
    x = torch.randn(1, 3, RES, RES)
    with torch.no_grad():
        torch.onnx.export(
            visual, (x,), str(path), dynamo=False, opset_version=17,
            input_names=["pixels"], output_names=["image_embeds"],
            dynamic_axes={"pixels": {0: "batch"}, "image_embeds": {0: "batch"}},
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "model"))
    ap.add_argument("--models", nargs="*", default=list(ARCHS), choices=list(ARCHS))
    args = ap.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    pixels = out / f"pixels_{RES}x{BATCH}.f32"
    if not pixels.exists():
        gen = torch.Generator().manual_seed(6)
        torch.randn(BATCH, 3, RES, RES, generator=gen).numpy().astype("<f4").tofile(pixels)
    for i, stem in enumerate(args.models):
        ckpt = out / f"{stem}.pt"
        if not ckpt.exists():
            t0 = time.time()
            tmp = ckpt.with_suffix(".pt.tmp")
            make_checkpoint(stem, tmp, 600 + i)
            tmp.rename(ckpt)
            print(f"made {ckpt} ({ckpt.stat().st_size / 1e6:.0f} MB, {time.time() - t0:.0f} s)", file=sys.stderr)
        onnx_path = out / f"{stem}.visual.onnx"
        if not onnx_path.exists():
            t0 = time.time()
            tmp = out / f"{stem}.tmp.onnx"
            export_onnx(ckpt, tmp)
            tmp.rename(onnx_path)
            print(f"made {onnx_path} ({onnx_path.stat().st_size / 1e6:.0f} MB, {time.time() - t0:.0f} s)",
                  file=sys.stderr)
        int8_path = out / f"{stem}.visual.int8.onnx"
        if not int8_path.exists():
            from onnxruntime.quantization import QuantType, quantize_dynamic

            tmp = out / f"{stem}.tmp.int8.onnx"
            # The linear layers only, as zeroclip's int8 (convolutions stay fp32).
            quantize_dynamic(str(onnx_path), str(tmp), weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul", "Gemm"])
            tmp.rename(int8_path)
            print(f"made {int8_path} ({int8_path.stat().st_size / 1e6:.0f} MB)", file=sys.stderr)
    np.fromfile(pixels, dtype="<f4").reshape(BATCH, 3, RES, RES)  # size check


if __name__ == "__main__":
    main()
