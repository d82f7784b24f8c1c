#!/usr/bin/env bash
# Builds what a device session runs on a machine without a Rust toolchain, stripped and
# xz-compressed under carry/ (ignored by git; the device tool's `carry` takes it along):
# carry/gpu_bench.xz, `gpu_bench` in release with the CUDA backend, kernel fusion and
# autotuning, and carry/gpu_matches_cpu.xz, the test binary of tests/gpu_matches_cpu.rs (CUDA,
# and wgpu when asked) with the same features, so both share one build. x86-64 only.
#
#   tools/build_gpu_bench.sh [EXTRA_FEATURES]      # e.g. "wgpu" to add the wgpu backend
set -euo pipefail
cd "$(dirname "$0")/.."
features="cuda,fusion,autotune${1:+,$1}"
test_features="$features,cuda-test"
[[ ,$features, == *,wgpu,* ]] && test_features="$test_features,wgpu-test"
cargo build --release --example gpu_bench --features "$features"
test_binary=$(cargo test --release --no-run --test gpu_matches_cpu --features "$test_features" \
    --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message.get("executable") \
            and message["target"]["name"] == "gpu_matches_cpu":
        print(message["executable"])')
target=${CARGO_TARGET_DIR:-target}
mkdir -p carry
strip -o carry/gpu_bench "$target/release/examples/gpu_bench"
strip -o carry/gpu_matches_cpu "$test_binary"
xz -9 -T0 -f carry/gpu_bench carry/gpu_matches_cpu
ls -l carry/
echo "features: $features (checks: $test_features); run on the device machine:"
echo "tools/gpu_device_checks.sh (carry: [\"carry\", \".gl\"])"
