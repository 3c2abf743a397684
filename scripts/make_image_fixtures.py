#!/usr/bin/env python3
"""Make the image-preprocessing fixtures in tests/fixtures/image/ from the reference.

Run with "$(scripts/ref_python.sh numpy scikit-image scikit-learn)" (openai-clip, torch,
torchvision, Pillow, numpy, scikit-image, scikit-learn). For every input image it stores the file itself under inputs/, and the reference's
uint8 crop -- clip's `_transform(n)` up to and including `convert("RGB")`, i.e.
Resize(n, BICUBIC) -> CenterCrop(n) -> RGB, on the image as `Image.open` gives it -- as an RGB PNG
under expected/. For a few inputs it also stores the full normalized float32 tensor
`preprocess(img)` as .npy under tensors/. manifest.json lists everything with Pillow's mode.

Synthetic images are deterministic (seeded). PNGs of bit depths and colour types Pillow cannot
write are written by a minimal PNG encoder below. The YCCK JPEG (which Pillow cannot write) is
compressed by libjpeg-turbo's TurboJPEG API through ctypes.

Dependencies beyond the venv: the Debian package `libturbojpeg0` (libturbojpeg.so.0; install with
`apt-get install -y libturbojpeg0`), for the YCCK JPEG only.

Fixtures with an "expected_exif" entry carry an orientation (EXIF, or XMP which Pillow's getexif
falls back to); that crop is the reference's after `ImageOps.exif_transpose` (zeroclip's opt-in
`apply_exif_orientation`), while "expected" is the reference's default: not turned, except for
TIFF, which Pillow's TIFF plugin turns as it loads it. manifest.json's "refused" list names input
files that zeroclip refuses as unsupported rather than risk differing pixels.
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
from PIL import Image, ImageOps

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


def ycck_jpeg(cmyk, quality=80, subsampling=2):
    """A YCCK JPEG (Adobe marker, transform 2) of an (h, w, 4) uint8 CMYK array, compressed by
    TurboJPEG's tjCompress2 with TJPF_CMYK, which libjpeg-turbo always encodes as YCCK."""
    import ctypes

    tj = ctypes.CDLL("libturbojpeg.so.0")
    tj.tjInitCompress.restype = ctypes.c_void_p
    handle = ctypes.c_void_p(tj.tjInitCompress())
    a = np.ascontiguousarray(cmyk, dtype=np.uint8)
    h, w, _ = a.shape
    buf = ctypes.POINTER(ctypes.c_ubyte)()
    size = ctypes.c_ulong(0)
    tjpf_cmyk = 11
    rc = tj.tjCompress2(handle, a.ctypes.data_as(ctypes.c_void_p), w, w * 4, h, tjpf_cmyk,
                        ctypes.byref(buf), ctypes.byref(size), subsampling, quality, 0)
    assert rc == 0, "tjCompress2 failed"
    out = ctypes.string_at(buf, size.value)
    tj.tjFree(buf)
    tj.tjDestroy(handle)
    adobe = out.find(b"Adobe")
    assert adobe > 0 and out[adobe + 11] == 2, "not a YCCK JPEG"
    return out


def with_orientation(o):
    exif = Image.Exif()
    exif[0x0112] = o
    return exif


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
    # YCCK JPEG (Pillow reads it as CMYK;I through libjpeg's YCCK->CMYK conversion). The CMYK has
    # real black (undercolor removal), and is stored inverted as Adobe applications write it.
    rgb_small = np.asarray(chelsea.resize((150, 100))).astype(np.int32)
    cmy = 255 - rgb_small
    k = cmy.min(axis=2, keepdims=True)
    cmyk = np.concatenate([cmy - k, k], axis=2).astype(np.uint8)
    items.append(("chelsea_ycck.jpg", ycck_jpeg(255 - cmyk), 224))
    # TIFF in every Pillow mode its plugin gives: P, 1, CMYK, I;16, RGBA (synthetic, small).
    small_rgb = rgb(80, 120)
    gray16 = Image.fromarray(smooth(80, 120, 1, lo=0, hi=700)[..., 0].astype(np.uint16))
    assert gray16.mode == "I;16"
    items += [
        ("palette.tiff", pil_save(small_rgb.quantize(40), "TIFF", compression="tiff_lzw"), 224),
        ("bilevel.tiff", pil_save(small_rgb.convert("L").convert("1"), "TIFF"), 224),
        ("cmyk.tiff", pil_save(small_rgb.convert("CMYK"), "TIFF", compression="tiff_lzw"), 48),
        ("gray16.tiff", pil_save(gray16, "TIFF"), 224),
        ("rgba.tiff", pil_save(rgba(40, 60), "TIFF", compression="tiff_lzw"), 48),
        # Gray + alpha (ExtraSamples 2), RGB + unspecified extra sample (ExtraSamples 0, read as
        # RGB), CCITT group 4 bilevel; small crops to keep the fixtures small.
        ("la.tiff", pil_save(rgba(40, 60).convert("LA"), "TIFF", compression="tiff_lzw"), 48),
        ("rgbx.tiff", pil_save(rgb(40, 60).convert("RGBX"), "TIFF", compression="tiff_adobe_deflate"), 48),
        ("bilevel_g4.tiff", pil_save(small_rgb.convert("1"), "TIFF", compression="group4"), 48),
        # JPEG-compressed (libtiff, several strips sharing JPEGTables), RGB and gray.
        ("jpeg_rgb.tiff", pil_save(rgb(400, 120), "TIFF", compression="jpeg", quality=80), 48),
        ("jpeg_gray.tiff", pil_save(rgb(300, 240).convert("L"), "TIFF", compression="jpeg", quality=80), 48),
        ("cmyk_exif8.tiff", pil_save(rgb(40, 60).convert("CMYK"), "TIFF", compression="tiff_lzw", tiffinfo={0x0112: 8}), 48),
    ]
    # EXIF orientation in PNG (eXIf), WebP (EXIF chunk) and TIFF (IFD0 tag); small and non-square
    # so that a rotation changes the crop. Pillow's TIFF plugin applies the orientation itself when
    # it loads the pixels (`TiffImageFile.load_end`), so for TIFF "expected" is already turned.
    items += [
        ("exif6.png", pil_save(rgb(40, 60), "PNG", exif=with_orientation(6)), 48),
        ("exif8_lossless.webp", pil_save(rgb(40, 60), "WEBP", lossless=True, exif=with_orientation(8)), 48),
        ("exif3.tiff", pil_save(rgb(40, 60), "TIFF", tiffinfo={0x0112: 3}), 48),
        ("exif5_gray.tiff", pil_save(rgb(40, 60).convert("L"), "TIFF", tiffinfo={0x0112: 5}), 48),
    ]
    # Tall images whose height shrinks by more than twice what the width does: Pillow 13 then
    # runs the vertical pass first (8-bit, premultiplied RGBA, I;16, and a JPEG).
    tall16 = smooth(140, 40, 1, lo=0, hi=500)[..., 0].astype(">u2")
    items += [
        ("tall_v_first.png", pil_save(rgb(140, 40), "PNG"), 16),
        ("tall_v_first_rgba.png", pil_save(rgba(140, 40), "PNG"), 16),
        ("tall_v_first_gray16.png", png_bytes(40, 140, 16, 0, [r.tobytes() for r in tall16]), 16),
        ("tall_v_first.jpg", pil_save(rgb(300, 80), "JPEG", quality=85), 56),
    ]
    # Orientation only in XMP, which Pillow's getexif falls back to (JPEG APP1, PNG iTXt, WebP
    # "XMP " chunk).
    from PIL.PngImagePlugin import PngInfo

    png_xmp = PngInfo()
    png_xmp.add_itxt("XML:com.adobe.xmp", XMP_ORIENTATION_6.decode())
    items += [
        ("xmp6.jpg", pil_save(rgb(40, 60), "JPEG", quality=90, xmp=XMP_ORIENTATION_6), 48),
        ("xmp6.png", pil_save(rgb(40, 60), "PNG", pnginfo=png_xmp), 48),
        ("xmp6_lossless.webp", pil_save(rgb(40, 60), "WEBP", lossless=True, xmp=XMP_ORIENTATION_6), 48),
    ]
    return items


XMP_ORIENTATION_6 = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'
)


def refused():
    """(file name, bytes, why) for files that zeroclip refuses with an Unsupported error rather
    than risk pixels that differ (see crates/zeroclip-image/src/decode/tiff.rs). The manifest
    records whether the reference reads each one."""
    small_rgb = Image.fromarray(smooth(40, 60, 3).astype(np.uint8), "RGB")
    return [
        ("refused_palette_alpha.tiff", pil_save(small_rgb.quantize(16).convert("PA"), "TIFF"),
         "Pillow mode PA"),
        ("refused_xmp_orientation.tiff", pil_save(small_rgb, "TIFF", tiffinfo={700: XMP_ORIENTATION_6}),
         "orientation only in XMP: Pillow turns it on load after torchvision sized the resize from the unturned size"),
    ]


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
        orientation = Image.open(io.BytesIO(data)).getexif().get(0x0112, 1)
        if orientation != 1:
            turned = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
            exp_exif = f"{stem}_exif.png" if n == 224 else f"{stem}_at{n}_exif.png"
            turned_crop = reference_crop(turned, n)
            if turned_crop.tobytes() == crop.tobytes():
                exp_exif = expected
            else:
                turned_crop.save(os.path.join(ROOT, "expected", exp_exif), optimize=True)
            entry["orientation"] = orientation
            entry["expected_exif"] = exp_exif
        if n == tensor_at:
            tensor = _transform(n)(Image.open(io.BytesIO(data))).numpy().astype(np.float32)
            tname = f"{stem}_at{n}.npy"
            np.save(os.path.join(ROOT, "tensors", tname), tensor)
            entry["tensor"] = tname
        manifest["fixtures"].append(entry)
        print(f"{name:40s} {mode:5s} {size} n={n}", file=sys.stderr)
    manifest["refused"] = []
    for name, data, why in refused():
        with open(os.path.join(ROOT, "inputs", name), "wb") as f:
            f.write(data)
        mode = Image.open(io.BytesIO(data)).mode
        try:
            reference_crop(Image.open(io.BytesIO(data)), 48)
            reference = "reads it"
        except Exception as e:  # the Pillow quirk behind some refusals makes the reference fail
            reference = f"fails: {type(e).__name__}: {e}"
        manifest["refused"].append({"input": name, "mode": mode, "why": why, "reference": reference})
    with open(os.path.join(ROOT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
