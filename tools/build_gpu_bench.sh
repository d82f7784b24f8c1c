#!/usr/bin/env bash
# Builds the GPU benchmark for a machine without a Rust toolchain: `gpu_bench` in release with
# the CUDA backend, kernel fusion and autotuning, stripped and xz-compressed into
# carry/gpu_bench.xz (ignored by git; the device tool's `carry` takes it along). x86-64 only.
#
#   tools/build_gpu_bench.sh [EXTRA_FEATURES]      # e.g. "wgpu" to add the wgpu backend
set -euo pipefail
cd "$(dirname "$0")/.."
features="cuda,fusion,autotune${1:+,$1}"
cargo build --release --example gpu_bench --features "$features"
target=${CARGO_TARGET_DIR:-target}
mkdir -p carry
strip -o carry/gpu_bench "$target/release/examples/gpu_bench"
xz -9 -T0 -f carry/gpu_bench
ls -l carry/gpu_bench.xz
echo "features: $features; run on the device machine: tools/gpu_bench_device.sh (carry: [\"carry\"])"
