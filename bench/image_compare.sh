#!/usr/bin/env bash
# Side-by-side benchmark of image decode + preprocess: zeroclip-image vs Pillow + torchvision.
# Inputs: a photo-like 4000x3000 JPEG made here (upscaled scikit-image photo plus grain, so it
# decodes like a camera file), the smooth 4000x3000 fixture JPEG, and assets/CLIP.png
# when present. Run from the repository root: bench/image_compare.sh [--runs N] [--batch K]
# The two sides alternate for ROUNDS rounds (default 3), so load from other processes on a shared
# machine falls on both alike; compare the medians within a round.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(scripts/ref_python.sh numpy scikit-image)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" - "$tmp/photo_4000x3000.jpg" <<'PYEOF'
import sys
import numpy as np
import skimage.data
from PIL import Image
img = Image.fromarray(skimage.data.astronaut()).resize((4000, 3000), Image.BICUBIC)
a = np.asarray(img).astype(np.int16)
a += np.random.default_rng(0).integers(-6, 7, size=a.shape, dtype=np.int16)
Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(sys.argv[1], quality=90)
PYEOF
files=("$tmp/photo_4000x3000.jpg" tests/fixtures/image/inputs/large_4000x3000.jpg)
[ -f assets/CLIP.png ] && files+=(assets/CLIP.png)
# cargo runs benches from the crate's directory: pass absolute paths.
files=($(realpath "${files[@]}"))
ls -l "${files[@]}" | awk '{print $5, $9}'
cargo bench -q -p zeroclip-image --bench image_preprocess --no-run
for round in $(seq "${ROUNDS:-3}"); do
  echo "== round $round"
  cargo bench -q -p zeroclip-image --bench image_preprocess -- "$@" "${files[@]}"
  "$PY" bench/image_preprocess.py "$@" "${files[@]}"
done
