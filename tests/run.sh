#!/usr/bin/env bash
# The whole test suite, as the README and CI run it:
#   1. native: unit tests, cross-backend tests (cpu and wgpu against NumPy), the CLI;
#   2. the CLI built with `--features cuda` (no GPU needed: it must report the missing driver);
#   3. the browser: the web crate built into www/pkg, wasm-bindgen tests in headless
#      Chromium on WebGPU and on the CPU fallback, and the site itself driven through
#      ChromeDriver against the native CLI (screenshots in tests/screenshots/).
# Missing tools are installed first (tests/setup.sh). Under CI=true nothing may be skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash tests/setup.sh)"

step() { printf '\n==> %s\n' "$*" >&2; }

step "formatting"
cargo fmt --all --check

step "native tests (cpu + wgpu)"
cargo test --release --workspace

step "CUDA build (cargo build -p xtal --features cuda) and its CLI tests"
cargo test --release -p xtal --features cuda --test cli

step "web crate -> www/pkg"
bash web/build.sh

step "browser tests in headless Chromium (WebGPU and CPU)"
export CHROMEDRIVER="${CHROMEDRIVER:-$(command -v chromedriver)}"
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-300}"
(cd tests && cargo test --release --target wasm32-unknown-unknown -p xtal-tests --test browser)

step "the site in headless Chromium: native CLI vs page, fine-tune, export, corrupt bundle"
cargo build --release -p xtal
cargo test --release -p xtal-tests --test site -- --ignored --nocapture
