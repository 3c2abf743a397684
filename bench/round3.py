#!/usr/bin/env python3
"""Speed round 3 (issue 11), one x86 class per run: the image towers of PyTorch, ONNX Runtime
(fp32, and its `quantize_dynamic` int8 model) and zeroclip (fp32, `--precision bf16` and
`--precision int8`) side by side, the weights' memory per precision, and the whole pipeline — `zeroclip
classify DIR` against its own image tower and against the reference doing the same
(bench/reference_classify_dir.py: PIL, batches of 16) — on 640x480 and 4000x3000 JPEGs.

    bench/run.sh --isa native|avx512-vnni|avx512|avx2 [--quick] [--rounds N] [--no-doc] [--note TEXT]
        [--doc-block NAME]

`--isa avx2` restricts every framework that can be restricted to AVX2 + FMA, so the AVX2 class is
measured on an AVX-512 machine: zeroclip with ZEROCLIP_KERNEL=avx2, PyTorch with
ATEN_CPU_CAPABILITY=avx2, MKL_ENABLE_INSTRUCTIONS=AVX2 and DNNL_MAX_CPU_ISA=AVX2. `--isa avx512`
is the AVX-512 class without VNNI and BF16 (ZEROCLIP_KERNEL=avx512; PyTorch's AVX512 capability
with oneDNN held to AVX512_CORE). `--isa avx512-vnni` is the AVX-512 VNNI/BF16 class without AMX
(ZEROCLIP_KERNEL=avx512-vnni; oneDNN held to AVX512_CORE_BF16). `native` is whatever the machine
has, AMX included. ONNX Runtime has no such switch (MLAS picks its kernels from CPUID): it runs
under bench/cpuid_mask.c (LD_PRELOAD), which edits what CPUID tells the process through Linux's
CPUID faulting; on a machine without CPUID faulting (no `cpuid_fault` flag), `--isa avx2` runs it
from bench/ort_xcr0.py's copy of the package, whose XGETBVs report the AVX-512 state disabled, and
the other classes' ONNX Runtime cells are marked unrestricted.
Rounds alternate the contenders; each cell keeps its best round (the median of its timed calls).
The pipeline's rate is marginal: (large - small) images over the difference of the median wall
times of whole processes, so loading cancels out. Results: bench/out/model/round3_<isa>.json and
the `## Speed round 3 (issue 11)` section of docs/PERFORMANCE.md, in the block named after the ISA
or `--doc-block` (so a second machine's run does not replace the first's).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

import model_common as mc
import model_run as mr

ISA_ENV = {
    "native": {},
    "avx512-vnni": {
        "zeroclip": {"ZEROCLIP_KERNEL": "avx512-vnni"},
        "pytorch": {"ATEN_CPU_CAPABILITY": "avx512", "MKL_ENABLE_INSTRUCTIONS": "AVX512_E4",
                    "DNNL_MAX_CPU_ISA": "AVX512_CORE_BF16"},
    },
    "avx512": {
        "zeroclip": {"ZEROCLIP_KERNEL": "avx512"},
        "pytorch": {"ATEN_CPU_CAPABILITY": "avx512", "MKL_ENABLE_INSTRUCTIONS": "AVX512",
                    "DNNL_MAX_CPU_ISA": "AVX512_CORE"},
    },
    "avx2": {
        "zeroclip": {"ZEROCLIP_KERNEL": "avx2"},
        "pytorch": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                    "DNNL_MAX_CPU_ISA": "AVX2"},
    },
}
TOWERS = [("ViT-B-32", 1), ("ViT-B-32", 16), ("RN50", 16)]
SIZES = [(640, 480), (4000, 3000)]
LABELS = ["a diagram", "a dog", "a cat", "a car", "a tree", "a person", "a building", "food"]
SECTION = "## Speed round 3 (issue 11)"
PRECISIONS = ("fp32", "bf16", "int8")


@functools.cache
def cpuid_mask(isa: str) -> dict | None:
    """The environment that restricts ONNX Runtime to `isa` (bench/cpuid_mask.c), built on first
    use; None where this machine cannot (no CPUID faulting), {} for `native`."""
    if isa == "native":
        return {}
    flags = next(l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags")).split()
    if "cpuid_fault" not in flags:
        return None
    src, lib = Path(__file__).with_name("cpuid_mask.c"), mr.OUT / "cpuid_mask.so"
    if not lib.exists() or lib.stat().st_mtime < src.stat().st_mtime:
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return {"LD_PRELOAD": str(lib), "ZEROCLIP_CPUID_MASK": isa}


@functools.cache
def ort_restriction(isa: str) -> tuple:
    """How ONNX Runtime is held to `isa`: (how, environment). `how` is "cpuid_mask" (CPUID faulting),
    "xcr0" (bench/ort_xcr0.py's copy of the package, AVX2 only), "" for `native`, or None where
    neither can (its cells are then marked unrestricted)."""
    if isa == "native":
        return "", {}
    mask = cpuid_mask(isa)
    if mask is not None:
        return "cpuid_mask", mask
    if isa == "avx2" and shutil.which("objdump"):
        import ort_xcr0

        path = ort_xcr0.build(mr.OUT.parent / "ort-avx2")
        return "xcr0", {"PYTHONPATH": os.pathsep.join(filter(None, [str(path), os.environ.get("PYTHONPATH")]))}
    return None, {}


def env_for(isa: str, framework: str) -> dict:
    extra = dict(ISA_ENV[isa].get(framework, {}))
    if framework == "onnxruntime":
        extra.update(ort_restriction(isa)[1])
    return dict(mr.ENV, **extra)


def make_dir(directory: Path, size: tuple, count: int) -> None:
    """`count` JPEGs of `size` made from the repository's photo fixtures (varied per file)."""
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    sources = sorted((mr.ROOT / "tests" / "fixtures" / "image" / "inputs").glob("photo_*.jpg"))
    for i in range(count):
        path = directory / f"img{i:04d}.jpg"
        if path.exists():
            continue
        with Image.open(sources[i % len(sources)]) as im:
            im = im.convert("RGB").resize(size, Image.BICUBIC)
            if i // len(sources) % 2:
                im = im.transpose(Image.FLIP_LEFT_RIGHT)
            im.rotate(i % 7, expand=False).save(path, quality=90 - i % 10)


def towers(isa: str, rounds: int, quick: bool) -> list:
    px = mr.OUT / f"pixels_{mc.RES}x16.f32"
    rec = []
    for rnd in range(rounds):
        mr.log(f"towers: round {rnd + 1} of {rounds}")
        for model, batch in TOWERS:
            runs, warm = (("3", "1") if quick else ("12", "2")) if batch == 1 else (("2", "1") if quick else ("5", "1"))
            common = ["--batch", str(batch), "--warmup", warm, "--runs", runs]
            for r in mr.measure([mr.PY, "model_torch.py", "image", "--model", model] + common,
                                env_for(isa, "pytorch")):
                rec.append({**r, "precision": "fp32"})
            for extra in ([], ["--int8"]):
                rec += mr.measure([mr.PY, "model_ort.py", "image", "--model", model] + common + extra,
                                  env_for(isa, "onnxruntime"))
            for precision in PRECISIONS:
                dump = mr.OUT / "round3" / isa / precision
                rec += mr.measure([mr.BENCH_BIN, "image", "--model", mr.OUT / f"{model}.pt", "--pixels", px,
                                   "--threads", mr.THREADS, "--precision", precision, "--dump", dump] + common,
                                  env_for(isa, "zeroclip"))
    return rec


def loads(isa: str) -> list:
    """RSS after loading each model in each precision (fresh processes)."""
    rec = []
    for model in ("ViT-B-32", "RN50"):
        for precision in PRECISIONS:
            rec += mr.measure([mr.BENCH_BIN, "load", "--model", mr.OUT / f"{model}.pt", "--threads", mr.THREADS,
                               "--precision", precision], env_for(isa, "zeroclip"))
    return rec


def pipelines(isa: str, rounds: int, quick: bool) -> dict:
    small, large = (8, 24) if quick else (16, 64)
    ckpt = mr.OUT / "ViT-B-32.pt"
    out = {}
    for w, h in SIZES:
        dirs = {}
        for n in (small, large):
            dirs[n] = mr.OUT / "round3" / f"jpeg{w}x{h}_{n}"
            make_dir(dirs[n], (w, h), n)
        contenders = {
            "zeroclip": (lambda d: [mr.CLI_BIN, "classify", d, "--labels", *LABELS, "--model", ckpt,
                                    "--threads", mr.THREADS, "--batch-size", "16", "--no-cache",
                                    "--format", "jsonl"], "zeroclip"),
            "reference": (lambda d: [mr.PY, mr.ROOT / "bench" / "reference_classify_dir.py", d, ckpt, *LABELS],
                          "pytorch"),
        }
        walls = {name: {small: [], large: []} for name in contenders}
        for rnd in range(rounds):
            for name, (cmd, fw) in contenders.items():
                for n, d in dirs.items():
                    if rnd == 0:
                        mr.run_process(cmd(d), mr.OUT / "round3" / "stdout.txt", env_for(isa, fw))  # page cache
                    r = mr.run_process(cmd(d), mr.OUT / "round3" / "stdout.txt", env_for(isa, fw))
                    walls[name][n].append(r["wall_s"])
                    mr.log(f"  {w}x{h} {name} {n} images: {r['wall_s']:.2f} s")
        out[f"{w}x{h}"] = {
            name: {"small": small, "large": large, "walls": v,
                   "marginal_images_per_s": (large - small)
                   / max(statistics.median(v[large]) - statistics.median(v[small]), 1e-9)}
            for name, v in walls.items()
        }
    return out


def cosines(isa: str) -> dict:
    """Smallest cosine of each low precision's image embeddings to fp32's, per model."""
    res = {}
    for precision in PRECISIONS[1:]:
        for model in ("ViT-B-32", "RN50"):
            name = f"zeroclip_{model}_image_b16.f32"
            a, b = (mr.OUT / "round3" / isa / p / name for p in ("fp32", precision))
            if a.exists() and b.exists():
                x, y = (np.fromfile(p, "<f4").reshape(16, -1).astype(np.float64) for p in (a, b))
                c = (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
                res[f"{model} {precision}"] = float(c.min())
    return res


def render(res: dict) -> str:
    isa, m, rec = res["isa"], res["machine"], res["records"]

    def rate(fw, precision, model, batch):
        found = [r["items_per_s"] for r in rec if r["framework"] == fw and r.get("precision", "fp32") == precision
                 and r["model"] == model and r.get("batch") == batch]
        return max(found) if found else None

    def fmt(v, nd=1):
        return "—" if v is None else f"{v:.{nd}f}"

    def ratio(a, b):
        return None if a is None or b is None or b == 0 else a / b

    def verdict(r, target):
        return "—" if r is None else ("**met**" if r >= target else "not met")

    kernels = sorted({f"{r.get('precision')}: {r.get('kernel', '?')}" for r in rec if r["framework"] == "zeroclip"})
    unrestricted = {"onnxruntime"} if res.get("ort_unrestricted") else set()
    how = res.get("ort_restriction", "cpuid_mask")
    key = res["doc_block"]
    lines = [f"<!-- round3:{key}:begin (written by bench/run.sh --isa {isa}) -->", ""]
    lines.append(f"**{isa}** — run {res['started']} → {res['finished']} UTC{' (--quick)' if res['quick'] else ''}, "
                 f"load average {res['load_before']} before, {res['load_after']} after"
                 + (f"; {res['note']}" if res["note"] else "") + ".")
    lines.append(f"Machine: {m['cpu']}, {m['cores']} cores; SIMD flags: {', '.join(m['simd_flags'])}. "
                 f"ISA used: `{isa}` (zeroclip kernels — {'; '.join(kernels)}"
                 + ("; ONNX Runtime unrestricted: no CPUID faulting here" if unrestricted
                    else "; ONNX Runtime under bench/cpuid_mask.c" if how == "cpuid_mask"
                    else "; ONNX Runtime with XCR0 read as AVX-only (bench/ort_xcr0.py)" if how == "xcr0"
                    else "") + "). "
                 f"torch {m['torch']}, onnxruntime {m['onnxruntime']}; 2 threads each; best of {res['rounds']} "
                 "rounds of the median call.")
    lines.append("")
    ort_note = " (unrestricted)" if "onnxruntime" in unrestricted else ""
    lines.append(f"| images/s | PyTorch | ORT fp32{ort_note} | ORT int8{ort_note} | zeroclip fp32 | zeroclip bf16 | "
                 "zeroclip int8 | fp32 ÷ ORT | fp32 ÷ PyTorch | bf16 ÷ ORT fp32 | int8 ÷ own fp32 | int8 ÷ ORT int8 |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for model, batch in TOWERS:
        pt, ox, oq = (rate("pytorch", "fp32", model, batch), rate("onnxruntime", "fp32", model, batch),
                      rate("onnxruntime", "int8", model, batch))
        zf, zb, zq = (rate("zeroclip", p, model, batch) for p in PRECISIONS)
        lines.append(f"| {model} image, batch {batch} | {fmt(pt)} | {fmt(ox)} | {fmt(oq)} | {fmt(zf)} | {fmt(zb)} | "
                     f"{fmt(zq)} | {fmt(ratio(zf, ox), 2)}× | {fmt(ratio(zf, pt), 2)}× | {fmt(ratio(zb, ox), 2)}× | "
                     f"{fmt(ratio(zq, zf), 2)}× | {fmt(ratio(zq, oq), 2)}× |")
    lines.append("")
    vit = [(b, rate("zeroclip", "fp32", "ViT-B-32", b), rate("onnxruntime", "fp32", "ViT-B-32", b)) for b in (1, 16)]
    rn = (rate("zeroclip", "fp32", "RN50", 16), rate("onnxruntime", "fp32", "RN50", 16), rate("pytorch", "fp32", "RN50", 16))
    checks = [f"ViT-B/32 fp32 ≥ 1.0× ORT at batch {b}: {verdict(ratio(z, o), 1.0)}" for b, z, o in vit]
    checks.append(f"RN50 batch 16 fp32 ≥ 1.0× ORT: {verdict(ratio(rn[0], rn[1]), 1.0)}, ≥ 1.5× PyTorch: "
                  f"{verdict(ratio(rn[0], rn[2]), 1.5)}")
    # The classes whose products may use AVX-512 BF16 / VNNI (and AMX, natively).
    bf16_native = "avx512_bf16" in m["simd_flags"] and isa in ("native", "avx512-vnni")
    for b in (1, 16):
        zb, ox = rate("zeroclip", "bf16", "ViT-B-32", b), rate("onnxruntime", "fp32", "ViT-B-32", b)
        checks.append(f"ViT-B/32 bf16 ≥ 1.5× ORT fp32 at batch {b} (AVX-512 BF16 hardware): "
                      + (verdict(ratio(zb, ox), 1.5) if bf16_native else "not applicable (no vdpbf16ps in use)"))
    vnni = "avx512_vnni" in m["simd_flags"] and isa in ("native", "avx512-vnni")
    for b in (1, 16):
        zq, zf, oq = (rate("zeroclip", "int8", "ViT-B-32", b), rate("zeroclip", "fp32", "ViT-B-32", b),
                      rate("onnxruntime", "int8", "ViT-B-32", b))
        own = (f"≥ 2× own fp32 (VNNI): {verdict(ratio(zq, zf), 2.0)}" if vnni
               else f"faster than own fp32 (no VNNI): {verdict(ratio(zq, zf), 1.0001)}")
        checks.append(f"ViT-B/32 int8 batch {b}: {own}; ≥ 1.2× ORT int8: {verdict(ratio(zq, oq), 1.2)}")
    lines.append("Targets: " + "; ".join(checks) + ".")
    lines.append("")
    lds = res.get("loads") or []
    if lds:
        def weights_mb(model, precision):
            found = [r["rss_mb"] - r["rss_before_mb"] for r in lds if r["model"] == model and r.get("precision") == precision]
            return min(found) if found else None
        cells = []
        for model in ("ViT-B-32", "RN50"):
            f32 = weights_mb(model, "fp32")
            parts = [f"{p} {fmt(weights_mb(model, p), 0)} MB ({fmt(ratio(weights_mb(model, p), f32), 2)}×)" for p in PRECISIONS]
            cells.append(f"{model}: " + ", ".join(parts))
        q = ratio(weights_mb("ViT-B-32", "int8"), weights_mb("ViT-B-32", "fp32"))
        lines.append("Memory after load (RSS after − RSS before, both towers): " + "; ".join(cells)
                     + f". ViT-B/32 int8 ≤ 0.3× fp32: {verdict(None if q is None else 0.3 / q, 1.0)}.")
        lines.append("")
    cos = res.get("cosines") or {}
    if cos:
        lines.append("Low precisions against fp32, image embeddings of the 16 bench inputs (random full-size weights), "
                     "smallest cosine: " + ", ".join(f"{k} {v:.6f}" for k, v in cos.items())
                     + " (targets: bf16 ≥ 0.9995, int8 ≥ 0.998).")
        lines.append("")
    pipes = res.get("pipelines") or {}
    if pipes:
        tower = rate("zeroclip", "fp32", "ViT-B-32", 16)
        lines.append("Whole pipeline, ViT-B/32, 8 labels, batches of 16, marginal images/s:")
        lines.append("")
        lines.append("| JPEGs | `classify DIR` (fp32) | ÷ own tower (batch 16) | reference script | ÷ reference | targets |")
        lines.append("|---|---|---|---|---|---|")
        for size, p in pipes.items():
            zc, ref = (p[k]["marginal_images_per_s"] for k in ("zeroclip", "reference"))
            rt, rr = ratio(zc, tower), ratio(zc, ref)
            lines.append(f"| {size} ({p['zeroclip']['small']} → {p['zeroclip']['large']} images) | {fmt(zc)} | "
                         f"{fmt(rt, 2)} | {fmt(ref)} | {fmt(rr, 2)}× | "
                         f"≥ 0.9 of tower: {verdict(rt, 0.9)}; ≥ 1.5× reference: {verdict(rr, 1.5)} |")
        lines.append("")
    lines.append(f"<!-- round3:{key}:end -->")
    return "\n".join(lines)


def write_doc(block: str, isa: str) -> None:
    doc = mr.DOC
    text = doc.read_text()
    begin, end = f"<!-- round3:{isa}:begin", f"<!-- round3:{isa}:end -->"
    if begin in text and end in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    elif SECTION in text:
        start = text.index(SECTION)
        nxt = text.find("\n## ", start + len(SECTION))
        at = len(text) if nxt < 0 else nxt + 1
        text = text[:at].rstrip("\n") + f"\n\n{block}\n\n" + text[at:]
    else:
        text = text.rstrip("\n") + f"\n\n{SECTION}\n\n{block}\n"
    doc.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--isa", choices=sorted(ISA_ENV), required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-pipeline", action="store_true", help="towers only")
    ap.add_argument("--no-doc", action="store_true")
    ap.add_argument("--note", default="")
    ap.add_argument("--doc-block", default=None,
                    help="name of the block in docs/PERFORMANCE.md (default: the ISA)")
    args = ap.parse_args()
    started = datetime.datetime.now(datetime.timezone.utc)
    how = ort_restriction(args.isa)[0]
    res = {"isa": args.isa, "machine": mr.machine(), "quick": args.quick, "rounds": args.rounds,
           "ort_unrestricted": how is None, "ort_restriction": how,
           "note": args.note, "doc_block": args.doc_block or args.isa, "load_before": mr.loadavg(),
           "started": started.isoformat(timespec="seconds")}
    res["records"] = towers(args.isa, args.rounds, args.quick)
    res["loads"] = loads(args.isa)
    res["cosines"] = cosines(args.isa)
    if not args.no_pipeline:
        res["pipelines"] = pipelines(args.isa, args.rounds, args.quick)
    res["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    res["load_after"] = mr.loadavg()
    (mr.OUT / f"round3_{res['doc_block']}.json").write_text(json.dumps(res, indent=1))
    block = render(res)
    print(block)
    if not args.no_doc:
        write_doc(block, res["doc_block"])
        mr.log(f"wrote {mr.DOC.relative_to(mr.ROOT)} ({SECTION}, {args.isa})")


if __name__ == "__main__":
    sys.exit(main())
