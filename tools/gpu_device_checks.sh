#!/usr/bin/env bash
# The whole device session in one go, on a GPU machine without a Rust toolchain: the
# correctness checks of tests/gpu_matches_cpu.rs on CUDA and on wgpu (Vulkan) against the CPU,
# then the benchmark (tools/gpu_bench_device.sh). Needs carry/gpu_bench.xz and
# carry/gpu_matches_cpu.xz (tools/build_gpu_bench.sh wgpu) and, for Vulkan where the machine
# has no loader, the loader packages in .gl/ (`apt-get download libvulkan1 libegl1 libglvnd0
# libopengl0 libgl1 libglx0 libgles2` there, amd64; docs/performance.md, "GPU: the benchmark").
#
#   tools/gpu_device_checks.sh           # from the repository root; results under $OUT
#
# The checks' output goes to $OUT/log.txt (the device tool brings back at most 8 files).
# Settings: CHECK_LIMIT_S (seconds per backend's checks, default 120); the rest as
# tools/gpu_bench_device.sh takes them (BUDGET_S, WARMUP, STEPS, SET, CONFIGS, …).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$root/gpu-bench-out}
mkdir -p "$OUT"
limit=${CHECK_LIMIT_S:-120}

if ! ldconfig -p 2>/dev/null | grep -q libvulkan && compgen -G "$root/.gl/*.deb" >/dev/null; then
    for deb in "$root"/.gl/*.deb; do dpkg -x "$deb" /; done
    ldconfig
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[[ -z ${VK_DRIVER_FILES:-} && -f $icd ]] && export VK_DRIVER_FILES=$icd
source "$root/tools/cuda_libs.sh"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

xz -dc "$root/carry/gpu_matches_cpu.xz" >/tmp/gpu_matches_cpu && chmod +x /tmp/gpu_matches_cpu || exit 2
checks() { # checks BACKEND : the two tests of that backend's module, minimal autotune
    echo "== checks on $1 (tests/gpu_matches_cpu.rs)"
    (cd /tmp && SSKD_REPO_DIR="$root" CUBECL_AUTOTUNE_LEVEL=minimal \
        timeout --kill-after=10 "$limit" /tmp/gpu_matches_cpu --test-threads 1 --nocapture "$1::") \
        2>&1 | tee -a "$OUT/log.txt"
    return "${PIPESTATUS[0]}"
}
checks cuda
cuda_rc=$?
# A CUDA runtime that cannot load (no driver, no NVRTC) fails the benchmark too: stop here.
if [[ $cuda_rc -ne 0 ]] && grep -q "Unable to dynamically load" "$OUT/log.txt"; then
    echo "CUDA libraries missing: benchmark skipped" >&2
    exit 3
fi
# A binary built without `wgpu` (tools/build_gpu_bench.sh with no argument) has no wgpu checks.
if /tmp/gpu_matches_cpu --list 2>/dev/null | grep -q '^wgpu::'; then
    checks wgpu
    wgpu_rc=$?
else
    wgpu_rc="not built"
fi
echo "checks: cuda rc $cuda_rc, wgpu rc $wgpu_rc" | tee -a "$OUT/log.txt"

"$root/tools/gpu_bench_device.sh"
