#!/usr/bin/env bash
# Loopback load tests of the HTTP server (bench/load_test.rs, results in docs/SERVER.md).
# Each scenario is bounded: N clients for a fixed time, in-process server on 127.0.0.1.
# Exits non-zero if any scenario has an unexpected error (anything but 200 and 503 overloaded).
# The ViT-B/32 scenarios need bench/out/model/ViT-B-32.pt (bench/make_checkpoints.py) and the
# CLIP.png ones assets/CLIP.png; they are skipped when those are absent.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${SECONDS_PER_RUN:-30}"
cargo build --release -p zeroclip-server --example load_test
run() { echo "== $*"; target/release/examples/load_test --seconds "$seconds" "$@"; echo; }
tiny=tests/fixtures/model/hf_real_vocab
run --model "$tiny" --clients 32
run --model "$tiny" --clients 32 --payload hf
run --model "$tiny" --clients 64 --queue 4 --max-batch 8   # overload: sheds with 503
if [ -f assets/CLIP.png ]; then
  run --model "$tiny" --clients 32 --image assets/CLIP.png
fi
if [ -f bench/out/model/ViT-B-32.pt ]; then
  run --model bench/out/model/ViT-B-32.pt --clients 32
  if [ -f assets/CLIP.png ]; then
    run --model bench/out/model/ViT-B-32.pt --clients 32 --image assets/CLIP.png
  fi
fi
