#!/usr/bin/env bash
# Builds the browser page into web/dist/: the wasm module (package eie-web, release, for
# wasm32-unknown-unknown) bound by wasm-bindgen for ES-module loading, the page, the committed
# LeNet-300-100 model and test set (the same files native code reads), and the native CPU
# engine's outputs on the test set (reference-logits.npy) for the page's self-test.
#
# Needs: the wasm32-unknown-unknown target (`rustup target add wasm32-unknown-unknown`) and
# wasm-bindgen-cli at exactly the wasm-bindgen version in Cargo.lock
# (`cargo install wasm-bindgen-cli --version =<that version>`).
# Environment: WASM_BINDGEN (the wasm-bindgen command, default `wasm-bindgen`); WEB_REFERENCE
# (a built `web_reference` example to run instead of `cargo run --example web_reference`).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
dist="$root/web/dist"
bindgen="${WASM_BINDGEN:-wasm-bindgen}"

want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
have=$("$bindgen" --version 2>/dev/null | awk '{ print $2 }') || true
if [ "$have" != "$want" ]; then
    echo "web/build.sh: need wasm-bindgen $want (Cargo.lock) but \`$bindgen --version\` says '${have:-nothing}';" >&2
    echo "  cargo install wasm-bindgen-cli --version =$want" >&2
    exit 1
fi

cargo build --release --locked --target wasm32-unknown-unknown -p eie-web
rm -rf "$dist"
mkdir -p "$dist"
"$bindgen" --target web --no-typescript --out-dir "$dist/pkg" \
    "$target/wasm32-unknown-unknown/release/eie_web.wasm"
cp web/index.html web/main.js "$dist/"
cp assets/lenet/lenet-300-100.eie.safetensors assets/lenet/test-images.npy \
    assets/lenet/test-labels.npy "$dist/"
if [ -n "${WEB_REFERENCE:-}" ]; then
    "$WEB_REFERENCE" "$dist/reference-logits.npy"
else
    cargo run --quiet --locked --example web_reference -- "$dist/reference-logits.npy"
fi
wasm="$dist/pkg/eie_web_bg.wasm"
echo "web/build.sh: $dist ready; wasm module $(stat -c %s "$wasm") bytes." \
    "Serve it with any static file server, e.g. python3 -m http.server -d web/dist"
