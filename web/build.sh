#!/usr/bin/env bash
# Builds the web crate for the browser into www/pkg/ (ES module + TypeScript declarations).
# Needs the wasm32 target and wasm-bindgen-cli at Cargo.lock's version (tests/setup.sh installs both).
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"
profile="${XTAL_WEB_PROFILE:-release}"
cargo build --profile "$profile" --target wasm32-unknown-unknown -p xtal-web
want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}') || true
if [ "$have" != "$want" ]; then
    echo "web/build.sh: wasm-bindgen-cli $want is required (found: ${have:-none}); run: eval \"\$(bash tests/setup.sh)\"" >&2
    exit 2
fi
rm -rf www/pkg.tmp
wasm-bindgen --target web --typescript --remove-name-section --out-dir www/pkg.tmp \
    "$target_dir/wasm32-unknown-unknown/$profile/xtal_web.wasm"
rm -rf www/pkg && mv www/pkg.tmp www/pkg
echo "built www/pkg ($(du -h www/pkg/xtal_web_bg.wasm | cut -f1) wasm)" >&2
