#!/usr/bin/env python3
"""Precision check: `--precision bf16` and `int8` against fp32 on any checkpoint, through the CLI.

Needs numpy and a built `zeroclip` CLI, no PyTorch: the CLI does all the model work. For each CPU
kernel class asked for (`--kernels`: `native` leaves `ZEROCLIP_KERNEL` unset, so everything the CPU
has is used; the other classes of `ZEROCLIP_KERNEL` set it — `avx512-vnni` without AMX, `avx512`
without VNNI and BF16, `avx2-vnni`, `avx2`, `portable`, `candle`)
and each precision, it runs

- `zeroclip embed` on the images (raw image embeddings),
- `zeroclip embed --texts-file` on the label set's prompts ("a photo of a {label}.", as `classify
  --label-set` builds them; raw text embeddings),
- `zeroclip classify --label-set SET --top-k 1 --format jsonl --no-cache` on the images,

and compares each run to fp32 on the first kernel listed: cosine of every image embedding and of
every text embedding to fp32's (min / mean: the image and the text tower end to end), and how many
images keep fp32's top-1 label — with both towers in the run's precision (classify's labels), and
with one tower in it and the other in fp32 (from the embeddings: which tower moves the labels).
Two columns explain a lost top-1: the median gap between fp32's best and second-best image-label
cosine, and the largest change of any image-label cosine the run made. If every image-label cosine
moves by at most d, only an image whose fp32 margin is at most 2d can change its top-1 label.

As a consistency check the top-1 label is also computed from the embeddings (argmax of the cosine);
a warning says when it differs from `classify`'s (then the prompts here are not the CLI's).

Usage (from the repository root):

    ZEROCLIP_CLI=target/release/zeroclip python3 scripts/full_size_check.py \\
        --precision-check ViT-B/32 [--images DIR ...] [--label-set imagenet] [--kernels native avx2]
        [--precisions bf16 int8] [--threads N] [--batch-size N]

The checkpoint is anything `--model` accepts: a model name, a Hugging Face id, or a local file or
directory. Images default to the repository's JPEG/PNG fixtures and assets/CLIP.png. Results are
printed as a Markdown table for docs/FIDELITY.md.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "crates" / "zeroclip" / "data"
LABEL_SETS = {"imagenet": "imagenet1k.txt", "cifar10": "cifar10.txt", "cifar100": "cifar100.txt"}
# `classify --label-set`'s default template (see `zeroclip classify --help`).
TEMPLATE = "a photo of a {}."
PRECISIONS = ["fp32", "bf16", "int8"]
KERNELS = ["native", "avx512-vnni", "avx512", "avx2-vnni", "avx2", "portable", "candle"]
# The CPU flags that decide which kernel `native` runs.
KERNEL_FLAGS = ["fma", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "avx512_bf16"]


def default_images() -> list[Path]:
    fixtures = ROOT / "tests" / "fixtures" / "image" / "inputs"
    found = sorted(p for p in fixtures.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return found + [ROOT / "assets" / "CLIP.png"]


def labels_of(label_set: str) -> list[str]:
    # The CLI's own parsing of its data files: every non-empty line, trailing spaces removed.
    lines = (DATA / LABEL_SETS[label_set]).read_text(encoding="utf-8").splitlines()
    return [l.rstrip() for l in lines if l.rstrip()]


def cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return " ".join(f for f in KERNEL_FLAGS if f in have) or "(none of them)"
    except OSError:
        pass
    return "unknown (no /proc/cpuinfo)"


def fail(message: str) -> None:
    """Exit 2 (usage or fatal, as the CLI) naming what went wrong."""
    print(f"precision check: {message}", file=sys.stderr)
    sys.exit(2)


def cli_identity(cli: str) -> tuple:
    path = Path(cli) if os.sep in cli else Path(shutil.which(cli) or cli)
    try:
        st = path.stat()
    except OSError as e:
        fail(f"the zeroclip CLI {cli}: {e.strerror} (set ZEROCLIP_CLI or --cli)")
    return st.st_mtime_ns, st.st_size


def run_cli(cli: str, kernel: str, args: list[str], what: str) -> str:
    env = dict(os.environ)
    env.pop("ZEROCLIP_KERNEL", None)
    if kernel != "native":
        env["ZEROCLIP_KERNEL"] = kernel
    proc = subprocess.run([cli, *args], env=env, capture_output=True, text=True)
    # Exit 1 means some inputs failed (reported per input and left out); 2 is fatal.
    if proc.returncode not in (0, 1):
        fail(f"{what} (kernel {kernel}) exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def embed_images(cli, kernel, common, images, out: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    stdout = run_cli(cli, kernel, ["embed", *common, "-o", str(out), *map(str, images)], "embed images")
    records = [json.loads(line) for line in stdout.splitlines()]
    if not any("row" in rec for rec in records):
        fail(f"no image could be read: {records[0]['error'] if records else 'no inputs'}")
    rows = np.load(out)
    unread = [f"{rec['input']} ({rec['error']})" for rec in records if "error" in rec]
    return {rec["input"]: rows[rec["row"]] for rec in records if "row" in rec}, unread


def run_once(cli, kernel, precision, args, images, prompts_file, work: Path) -> dict:
    common = ["--model", args.precision_check, "--precision", precision, "--batch-size",
              str(args.batch_size)]
    if args.threads:
        common += ["--threads", str(args.threads)]
    tag = f"{kernel}-{precision}"
    img, unread = embed_images(cli, kernel, common, images, work / f"{tag}.images.npy")
    texts_out = work / f"{tag}.texts.npy"
    run_cli(cli, kernel, ["embed", *common, "--texts-file", str(prompts_file), "-o", str(texts_out)],
            "embed texts")
    txt = np.load(texts_out)
    if len(txt) != prompts_file.read_text(encoding="utf-8").count("\n"):
        fail(f"embed texts (kernel {kernel}) returned {len(txt)} rows for the label set's prompts")
    stdout = run_cli(cli, kernel, ["classify", *common, "--label-set", args.label_set, "--top-k", "1",
                                   "--format", "jsonl", "--no-cache", *map(str, images)], "classify")
    top1 = {}
    for line in stdout.splitlines():
        rec = json.loads(line)
        if rec.get("predictions"):
            top1[rec["input"]] = rec["predictions"][0]["label"]
    return {"images": img, "texts": txt, "top1": top1, "unread": unread}


def unit(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def compare(base: dict, run: dict, labels: list[str]) -> dict:
    inputs = sorted(set(base["images"]) & set(run["images"]) & set(base["top1"]) & set(run["top1"]))
    bi = unit(np.stack([base["images"][i] for i in inputs]))
    ri = unit(np.stack([run["images"][i] for i in inputs]))
    bt, rt = unit(base["texts"]), unit(run["texts"])
    img_cos = np.sum(bi * ri, axis=1)
    txt_cos = np.sum(bt * rt, axis=1)
    base_sim, run_sim = bi @ bt.T, ri @ rt.T
    # The embeddings' own top-1 must be the CLI's: the prompts here are classify's.
    for sim, res, name in ((base_sim, base, "fp32"), (run_sim, run, "run")):
        own = [labels[j] for j in sim.argmax(axis=1)]
        cli = [res["top1"][i] for i in inputs]
        if own != cli:
            bad = sum(a != b for a, b in zip(own, cli))
            print(f"warning ({name}): classify's top-1 differs from the embeddings' on {bad} "
                  f"of {len(inputs)} images", file=sys.stderr)
    best2 = np.sort(base_sim, axis=1)[:, -2:]
    agree = sum(base["top1"][i] == run["top1"][i] for i in inputs)
    # One tower in the run's precision, the other in fp32: which tower moves the top-1 labels.
    base_top = base_sim.argmax(axis=1)
    image_only = int(np.sum((ri @ bt.T).argmax(axis=1) == base_top))
    text_only = int(np.sum((bi @ rt.T).argmax(axis=1) == base_top))
    return dict(n=len(inputs), img_min=img_cos.min(), img_mean=img_cos.mean(), n_txt=len(txt_cos),
                txt_min=txt_cos.min(), txt_mean=txt_cos.mean(), agree=agree,
                image_only=image_only, text_only=text_only,
                margin=float(np.median(best2[:, 1] - best2[:, 0])),
                dsim=float(np.abs(run_sim - base_sim).max()))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--precision-check", required=True, metavar="CHECKPOINT",
                    help="a model name, Hugging Face id, or local checkpoint file or directory")
    ap.add_argument("--images", nargs="+", metavar="PATH",
                    help="image files or directories (default: the JPEG/PNG fixtures and assets/CLIP.png)")
    ap.add_argument("--label-set", choices=list(LABEL_SETS), default="imagenet")
    ap.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=PRECISIONS,
                    help="fp32 on the first kernel is always run: it is the baseline")
    ap.add_argument("--kernels", nargs="+", choices=KERNELS, default=["native"],
                    help="ZEROCLIP_KERNEL values (native: unset); the first one's fp32 is the baseline")
    ap.add_argument("--cli", default=os.environ.get("ZEROCLIP_CLI", "target/release/zeroclip"),
                    help="the zeroclip binary (default: $ZEROCLIP_CLI, else target/release/zeroclip)")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args(argv)

    images = args.images or [str(p) for p in default_images()]
    labels = labels_of(args.label_set)
    # A CLI rebuilt while the runs go would mix two builds in one table.
    identity = cli_identity(args.cli)
    version = run_cli(args.cli, "native", ["--version"], "version").strip()
    print(f"{version} ({args.cli}); checkpoint {args.precision_check}; {len(labels)} labels "
          f"({args.label_set}); CPU flags: {cpu_flags()}", flush=True)
    runs = [(args.kernels[0], "fp32")]
    runs += [(k, p) for k in args.kernels for p in args.precisions if (k, p) != runs[0]]
    if len(runs) == 1:
        fail("nothing to compare: add a precision or a kernel besides fp32 on the first kernel")
    rows = []
    with tempfile.TemporaryDirectory(prefix="zeroclip-precision-") as tmp:
        work = Path(tmp)
        prompts = work / "prompts.txt"
        prompts.write_text("".join(TEMPLATE.format(l) + "\n" for l in labels), encoding="utf-8")
        results = {}
        for kernel, precision in runs:
            results[kernel, precision] = run_once(args.cli, kernel, precision, args, images, prompts, work)
            print(f"ran {precision} on kernel {kernel}", flush=True)
        base = results[runs[0]]
        for unread in base["unread"]:
            print(f"left out: {unread}", file=sys.stderr)
        for key in runs[1:]:
            rows.append((key, compare(base, results[key], labels)))
    if cli_identity(args.cli) != identity:
        fail(f"{args.cli} changed while the check ran: run it again")
    print()
    print(f"| precision | kernel | image cosine to fp32 min / mean ({rows[0][1]['n']} images) | "
          f"text cosine min / mean ({rows[0][1]['n_txt']} prompts) | top-1 = fp32's | "
          "same, image tower only / text tower only | "
          "fp32 top-1 margin (median) | max \\|Δ image-label cosine\\| |")
    print("|---|---|---|---|---|---|---|---|")
    for (kernel, precision), r in rows:
        print(f"| {precision} | {kernel} | {r['img_min']:.6f} / {r['img_mean']:.6f} | "
              f"{r['txt_min']:.6f} / {r['txt_mean']:.6f} | {r['agree']}/{r['n']} "
              f"({100 * r['agree'] / r['n']:.1f} %) | {r['image_only']} / {r['text_only']} | "
              f"{r['margin']:.2e} | {r['dsim']:.2e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
