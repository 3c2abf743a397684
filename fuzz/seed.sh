#!/usr/bin/env bash
# Makes the starting corpora of the fuzz targets in fuzz/corpus/<target>/ (git-ignored) from the
# repository's fixtures: every image fixture under 64 KiB, every PyTorch fixture, the two
# safetensors model directories in the weights_dir input layout, and a few requests for
# http_payload. Run from the repository root: fuzz/seed.sh
set -euo pipefail
cd "$(dirname "$0")/.."
c=fuzz/corpus
mkdir -p "$c"/{image_preprocess,pt_reader,weights_dir,http_payload}
find tests/fixtures/image/inputs -type f -size -64k -exec cp {} "$c/image_preprocess/" \;
cp tests/fixtures/model/tiny.png "$c/image_preprocess/"
cp tests/fixtures/pt/*.pt "$c/pt_reader/"
python3 - "$c" <<'PY'
import base64, json, struct, sys
from pathlib import Path
c = Path(sys.argv[1])
m = Path("tests/fixtures/model")
# weights_dir: [layout][u16 LE config length][config][weights]; layout 0 = transformers, 1 = open_clip.
for layout, d, cfg, w in [(0, "hf_real_vocab", "config.json", "model.safetensors"),
                          (1, "openclip_vit_gelu", "open_clip_config.json", "open_clip_model.safetensors")]:
    config = (m / d / cfg).read_bytes()
    (c / "weights_dir" / d).write_bytes(bytes([layout]) + struct.pack("<H", len(config)) + config + (m / d / w).read_bytes())
# http_payload: [route][content type][body]; route 0 classify, 1 embeddings, 2 HF root;
# content type 0 JSON, 1 multipart (boundary XyZ), 2 image/png, 3 none.
png = (m / "tiny.png").read_bytes()
b64 = base64.b64encode(png).decode()
seeds = {
    "classify_json": (0, 0, json.dumps({"image": b64, "labels": ["a dog", "a cat"]}).encode()),
    "classify_template": (0, 0, json.dumps({"images": [b64, b64], "labels": ["a", "b"], "template": "a photo of a {}."}).encode()),
    "embed_text": (1, 0, json.dumps({"texts": ["a dog", "a diagram"]}).encode()),
    "embed_image": (1, 0, json.dumps({"images": [b64]}).encode()),
    "hf_payload": (2, 0, json.dumps({"inputs": b64, "parameters": {"candidate_labels": ["a dog", "a cat"]}}).encode()),
    "multipart": (0, 1, b"--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"t.png\"\r\nContent-Type: image/png\r\n\r\n"
                  + png + b"\r\n--XyZ\r\nContent-Disposition: form-data; name=\"labels\"\r\n\r\na dog, a cat\r\n--XyZ--\r\n"),
    "raw_png": (2, 2, png),
}
for name, (route, kind, body) in seeds.items():
    (c / "http_payload" / name).write_bytes(bytes([route, kind]) + body)
PY
du -sh "$c"/*
