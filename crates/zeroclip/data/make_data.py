#!/usr/bin/env python3
"""Regenerates the built-in label sets and prompt templates in this folder from registry packages.

Sources (see ATTRIBUTION.md):
  - open_clip_torch (PyPI, MIT): open_clip/zero_shot_metadata.py, which carries OpenAI's cleaned
    ImageNet-1k class names, OpenAI's 80 ImageNet prompt templates and the 7-template subset
    (OpenAI's "Prompt_Engineering_for_ImageNet" notebook).
  - mmpretrain 1.2.0 (PyPI, Apache-2.0): mmpretrain/datasets/categories.py, the CIFAR-10 and CIFAR-100
    class names of the datasets' own meta files. CIFAR-100's underscores become spaces
    ("aquarium_fish" -> "aquarium fish"), as in OpenAI's CLIP prompts for CIFAR-100.

Usage (open_clip_torch importable, mmpretrain wheel fetched with `pip download mmpretrain==1.2.0 --no-deps`):
  python crates/zeroclip/data/make_data.py path/to/mmpretrain-1.2.0-py2.py3-none-any.whl
"""

import ast
import sys
import zipfile
from pathlib import Path

from open_clip import zero_shot_metadata as meta

HERE = Path(__file__).resolve().parent


def write_lines(name, lines):
    lines = list(lines)
    for line in lines:
        assert line and "\n" not in line and line == line.strip(), repr(line)
    (HERE / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    print(f"{name}: {len(lines)} lines")


def mmpretrain_categories(wheel):
    with zipfile.ZipFile(wheel) as z:
        src = z.read("mmpretrain/datasets/categories.py").decode("utf-8")
    found = {}
    for node in ast.parse(src).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = node.value
    return {k: ast.literal_eval(found[k]) for k in ("CIFAR10_CATEGORIES", "CIFAR100_CATEGORIES")}


def main():
    write_lines("imagenet1k.txt", meta.IMAGENET_CLASSNAMES)
    write_lines("templates_imagenet80.txt", [t("{}") for t in meta.OPENAI_IMAGENET_TEMPLATES])
    write_lines("templates_imagenet7.txt", [t("{}") for t in meta.SIMPLE_IMAGENET_TEMPLATES])
    cats = mmpretrain_categories(sys.argv[1])
    write_lines("cifar10.txt", cats["CIFAR10_CATEGORIES"])
    write_lines("cifar100.txt", [c.replace("_", " ") for c in cats["CIFAR100_CATEGORIES"]])


if __name__ == "__main__":
    main()
