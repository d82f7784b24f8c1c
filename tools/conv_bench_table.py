"""Joins the output of benches/conv_kernels.rs (criterion's text: an id line
`conv2d/OP/KERNELS/SHAPE`, then `time: [low median high]`) with tools/bench_conv_torch.py's JSON
lines into one Markdown table: sskd's kernels, burn-flex's own path and PyTorch, per shape and
operation, with the ratios, and how close each comes to the machine: GFLOP/s (2·B·O·C/g·KH·KW·
OH·OW multiply-adds counted twice, the same for the three operations) and that rate as a
fraction of the same library's square-GEMM rate on all cores measured in the same run
(`gemm/peak/1024` in the bench, `torch.mm` in the twin).

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
        # The id stands alone on its line, or (when short) in front of `time:`.
        words = line.split()
        id_match = re.fullmatch(r"(?:conv2d|gemm)/(\w+)/(\w+)(?:/(\w+))?", words[0]) if words else None
        if id_match:
            current = id_match.groups()
        time_match = re.search(r"time:\s+\[\S+ \S+ (\S+) (\S+)", line)
        if time_match and current:
            value, unit = time_match.groups()
            medians[current] = float(value) * UNITS_MS[unit]
            current = None
    return medians


def conv_gflop(row):
    """Floating-point operations of one convolution of `row`'s sizes, in GFLOP."""
    out = (row["size"] + 2 * row["padding"] - row["kernel"]) // row["stride"] + 1
    macs = (row["batch"] * row["c_out"] * row["c_in"] // row["groups"]
            * row["kernel"] ** 2 * out * out)
    return 2 * macs / 1e9


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    bench_text, torch_lines = Path(sys.argv[1]), Path(sys.argv[2])
    ours_all = criterion_medians(bench_text.read_text())
    if not ours_all:
        sys.exit(f"{bench_text}: no criterion results of conv_kernels in it")
    torch_rows = []
    for number, line in enumerate(torch_lines.read_text().splitlines(), 1):
        try:
            row = json.loads(line)
            row["shape"], row["op"], row["median_ms"]
        except (json.JSONDecodeError, KeyError) as error:
            sys.exit(f"{torch_lines}:{number}: not a bench_conv_torch.py line ({error})")
        torch_rows.append(row)
    peak = {"pytorch": None, "sskd": None}
    for row in torch_rows:
        if row["op"] == "peak":
            peak["pytorch"] = 2 * row["size"] ** 3 / 1e9 / (row["median_ms"] / 1e3)
            ours_peak_ms = ours_all.get(("peak", str(row["size"]), None))
            if ours_peak_ms:
                peak["sskd"] = 2 * row["size"] ** 3 / 1e9 / (ours_peak_ms / 1e3)

    def rate(gflop, ms, impl):
        gflops = gflop / (ms / 1e3)
        share = f"{gflops / peak[impl]:.0%}" if peak[impl] else "–"
        return f"{gflops:.0f} | {share}"

    fmt = lambda peak_rate: f"{peak_rate:.0f}" if peak_rate else "–"
    print(f"Square-GEMM peak on all cores: sskd (burn-flex's gemm) {fmt(peak['sskd'])} GFLOP/s, "
          f"PyTorch {fmt(peak['pytorch'])} GFLOP/s.\n")
    print("| shape | op | GFLOP | sskd ms | GFLOP/s | of peak | PyTorch ms | GFLOP/s | of peak "
          "| sskd / PyTorch | burn-flex ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in torch_rows:
        if row["op"] == "peak":
            continue
        shape, op, torch_ms = row["shape"], row["op"], row["median_ms"]
        ours = ours_all.get((op, "sskd", shape))
        theirs = ours_all.get((op, "burn_flex", shape))
        if ours is None:
            continue
        gflop = conv_gflop(row) if "c_in" in row else None
        ours_rate = rate(gflop, ours, "sskd") if gflop else "– | –"
        torch_rate = rate(gflop, torch_ms, "pytorch") if gflop else "– | –"
        burn_flex = f"{theirs:.2f}" if theirs else "–"
        gflop_text = f"{gflop:.2f}" if gflop else "–"
        print(f"| {shape} | {op} | {gflop_text} | {ours:.2f} | {ours_rate} | {torch_ms:.2f} | "
              f"{torch_rate} | {ours / torch_ms:.2f} | {burn_flex} |")


if __name__ == "__main__":
    main()
