"""Sums cubecl's profile log (`[profiling.logger] level = "basic"`: one line per kernel launch,
`| 1.35ms | ElemwiseFuse | CudaRuntime`) by kernel, and prints the kernels that took the most
device time: launches, total ms, mean µs and share. Pass --skip N to leave out the first N
launches (the networks' initialisation and the warm-up).

Usage: python tools/cubecl_profile_summary.py profile.log [--top 25] [--skip 0]
"""
import argparse
import re

UNITS = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}
DURATION = re.compile(r"^\s*([0-9.]+)\s*(ns|µs|us|ms|s)\s*$")


def launches(path):
    with open(path, encoding="utf-8", errors="replace") as handle:
        for text in handle:
            cells = [c.strip() for c in text.strip().strip("|").split("|")]
            if len(cells) < 2:
                continue
            match = DURATION.match(cells[0])
            if match is None:
                continue
            name = " | ".join(c for c in cells[1:] if not c.endswith("Runtime"))
            name = name if len(name) <= 80 else name[:77] + "..."
            yield name, float(match.group(1)) * UNITS[match.group(2)]


def summary(path, top, skip):
    totals = {}
    for index, (name, ms) in enumerate(launches(path)):
        if index < skip:
            continue
        count, total = totals.get(name, (0, 0.0))
        totals[name] = (count + 1, total + ms)
    grand = sum(total for _, total in totals.values()) or 1.0
    count_all = sum(count for count, _ in totals.values())
    lines = [
        f"{count_all} launches, {grand:.1f} ms of kernel time",
        "| kernel | launches | total ms | mean µs | share |",
        "|---|---|---|---|---|",
    ]
    ranked = sorted(totals.items(), key=lambda item: -item[1][1])
    for name, (count, total) in ranked[:top]:
        lines.append(f"| {name} | {count} | {total:.2f} | {1e3 * total / count:.1f} | {100 * total / grand:.1f} % |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("log")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--skip", type=int, default=0)
    args = parser.parse_args()
    print(summary(args.log, args.top, args.skip))
