"""The Python package's speed targets (issue 12), side by side in one run:

1. the reference example end to end: `bench/model_reference_example.py` (OpenAI's `clip` on
   PyTorch) against `bench/python_reference_example.py` (the same lines with `import zeroclip as
   clip` and numpy's softmax), same checkpoint, same image; wall time and peak RSS of each process;
2. a directory: `zeroclip.Classifier.classify` (bench/python_classify_dir.py) against
   `zeroclip classify DIR` (the CLI), 640x480 JPEGs, 8 labels, batches of 16; the marginal rate
   (images per second between a small and a large directory, so loading cancels out).

Rounds alternate the contenders. Environment: ZEROCLIP_REF_PYTHON (the reference venv's python)
and ZEROCLIP_PYTHON (a python with zeroclip installed, built with `maturin develop --release`).

    ZEROCLIP_REF_PYTHON=... ZEROCLIP_PYTHON=... python bench/python_api.py \
        --model bench/out/model/ViT-B-32.pt --cli target/release/zeroclip
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["a diagram", "a dog", "a cat", "a car", "a tree", "a person", "a building", "food"]


def run(cmd: list, env=None) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and stdout of one process."""
    t0 = time.perf_counter()
    p = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = p.communicate()
    wall = time.perf_counter() - t0
    if p.returncode not in (0,):
        raise SystemExit(f"{cmd} failed ({p.returncode}): {err.decode()[-2000:]}")
    import resource

    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return wall, rss, out.decode()


def peak_rss(cmd: list, env=None) -> float:
    """Peak RSS (MB) of one process, by GNU time."""
    p = subprocess.run(["/usr/bin/time", "-f", "%M", *map(str, cmd)], capture_output=True, text=True, env=env)
    return int(p.stderr.strip().splitlines()[-1]) / 1024


def make_images(directory: Path, count: int) -> None:
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    sources = sorted((ROOT / "tests" / "fixtures" / "image" / "inputs").glob("photo_*.jpg"))
    for i in range(count):
        path = directory / f"img{i:04d}.jpg"
        if path.exists():
            continue
        with Image.open(sources[i % len(sources)]) as im:
            im = im.convert("RGB").resize((640, 480), Image.BICUBIC)
            if i // len(sources) % 2:
                im = im.transpose(Image.FLIP_LEFT_RIGHT)
            im.rotate(i % 7, expand=False).save(path, quality=90 - i % 10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--cli", default=str(ROOT / "target" / "release" / "zeroclip"))
    ap.add_argument("--image", default=str(ROOT.parent / "shared" / "fixtures" / "CLIP.png"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--small", type=int, default=16)
    ap.add_argument("--large", type=int, default=80)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "python"))
    args = ap.parse_args()
    ref_py = os.environ.get("ZEROCLIP_REF_PYTHON")
    zc_py = os.environ.get("ZEROCLIP_PYTHON")
    if not ref_py or not zc_py:
        raise SystemExit("set ZEROCLIP_REF_PYTHON and ZEROCLIP_PYTHON")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               RAYON_NUM_THREADS=str(args.threads))
    out = Path(args.out)
    small, large = out / f"jpeg640_{args.small}", out / f"jpeg640_{args.large}"
    make_images(small, args.small)
    make_images(large, args.large)

    res: dict = {"reference_example": {"pytorch": [], "zeroclip_python": []},
                 "directory": {"cli": {"small": [], "large": []}, "python": {"small": [], "large": []}}}
    ref_cmd = [ref_py, ROOT / "bench" / "model_reference_example.py", args.model, args.image]
    zc_cmd = [zc_py, ROOT / "bench" / "python_reference_example.py", args.model, args.image]
    for r in range(args.rounds):
        for name, cmd in (("pytorch", ref_cmd), ("zeroclip_python", zc_cmd)):
            wall, _, stdout = run(cmd, env)
            res["reference_example"][name].append(wall)
            print(f"round {r} {name}: {wall:.2f} s  {stdout.strip()}", file=sys.stderr)
    res["reference_example_rss_mb"] = {"pytorch": peak_rss(ref_cmd, env), "zeroclip_python": peak_rss(zc_cmd, env)}

    def cli(d):
        return [args.cli, "classify", d, "--model", args.model, "--labels", *LABELS, "--no-cache",
                "--format", "jsonl", "--batch-size", "16", "--threads", str(args.threads)]

    def py(d):
        return [zc_py, ROOT / "bench" / "python_classify_dir.py", d, args.model, str(args.threads), *LABELS]

    for r in range(args.rounds):
        for name, make in (("cli", cli), ("python", py)):
            for size, d in (("small", small), ("large", large)):
                wall, _, _ = run(make(d), env)
                res["directory"][name][size].append(wall)
            print(f"round {r} {name}: small {res['directory'][name]['small'][-1]:.2f} s, "
                  f"large {res['directory'][name]['large'][-1]:.2f} s", file=sys.stderr)

    med = statistics.median
    t_ref, t_zc = med(res["reference_example"]["pytorch"]), med(res["reference_example"]["zeroclip_python"])
    rates = {}
    for name in ("cli", "python"):
        d = res["directory"][name]
        rates[name] = (args.large - args.small) / (med(d["large"]) - med(d["small"]))
    res["summary"] = {
        "reference_example_s": {"pytorch": t_ref, "zeroclip_python": t_zc, "speedup": t_ref / t_zc},
        "directory_marginal_img_s": {**rates, "python_over_cli": rates["python"] / rates["cli"]},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=1))
    s = res["summary"]
    rss = res["reference_example_rss_mb"]
    print(f"| reference example end to end (s, median of {args.rounds}) | {t_ref:.2f} | {t_zc:.2f} | "
          f"{s['reference_example_s']['speedup']:.1f}x |")
    print(f"| peak RSS (MB) | {rss['pytorch']:.0f} | {rss['zeroclip_python']:.0f} | "
          f"{rss['zeroclip_python'] / rss['pytorch']:.2f}x |")
    print(f"| directory, marginal images/s: CLI {rates['cli']:.2f}, Python Classifier "
          f"{rates['python']:.2f} | | | {s['directory_marginal_img_s']['python_over_cli']:.3f}x |")


if __name__ == "__main__":
    main()
