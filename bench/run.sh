#!/usr/bin/env bash
# The model benchmark of issue 6, in one command: zeroclip beside PyTorch (openai-clip) and ONNX
# Runtime, 2 threads each, fp32, same inputs. See docs/PERFORMANCE.md, section "Model (issue 6)".
#
#   bench/run.sh [--quick] [--no-doc] [--frameworks pytorch onnxruntime zeroclip] [--note TEXT]
#   bench/run.sh --isa native|avx512-vnni|avx512|avx2 [--quick] [--rounds N] [--no-pipeline] [--no-doc] [--note TEXT]
#
# With --isa, speed round 3 (issue 11) instead: bench/round3.py, every framework restricted to the
# instruction set (zeroclip by ZEROCLIP_KERNEL, PyTorch by ATEN_CPU_CAPABILITY and friends),
# zeroclip in fp32 and bf16, and the whole `classify DIR` pipeline against the reference script.
#
# 1. builds the release binaries (zeroclip CLI and the bench_model example);
# 2. makes the full-size random checkpoints (ViT-B/32, RN50), their ONNX image towers and the
#    shared inputs in bench/out/model/ (git-ignored; kept between runs; delete it to rebuild);
# 3. measures (bench/model_run.py), prints the table and rewrites the generated block of the
#    section in docs/PERFORMANCE.md. Raw results: bench/out/model/results.json.
# Environment: ZEROCLIP_REF_PYTHON (the reference interpreter; default: scripts/ref_python.sh
# makes .venv-ref), RUSTFLAGS (passed to cargo and recorded).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(scripts/ref_python.sh numpy onnx onnxruntime)
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 RAYON_NUM_THREADS=2 CANDLE_NUM_THREADS=2
cargo build --release -q -p zeroclip-cli
cargo build --release -q -p zeroclip --example bench_model
"$PY" bench/make_checkpoints.py
for arg in "$@"; do
  if [ "$arg" = "--isa" ]; then
    exec "$PY" bench/round3.py "$@"
  fi
done
exec "$PY" bench/model_run.py "$@"
