#!/usr/bin/env bash
# Everything BENCHMARKS.md reports for a CUDA GPU, measured in one run on one card: cuBLAS and
# cuSPARSE (benches/cuda_baselines.py), the EIE kernels before and after a change, our dense and
# CSR kernels, AlexNet FC6 -> FC8 chained, the verification of every kernel, and the modelled
# schedule (`eie plan`) beside them.
#
# Two steps, because the GPU machine has the NVIDIA driver, CUDA and PyTorch but no Rust:
#
#   On the build machine (x86-64), from the repository root:
#     bash benches/gpu_measure.sh prepare [BEFORE_COMMIT]
#   builds target/release/eie and, from BEFORE_COMMIT (default: the last commit with the
#   first-generation kernel), .gl/eie-before; .gl/ also receives the Vulkan loader packages
#   when a folder of them is given in EIE_GL_DEBS.
#
#   On the GPU machine, from a copy of the repository with .gl/ and target/release/eie:
#     OUT=results bash benches/gpu_measure.sh run
#   writes devices.txt, cuda.jsonl, verify.txt, mnist.txt, plan-b1.json, plan-b64.json,
#   before/ and after/ (each with bench.md, bench.csv, bench.json; logs beside) under $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."

BEFORE_DEFAULT=a598696

prepare() {
    local before=${1:-$BEFORE_DEFAULT}
    mkdir -p .gl
    if [ -n "${EIE_GL_DEBS:-}" ]; then
        cp "$EIE_GL_DEBS"/*.deb .gl/
    fi
    cargo build --release || exit 1
    local tree
    tree=$(mktemp -d)
    git worktree add --detach "$tree" "$before" >/dev/null || exit 1
    (cd "$tree" && CARGO_TARGET_DIR="$tree-target" cargo build --release) || exit 1
    cp "$tree-target/release/eie" .gl/eie-before
    git worktree remove --force "$tree"
    echo "ready: target/release/eie (this tree), .gl/eie-before ($before)"
}

run() {
    local out=${OUT:-gpu-measure}
    mkdir -p "$out"
    if compgen -G ".gl/*.deb" >/dev/null; then
        for f in .gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
    fi
    export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
    export WGPU_BACKEND=${WGPU_BACKEND:-vulkan}
    local eie=./target/release/eie before=.gl/eie-before
    if ! "$eie" devices >"$out/devices.txt" 2>&1 || ! grep -qi vulkan "$out/devices.txt"; then
        export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
        "$eie" devices >"$out/devices.txt" 2>&1
    fi
    cat "$out/devices.txt"
    # The CUDA baselines first, on the same card, so that both benches can show them.
    python3 benches/cuda_baselines.py >"$out/cuda.jsonl" 2>"$out/cuda.log"
    python3 benches/cuda_baselines.py --batch 64 >>"$out/cuda.jsonl" 2>>"$out/cuda.log"
    "$eie" plan --paper --batch 1 --json >"$out/plan-b1.json" 2>&1
    "$eie" plan --paper --batch 64 --json >"$out/plan-b64.json" 2>&1
    # Every kernel against the dense oracle and the CPU model on an Alex-7-sized model, and the
    # committed MNIST classifier's accuracy on every backend.
    mkdir -p "$out/demo"
    "$eie" demo --out-dir "$out/demo" --no-bench >"$out/verify.txt" 2>&1
    "$eie" demo --mnist >"$out/mnist.txt" 2>&1
    local bench=(bench --gpu-only --batch 1,64 --samples 10 --cuda "$out/cuda.jsonl")
    if [ -x "$before" ]; then
        "$before" "${bench[@]}" --out "$out/before" >"$out/before.log" 2>&1
    fi
    "$eie" "${bench[@]}" --out "$out/after" >"$out/after.log" 2>&1
    echo "results in $out"
}

case "${1:-}" in
prepare) shift; prepare "$@" ;;
run) run ;;
*)
    echo "usage: bash benches/gpu_measure.sh prepare [BEFORE_COMMIT] | run" >&2
    exit 2
    ;;
esac
