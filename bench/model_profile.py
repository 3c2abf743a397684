#!/usr/bin/env python3
"""Where zeroclip's image forward spends its time: `perf record` of the bench_model binary.

    bench/model_profile.py [--model ViT-B-32|RN50] [--batch 16] [--runs 3] [--freq 499]

Needs `perf` and the release example (`cargo build --release -p zeroclip --example bench_model`,
done by bench/run.sh) and the checkpoints of bench/make_checkpoints.py. Records `bench_model
forever` (load, then `runs` forwards; the load is in the profile, listed under its own symbols),
then prints the hottest symbols and the hottest source files (the source file names the closures
that the symbol table leaves anonymous, e.g. candle's conv2d im2col). Samples cover all threads.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import model_common as mc

BIN = mc.ROOT / "target" / "release" / "examples" / "bench_model"


def report(data: Path, sort: str, top: int) -> list:
    out = subprocess.run(
        ["perf", "report", "-i", str(data), "--no-children", "--sort", sort, "--stdio", "-g", "none"],
        capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "%" not in line.split()[0]:
            continue
        pct, _, rest = line.partition("%")
        rest = rest.replace("[.]", "").replace("[k]", "(kernel)").strip()
        rows.append((float(pct), " ".join(rest.split()[:6])[:110]))
        if len(rows) >= top:
            break
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-32", choices=["ViT-B-32", "RN50"])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--freq", type=int, default=499)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    if not BIN.exists():
        sys.exit(f"{BIN} is missing: run bench/run.sh (or cargo build --release -p zeroclip --example bench_model)")
    data = mc.OUT / f"perf_{args.model}_b{args.batch}.data"
    env = dict(os.environ, RAYON_NUM_THREADS="2", CANDLE_NUM_THREADS="2")
    cmd = ["perf", "record", "-F", str(args.freq), "-o", str(data), str(BIN), "forever",
           "--model", str(mc.OUT / f"{args.model}.pt"), "--pixels", str(mc.OUT / f"pixels_{mc.RES}x16.f32"),
           "--batch", str(args.batch), "--runs", str(args.runs), "--threads", "2"]
    subprocess.run(cmd, check=True, env=env, stderr=subprocess.DEVNULL)
    print(f"## {args.model}, batch {args.batch}, {args.runs} forwards (+ load): hottest symbols")
    for pct, name in report(data, "symbol", args.top):
        print(f"{pct:6.2f}%  {name}")
    print(f"\n## hottest source files")
    for pct, name in report(data, "srcfile", args.top):
        print(f"{pct:6.2f}%  {name or '(no line info)'}")


if __name__ == "__main__":
    main()
