#!/bin/bash
# One run of the LSTM step measurement (BENCHMARKS.md, "LSTM step at batch 1"): the step before
# and after the change, dense steps through the gemm crate and OpenBLAS, PyTorch, and the
# GPU rows on the default adapter (lavapipe here). Run from the repository root.
#
# BIN holds three builds of examples/lstm_step.rs:
#   lstm_step-before-gemm     commit 8b5ab65, `cargo build --release --example lstm_step`
#   lstm_step-after-gemm      this commit,    `cargo build --release --example lstm_step`
#   lstm_step-after-openblas  this commit,    `cargo build --release --example lstm_step --features openblas`
# PY is a python with torch (`python3 -m venv v && v/bin/pip install torch`).
set -u
: "${BIN:?directory of the three builds}" "${PY:?python with torch}" "${OUT:?output directory}"
mkdir -p "$OUT"
{ date -u; uptime; lscpu | grep -E "Model name|^CPU\(s\)"; } > "$OUT/machine.txt"
"$BIN/lstm_step-before-gemm" > "$OUT/before-gemm.txt" 2>&1
"$BIN/lstm_step-after-gemm" --gpu > "$OUT/after-gemm-gpu.txt" 2>&1
"$BIN/lstm_step-after-openblas" > "$OUT/after-openblas.txt" 2>&1
"$PY" benches/pytorch_lstm_step.py > "$OUT/pytorch.txt" 2>&1
"$BIN/lstm_step-before-gemm" > "$OUT/before-gemm-2.txt" 2>&1
{ date -u; uptime; } >> "$OUT/machine.txt"
