#!/usr/bin/env bash
# The CPU step table of docs/performance.md: every step kind (SSKD, KD, a network trained with
# cross-entropy, the SS head) on the four families (WRN, ResNet, VGG → MobileNetV2, ResNet →
# ShuffleNetV2) at batch 16 and 64, sskd's `gpu_bench --device cpu` and PyTorch's
# `tools/gpu_bench_torch.py` one after the other for each batch, then the table
# (`tools/gpu_bench_table.py --cpu`).
#
# Usage: tools/cpu_step_table.sh OUT_DIR [GPU_BENCH_BINARY]
#   (build the binary first: cargo build --release --example gpu_bench)
# Batch 16 runs 2 warm-up and 5 timed steps, batch 64 1 and 3 (a batch-64 SSKD step takes
# seconds on 2 cores); TORCH_THREADS / RAYON_NUM_THREADS are left to both libraries' defaults
# (all cores).
set -euo pipefail
out=${1:?usage: tools/cpu_step_table.sh OUT_DIR [GPU_BENCH_BINARY]}
bench=${2:-${CARGO_TARGET_DIR:-target}/release/examples/gpu_bench}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"

configs() {
    local batch=$1
    for pair in wrn_40_2/wrn_16_2 resnet32x4/resnet8x4 vgg13/MobileNetV2 resnet32x4/ShuffleV2; do
        local teacher=${pair%/*} student=${pair#*/}
        echo "sskd/$pair/$batch kd/$pair/$batch teacher/$teacher/$batch teacher/$student/$batch head/$teacher/$batch"
    done | tr ' ' '\n' | awk '!seen[$0]++'
}

for batch in 16 64; do
    if [ "$batch" = 16 ]; then steps="--warmup 2 --steps 5"; else steps="--warmup 1 --steps 3"; fi
    # shellcheck disable=SC2046,SC2086
    "$bench" --device cpu $steps $(configs "$batch") > "$out/sskd_$batch.jsonl"
    # shellcheck disable=SC2046,SC2086
    python3 "$here/gpu_bench_torch.py" --device cpu $steps $(configs "$batch") > "$out/torch_$batch.jsonl"
done
python3 "$here/gpu_bench_table.py" --cpu "$out"/sskd_*.jsonl "$out"/torch_*.jsonl | tee "$out/table.md"
