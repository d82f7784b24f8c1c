#!/usr/bin/env bash
# Runs the whole GPU benchmark on a machine without a Rust toolchain, in one go, and prints a
# short table last. Needs the `gpu_bench` binary built elsewhere (tools/build_gpu_bench.sh:
# x86-64, features cuda,fusion,autotune, stripped, xz-compressed) and python3 with torch.
#
#   tools/gpu_bench_device.sh            # from the repository root; results under $OUT
#
# Settings (environment):
#   GPU_BENCH      the binary, plain or .xz        (default carry/gpu_bench.xz)
#   DEVICE         Burn's device                   (default cuda)
#   TORCH_DEVICE   PyTorch's device                (default cuda)
#   SET            the configurations, a gpu_bench set (default core)
#   CONFIGS        explicit configurations instead of SET (space-separated)
#   COLD_CONFIG    the configuration of the cold-start runs (default the first one)
#   WARMUP, STEPS  steps per configuration         (default 10, 50)
#   BUDGET_S       seconds for the whole script    (default 480)
#   PRECISIONS     extra precisions, e.g. "bf16"   (default none)
#   SEED_CACHE     a cubecl-cache.tar.xz of an earlier run on the same card: one more cold
#                  run starts from it (the "shipped caches" lever)
#   OUT            where results go                (default ./gpu-bench-out)
#
# Phases, each under its own time limit so that a slow one cannot take the others' time:
#   1. PyTorch over every configuration (f32, then each of PRECISIONS with autocast);
#   2. Burn's cold start: COLD_CONFIG with empty cubecl caches (compiled kernels and autotune
#      results in a fresh folder), then the same again with those caches warm;
#   3. Burn over every configuration with the caches of phase 2 (what is left of BUDGET_S but
#      150 s), configurations past the budget reported as skipped;
#   4. COLD_CONFIG with CUBECL_AUTOTUNE_LEVEL=minimal on fresh caches (the autotune lever);
#   5. one profiled run of COLD_CONFIG (cubecl's per-kernel profile log);
#   then the cold-start lines, the table (tools/gpu_bench_table.py) of phases 1 to 3, and the
#   kernels that took the most time (tools/cubecl_profile_summary.py).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$root/gpu-bench-out}
mkdir -p "$OUT"
DEVICE=${DEVICE:-cuda}
TORCH_DEVICE=${TORCH_DEVICE:-cuda}
WARMUP=${WARMUP:-10}
STEPS=${STEPS:-50}
BUDGET_S=${BUDGET_S:-480}
PRECISIONS=${PRECISIONS:-}
started=$(date +%s)
left() { echo $((BUDGET_S - ($(date +%s) - started))); }
share() { local s=$(( $(left) / $1 - ${2:-0} )); echo $(( s < 10 ? 10 : s )); } # share N [MINUS]: a time limit
say() { echo "[$(($(date +%s) - started)) s] $*" | tee -a "$OUT/log.txt"; }

bin=${GPU_BENCH:-$root/carry/gpu_bench.xz}
if [[ $bin == *.xz ]]; then
    xz -dc "$bin" >/tmp/gpu_bench || { echo "cannot unpack $bin" >&2; exit 2; }
    bin=/tmp/gpu_bench
fi
chmod +x "$bin" 2>/dev/null || true

[[ $DEVICE == cuda* ]] && source "$root/tools/cuda_libs.sh"

if [[ -n ${CONFIGS:-} ]]; then
    read -r -a configs <<<"$CONFIGS"
else
    mapfile -t configs < <("$bin" --list --set "${SET:-core}")
fi
[[ ${#configs[@]} -gt 0 ]] || { echo "no configurations" >&2; exit 2; }
cold=${COLD_CONFIG:-${configs[0]}}

{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
    python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())'
    uname -m
} >>"$OUT/log.txt" 2>&1
cat "$OUT/log.txt"

# A folder whose cubecl.toml (tools/cubecl-cache.toml) keeps compiled kernels and autotune
# results in $1/cache.
cubecl_dir() {
    rm -rf "$1" && mkdir -p "$1/cache"
    sed "s|CACHE_DIR|$1/cache|g" "$root/tools/cubecl-cache.toml" >"$1/cubecl.toml"
}

bench() { # bench FOLDER LIMIT_S OUTPUT ARGS… : gpu_bench run from FOLDER (its cubecl.toml)
    local folder=$1 limit=$2 output=$3
    shift 3
    (cd "$folder" && timeout --kill-after=10 "$limit" "$bin" --device "$DEVICE" "$@") \
        >>"$output" 2>>"$OUT/stderr.log"
    local rc=$?
    [[ $rc -eq 0 ]] || say "gpu_bench exited $rc ($*)"
}

say "phase 1: PyTorch, ${#configs[@]} configurations"
for precision in f32 $PRECISIONS; do
    PYTHONUNBUFFERED=1 timeout --kill-after=10 "$(share 4)" python3 "$root/tools/gpu_bench_torch.py" \
        --device "$TORCH_DEVICE" --precision "$precision" --warmup "$WARMUP" --steps "$STEPS" \
        "${configs[@]}" >>"$OUT/torch.jsonl" 2>>"$OUT/stderr.log" || say "PyTorch exited $? ($precision)"
done

say "phase 2: cold start of $cold"
cold_run() { # cold_run LABEL FOLDER LIMIT_S : COLD_CONFIG once, its line in cold.jsonl after LABEL
    echo "{\"phase\": \"$1\"}" >>"$OUT/cold.jsonl"
    bench "$2" "$3" "$OUT/cold.jsonl" "$cold" --warmup 1 --steps 5
}
cubecl_dir /tmp/sskd-cubecl
cold_run "fresh caches" /tmp/sskd-cubecl "$(share 2)"
say "phase 2: the same, caches warm"
cold_run "warm caches" /tmp/sskd-cubecl 120

if [[ -n ${SEED_CACHE:-} && -f ${SEED_CACHE:-} ]]; then
    say "phase 2: the same from the shipped caches $SEED_CACHE"
    cubecl_dir /tmp/sskd-cubecl-seeded
    tar -C /tmp/sskd-cubecl-seeded -xJf "$SEED_CACHE"
    cold_run "shipped caches" /tmp/sskd-cubecl-seeded 120
fi

say "phase 3: Burn, ${#configs[@]} configurations, $(share 1 150) s"
for precision in f32 $PRECISIONS; do
    bench /tmp/sskd-cubecl "$(share 1 150)" "$OUT/burn.jsonl" "${configs[@]}" \
        --precision "$precision" --warmup "$WARMUP" --steps "$STEPS" --budget-s "$(share 1 180)"
done

say "phase 4: CUBECL_AUTOTUNE_LEVEL=minimal, fresh caches"
cubecl_dir /tmp/sskd-cubecl-minimal
CUBECL_AUTOTUNE_LEVEL=minimal cold_run "autotune minimal, fresh caches" /tmp/sskd-cubecl-minimal "$(share 2)"

say "phase 5: profile of $cold"
cat >>/tmp/sskd-cubecl/cubecl.toml <<EOF

[profiling.logger]
level = "basic"
file = "$OUT/profile.log"
append = false
EOF
bench /tmp/sskd-cubecl "$(share 1 15)" /dev/null "$cold" --warmup 1 --steps 3
if [[ -f $OUT/profile.log ]] && [[ $(stat -c %s "$OUT/profile.log") -gt 15000000 ]]; then
    tail -c 15000000 "$OUT/profile.log" >"$OUT/profile.tail" && mv "$OUT/profile.tail" "$OUT/profile.log"
fi

# The caches of phases 2 and 3 (autotune results, compiled kernels), to ship for this card.
tar -C /tmp/sskd-cubecl -cJf "$OUT/cubecl-cache.tar.xz" cache 2>>"$OUT/stderr.log"
say "done"
echo
echo "## Cold start ($cold): build + first step, seconds"
python3 - "$OUT/cold.jsonl" <<'EOF'
import json, sys
runs = {}
for text in open(sys.argv[1]):
    line = json.loads(text)
    if "phase" in line:
        label = line["phase"]
        runs[label] = None
    else:
        runs[label] = line
for label, line in runs.items():
    if line is None:
        print(f"- {label}: no result (stopped at its time limit?)")
    elif "step_ms" in line:
        print(f"- {label}: first step {line['first_step_s']:.1f} s (since launch {line['first_step_since_launch_s']:.1f} s), then {line['step_ms']:.1f} ms/step")
    else:
        print(f"- {label}: {line.get('error', 'no result')}")
EOF
echo
python3 "$root/tools/gpu_bench_table.py" "$OUT/cold.jsonl" "$OUT/burn.jsonl" "$OUT/torch.jsonl" | tee "$OUT/table.md"
if [[ -s $OUT/profile.log ]]; then
    echo
    echo "## Kernels of $cold (cubecl profile: build, 1 warm-up and 3 steps)" | tee -a "$OUT/table.md"
    python3 "$root/tools/cubecl_profile_summary.py" "$OUT/profile.log" --top 15 | tee -a "$OUT/table.md"
fi
