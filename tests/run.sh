#!/usr/bin/env bash
# The whole test suite, as the README and CI run it:
#   1. native: unit tests, cross-backend tests (cpu and wgpu against NumPy), the CLI;
#   2. the browser: the web crate built into www/pkg, wasm-bindgen tests in headless
#      Chromium on WebGPU and on the CPU fallback, and the site itself driven through
#      ChromeDriver against the native CLI (screenshots in tests/screenshots/);
#   3. the CLI built with `--features cuda` (no GPU needed: it must report the missing driver).
# One test binary per crate (tests/integration.rs, native/tests/cli/main.rs): each binary
# links burn anew, so one per file cost minutes of compiling apiece.
# Missing tools are installed first (tests/setup.sh). Under CI=true nothing may be skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash tests/setup.sh)"

step() { printf '\n==> %s\n' "$*" >&2; }

step "formatting"
cargo fmt --all --check

# Each step reuses the builds of the ones before: the native steps select the whole workspace
# (so cargo unifies the same features and builds burn once, the CLI included), the browser test
# has web/build.sh's features, and the CUDA build, whose features change the CLI binary, runs
# last so that the site test drives the binary the native tests built.
step "native tests (cpu + wgpu): unit tests, tests/integration.rs, native/tests/cli"
cargo test --release --workspace

# The patched CPU backend keeps its own unit tests (vendor/burn-flex/XTAL.md).
cargo test --release --manifest-path vendor/burn-flex/Cargo.toml --lib

step "web crate -> www/pkg"
bash web/build.sh

step "browser tests in headless Chromium (WebGPU and CPU)"
export CHROMEDRIVER="${CHROMEDRIVER:-$(command -v chromedriver)}"
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-300}"
(cd tests && cargo test --release --target wasm32-unknown-unknown -p xtal-tests --test browser)

step "the site in headless Chromium: native CLI vs page, fine-tune, export, corrupt bundle"
cargo test --release --workspace --test integration -- --ignored --nocapture site::

step "CUDA build (the CLI with --features cuda) and its CLI tests"
cargo test --release -p xtal --features cuda --test cli -- usage::
