"""Joins the output of benches/conv_kernels.rs (criterion's text: an id line
`conv2d/OP/KERNELS/SHAPE`, then `time: [low median high]`) with tools/bench_conv_torch.py's JSON
lines into one Markdown table: sskd's kernels, burn-flex's own path and PyTorch, per shape and
operation, with the ratios.

    cargo bench --bench conv_kernels > conv_bench.txt
    python tools/bench_conv_torch.py > conv_torch.jsonl
    python tools/conv_bench_table.py conv_bench.txt conv_torch.jsonl
"""
import json
import re
import sys
from pathlib import Path

UNITS_MS = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}


def criterion_medians(text: str):
    """{(op, kernels, shape): median ms} from criterion's text output."""
    medians, current = {}, None
    for line in text.splitlines():
        id_match = re.fullmatch(r"conv2d/(\w+)/(\w+)/(\w+)", line.strip())
        if id_match:
            current = id_match.groups()
            continue
        time_match = re.search(r"time:\s+\[\S+ \S+ (\S+) (\S+)", line)
        if time_match and current:
            value, unit = time_match.groups()
            medians[current] = float(value) * UNITS_MS[unit]
            current = None
    return medians


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    bench_text, torch_lines = Path(sys.argv[1]), Path(sys.argv[2])
    ours_all = criterion_medians(bench_text.read_text())
    if not ours_all:
        sys.exit(f"{bench_text}: no criterion results of conv_kernels in it")
    torch = {}
    for number, line in enumerate(torch_lines.read_text().splitlines(), 1):
        try:
            row = json.loads(line)
            torch[(row["shape"], row["op"])] = row["median_ms"]
        except (json.JSONDecodeError, KeyError) as error:
            sys.exit(f"{torch_lines}:{number}: not a bench_conv_torch.py line ({error})")
    print("| shape | op | sskd ms | burn-flex ms | PyTorch ms | burn-flex / sskd | sskd / PyTorch |")
    print("|---|---|---|---|---|---|---|")
    for (shape, op), torch_ms in torch.items():
        ours = ours_all.get((op, "sskd", shape))
        theirs = ours_all.get((op, "burn_flex", shape))
        if ours is None:
            continue
        gain = f"{theirs / ours:.1f}×" if theirs else "–"
        print(f"| {shape} | {op} | {ours:.2f} | {theirs:.2f} | {torch_ms:.2f} | {gain} | "
              f"{ours / torch_ms:.2f} |" if theirs else
              f"| {shape} | {op} | {ours:.2f} | – | {torch_ms:.2f} | – | {ours / torch_ms:.2f} |")


if __name__ == "__main__":
    main()
