#!/usr/bin/env python3
"""Where a CPU profile's samples went, per thread and per function: the shares quoted in
docs/performance.md and docs/losses.md.

Record with call stacks, then pipe `perf script` into this script:

    perf record --call-graph dwarf,32768 -F 499 -o step.data \\
        target/release/examples/gpu_bench --device cpu --warmup 2 --steps 4 teacher/wrn_16_2/16
    perf script -i step.data -F tid,ip,sym | python3 tools/perf_share.py

It prints the share of samples of each thread (the lowest thread id is the main thread: what
it runs while rayon's workers wait is serial time), the functions the samples ended in over
all threads, and for the main thread each such function with the first sskd or burn frame
that called it. `--skip TEXT` drops samples with a frame containing TEXT (the benchmarks'
set-up, e.g. `--skip 'LossStep<B>::new' --skip random`); `--group NAME=TEXT` adds a line
summing the samples whose innermost function, or the first sskd or burn frame above it (so a
`memcpy` counts for the kernel that called it), contains TEXT (repeatable), e.g.
`--group im2col=chunk_columns --group col2im=col2im_add --group gemm=gemm_`.
"""

import argparse
import collections
import sys


def read_samples(stream):
    """(thread id, [frames, innermost first]) for each sample of `perf script` output."""
    samples, current = [], None
    for line in stream:
        if not line.strip():
            if current:
                samples.append(current)
            current = None
        elif not line.startswith("\t"):
            current = (line.split()[0], [])
        elif current is not None:
            parts = line.split(None, 1)
            if len(parts) > 1:
                current[1].append(parts[1].strip())
    if current:
        samples.append(current)
    return samples


def caller_of_ours(frames):
    """The first sskd or burn frame of a stack (the operation a library call served)."""
    return next((f for f in frames if "sskd" in f or "burn" in f), "?")


def percent(count, total):
    return f"{100.0 * count / max(total, 1):5.1f} %"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip", action="append", default=[])
    parser.add_argument("--group", action="append", default=[])
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()

    samples = [
        (tid, frames)
        for tid, frames in read_samples(sys.stdin)
        if frames and not any(text in f for text in args.skip for f in frames)
    ]
    total = len(samples)
    threads = collections.Counter(tid for tid, _ in samples)
    if not threads:
        sys.exit("no samples with call stacks on standard input")
    main_thread = min(threads, key=int)
    print(f"{total} samples")
    for tid, count in threads.most_common():
        label = " (main thread)" if tid == main_thread else ""
        print(f"  thread {tid}{label}: {percent(count, total)}")

    print("\ninnermost functions, all threads:")
    leaves = collections.Counter(frames[0] for _, frames in samples)
    for leaf, count in leaves.most_common(args.top):
        print(f"  {percent(count, total)}  {leaf[:110]}")

    for spec in args.group:
        name, _, text = spec.partition("=")
        count = sum(
            1
            for _, frames in samples
            if text in frames[0] or text in caller_of_ours(frames)
        )
        print(f"group {name}: {percent(count, total)}")

    print("\nmain thread, innermost function <- first sskd/burn caller:")
    serial = collections.Counter(
        (frames[0][:50], caller_of_ours(frames)[:90])
        for tid, frames in samples
        if tid == main_thread
    )
    for (leaf, caller), count in serial.most_common(args.top):
        print(f"  {percent(count, total)}  {leaf} <- {caller}")


if __name__ == "__main__":
    main()
