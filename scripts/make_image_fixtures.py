#!/usr/bin/env python3
"""Make the image-preprocessing fixtures in tests/fixtures/image/ from the reference.

Run with /work/venv/bin/python (openai-clip, torch, torchvision, Pillow, numpy, scikit-image,
scikit-learn). For every input image it stores the file itself under inputs/, and the reference's
uint8 crop -- clip's `_transform(n)` up to and including `convert("RGB")`, i.e.
Resize(n, BICUBIC) -> CenterCrop(n) -> RGB, on the image as `Image.open` gives it -- as an RGB PNG
under expected/. For a few inputs it also stores the full normalized float32 tensor
`preprocess(img)` as .npy under tensors/. manifest.json lists everything with Pillow's mode.

Synthetic images are deterministic (seeded). PNGs of bit depths and colour types Pillow cannot
write are written by a minimal PNG encoder below.
"""

import io
import json
import os
import shutil
import struct
import sys
import zlib

import numpy as np
import PIL
import PIL.features
import torch
import torchvision
from PIL import Image

import clip
from clip.clip import _transform

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "image")
RNG = np.random.default_rng(20261128)


def png_bytes(width, height, bit_depth, color_type, rows, palette=None, trns=None):
    """A PNG from packed scanlines (list of bytes), each row with filter type 2 (Up)."""

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    prev = bytes(len(rows[0]))
    raw = b""
    for r in rows:
        raw += b"\x02" + bytes((a - b) & 0xFF for a, b in zip(r, prev))
        prev = r
    out = b"\x89PNG\r\n\x1a\n"
    out += chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0))
    if palette is not None:
        out += chunk(b"PLTE", palette)
    if trns is not None:
        out += chunk(b"tRNS", trns)
    out += chunk(b"IDAT", zlib.compress(raw, 9))
    out += chunk(b"IEND", b"")
    return out


def pack_bits(values, bits):
    """Pack a row of small ints MSB first."""
    per = 8 // bits
    out = bytearray()
    for i in range(0, len(values), per):
        byte = 0
        group = list(values[i : i + per]) + [0] * (per - len(values[i : i + per]))
        for v in group:
            byte = (byte << bits) | int(v)
        out.append(byte)
    return bytes(out)


def smooth(h, w, channels, lo=0, hi=255, seed_noise=0.0, blocks=True):
    """Smooth gradients with hard-edged blocks (so the bicubic overshoot gets clipped) and
    optional noise: resampling-sensitive but compressible."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = []
    for c in range(channels):
        fx, fy = 2 + c, 3 + 2 * c
        v = 0.5 + 0.25 * np.sin(2 * np.pi * fx * x / max(w, 2) + c) + 0.25 * np.cos(2 * np.pi * fy * y / max(h, 2))
        if blocks:
            v = v + 0.45 * (((x // (29 + 4 * c)) + (y // (23 + 3 * c))) % 2) - 0.2
        if seed_noise:
            v = v + RNG.normal(0, seed_noise / 255.0, size=(h, w))
        planes.append(np.clip(lo + v * (hi - lo), lo, hi))
    return np.stack(planes, axis=-1)


def skimage_img(name):
    import skimage.data

    return getattr(skimage.data, name)()


def synthetic_pngs():
    out = {}
    h, w = 190, 257
    # Gray 1/2/4/8/16 bit.
    for bits in (1, 2, 4):
        vals = (smooth(h, w, 1)[..., 0] / 255.0 * ((1 << bits) - 1)).round().astype(np.uint8)
        rows = [pack_bits(r, bits) for r in vals]
        out[f"gray{bits}.png"] = png_bytes(w, h, bits, 0, rows)
    g8 = smooth(h, w, 1, seed_noise=4.0)[..., 0].astype(np.uint8)
    out["gray8.png"] = png_bytes(w, h, 8, 0, [r.tobytes() for r in g8])
    # 16-bit gray mostly below 256 with some above, to show Pillow's I;16 -> RGB clipping.
    g16 = smooth(h, w, 1, lo=0, hi=420).astype(">u2")
    out["gray16.png"] = png_bytes(w, h, 16, 0, [r.tobytes() for r in g16])
    # Gray + alpha 8/16.
    la = smooth(h, w, 2).astype(np.uint8)
    la[:20, :, 1] = 0
    la[20:40, :, 1] = 255
    out["la8.png"] = png_bytes(w, h, 8, 4, [r.tobytes() for r in la])
    la16 = np.minimum(smooth(h, w, 2).astype(np.uint8).astype(np.uint32) * 257 + 3, 65535).astype(">u2")
    out["la16.png"] = png_bytes(w, h, 16, 4, [r.tobytes() for r in la16])
    # RGB 8/16, RGBA 8/16.
    rgb16 = np.minimum(smooth(h, w, 3).astype(np.uint8).astype(np.uint32) * 257 + 3, 65535).astype(">u2")
    out["rgb16.png"] = png_bytes(w, h, 16, 2, [r.tobytes() for r in rgb16])
    rgba = smooth(h, w, 4, seed_noise=2.0).astype(np.uint8)
    rgba[:, :30, 3] = 0
    rgba[:, 30:60, 3] = 255
    out["rgba8.png"] = png_bytes(w, h, 8, 6, [r.tobytes() for r in rgba])
    rgba16 = np.minimum(smooth(h, w, 4).astype(np.uint8).astype(np.uint32) * 257 + 3, 65535).astype(">u2")
    out["rgba16.png"] = png_bytes(w, h, 16, 6, [r.tobytes() for r in rgba16])
    # Palettes: 1/2/4/8 bit, with tRNS on two of them; the 4-bit palette is shorter than 16
    # entries, so some indices fall outside it.
    for bits, ncolors, with_trns in ((1, 2, False), (2, 4, True), (4, 11, False), (8, 256, True)):
        pal = RNG.integers(0, 256, size=(ncolors, 3), dtype=np.uint8)
        idx = (smooth(h, w, 1)[..., 0] / 255.0 * ((1 << bits) - 1)).round().astype(np.uint8)
        rows = [pack_bits(r, bits) if bits < 8 else r.tobytes() for r in idx]
        trns = bytes(RNG.integers(0, 256, size=ncolors, dtype=np.uint8)) if with_trns else None
        out[f"palette{bits}.png"] = png_bytes(w, h, bits, 3, rows, pal.tobytes(), trns)
    return out


def pil_save(im, fmt, **kw):
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def inputs():
    """(file name, bytes, resolution) for every fixture."""
    items = [(name, data, 224) for name, data in synthetic_pngs().items()]
    rgb = lambda h, w: Image.fromarray(smooth(h, w, 3).astype(np.uint8), "RGB")
    rgba = lambda h, w: Image.fromarray(smooth(h, w, 4).astype(np.uint8), "RGBA")
    # Sizes.
    items += [
        ("size_1x1.png", pil_save(rgb(1, 1), "PNG"), 224),
        ("size_1x5000.png", pil_save(rgb(5000, 1), "PNG"), 224),
        ("size_5000x1.png", pil_save(rgb(1, 5000), "PNG"), 224),
        ("size_224x224_rgba.png", pil_save(rgba(224, 224), "PNG"), 224),
        ("size_225x224.png", pil_save(rgb(224, 225), "PNG"), 224),
        ("size_224x300_rgba.png", pil_save(rgba(300, 224), "PNG"), 224),
        ("size_225x224.png", None, 336),
    ]
    # Real photographs (scikit-image / scikit-learn data) and JPEG variants.
    astronaut = Image.fromarray(skimage_img("astronaut"))
    chelsea = Image.fromarray(skimage_img("chelsea"))
    coffee = Image.fromarray(skimage_img("coffee"))
    camera = Image.fromarray(skimage_img("camera"))
    import skimage.data

    rocket = open(os.path.join(os.path.dirname(skimage.data.__file__), "rocket.jpg"), "rb").read()
    gif = open(os.path.join(os.path.dirname(skimage.data.__file__), "no_time_for_that_tiny.gif"), "rb").read()
    exif = Image.Exif()
    exif[0x0112] = 6
    items += [
        ("photo_rocket.jpg", rocket, 224),
        ("photo_astronaut_420.jpg", pil_save(astronaut, "JPEG", quality=75), 224),
        ("photo_chelsea_422.jpg", pil_save(chelsea, "JPEG", quality=80, subsampling=1), 224),
        ("photo_coffee_444_progressive.jpg", pil_save(coffee, "JPEG", quality=70, subsampling=0, progressive=True), 224),
        ("photo_coffee_progressive_420.jpg", pil_save(coffee.resize((301, 201)), "JPEG", quality=85, progressive=True), 224),
        ("photo_camera_gray.jpg", pil_save(camera, "JPEG", quality=75), 224),
        ("photo_chelsea_cmyk.jpg", pil_save(chelsea.convert("CMYK"), "JPEG", quality=75), 224),
        ("photo_astronaut_exif6.jpg", pil_save(astronaut.resize((300, 200)), "JPEG", quality=75, exif=exif), 224),
        ("photo_rocket.jpg", rocket, 64),
        ("rgba8.png", None, 64),
        ("photo_camera.png", pil_save(camera.resize((256, 256)), "PNG"), 224),
        ("large_4000x3000.jpg", pil_save(Image.fromarray(smooth(3000, 4000, 3, blocks=False).astype(np.uint8)), "JPEG", quality=80), 224),
        ("anim_first_frame.gif", gif, 224),
        ("chelsea_quantized.gif", pil_save(chelsea.quantize(64), "GIF"), 224),
        ("coffee_lossless.webp", pil_save(coffee.resize((300, 200)), "WEBP", lossless=True), 224),
        ("rgba_lossless.webp", pil_save(rgba(190, 257), "WEBP", lossless=True), 224),
        ("coffee_lossy.webp", pil_save(coffee.resize((300, 200)), "WEBP", quality=80), 224),
        ("chelsea_24bit.bmp", pil_save(chelsea.resize((150, 100)), "BMP"), 224),
        ("chelsea_palette.bmp", pil_save(chelsea.resize((150, 100)).quantize(100), "BMP"), 224),
        ("camera_gray.bmp", pil_save(camera.resize((150, 100)), "BMP"), 224),
        ("coffee_rgb.tiff", pil_save(coffee.resize((150, 100)), "TIFF", compression="tiff_lzw"), 224),
        ("camera_gray.tiff", pil_save(camera.resize((300, 200)), "TIFF", compression="tiff_lzw"), 224),
    ]
    return items


def reference_crop(img, n):
    t = _transform(n)
    # Resize, CenterCrop, convert("RGB"): the first three steps of clip's preprocess.
    for step in t.transforms[:3]:
        img = step(img)
    return img


def main():
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    for sub in ("inputs", "expected", "tensors"):
        os.makedirs(os.path.join(ROOT, sub))
    manifest = {
        "reference": {
            "pillow": PIL.__version__,
            "libjpeg_turbo": PIL.features.version("libjpeg_turbo"),
            "webp": PIL.features.version("webp"),
            "torchvision": torchvision.__version__,
            "torch": torch.__version__,
            "transform": "clip.clip._transform(n): Resize(n, BICUBIC), CenterCrop(n), convert('RGB')",
        },
        "fixtures": [],
    }
    # Full normalized tensors, at a small resolution to keep the fixtures small.
    tensor_at = 64
    written = {}
    for name, data, n in inputs():
        if data is None:
            data = written[name]
        else:
            with open(os.path.join(ROOT, "inputs", name), "wb") as f:
                f.write(data)
            written[name] = data
        img = Image.open(io.BytesIO(data))
        mode, size = img.mode, img.size
        crop = reference_crop(img, n)
        assert crop.mode == "RGB" and crop.size == (n, n), (name, crop.mode, crop.size)
        stem = name.replace(".", "_")
        expected = f"{stem}.png" if n == 224 else f"{stem}_at{n}.png"
        crop.save(os.path.join(ROOT, "expected", expected), optimize=True)
        entry = {"input": name, "resolution": n, "mode": mode, "size": list(size), "expected": expected}
        if n == tensor_at:
            tensor = _transform(n)(Image.open(io.BytesIO(data))).numpy().astype(np.float32)
            tname = f"{stem}_at{n}.npy"
            np.save(os.path.join(ROOT, "tensors", tname), tensor)
            entry["tensor"] = tname
        manifest["fixtures"].append(entry)
        print(f"{name:40s} {mode:5s} {size} n={n}", file=sys.stderr)
    with open(os.path.join(ROOT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
