"""Joins the JSON lines of `examples/gpu_bench.rs` (impl "burn") and `tools/gpu_bench_torch.py`
(impl "torch") by configuration and precision, and prints a Markdown table: step times, the
ratio Burn / PyTorch (under 1.0: Burn is faster), images/s, peak reserved device memory and
Burn's first step (compilation and autotuning included). Where a configuration was measured
more than once, the line with the most timed steps counts; lines without a configuration
(the device script's phase markers) are skipped.

With `--cpu` the table is the CPU one of docs/performance.md: step times with their p10–p90
spread and each process's CPU utilisation (CPU seconds per wall second) instead of device
memory and the first step.

Usage: python tools/gpu_bench_table.py [--cpu] FILE.jsonl [FILE.jsonl …]
"""
import json
import sys


def read_lines(paths):
    for path in paths:
        with open(path) as handle:
            for number, text in enumerate(handle, 1):
                text = text.strip()
                if not text.startswith("{"):
                    continue
                try:
                    yield json.loads(text)
                except json.JSONDecodeError as error:
                    print(f"{path}:{number}: not JSON ({error}); skipped", file=sys.stderr)


def mib(value):
    return f"{value / 2**20:.0f}" if isinstance(value, (int, float)) else "–"


def ms(line):
    if line is None:
        return "–"
    if "error" in line:
        return "error"
    if "skipped" in line:
        return "skipped"
    return f"{line['step_ms']:.2f}"


def measured(line):
    return line is not None and "step_ms" in line


def spread(line):
    if not measured(line):
        return ms(line)
    return f"{line['step_ms']:.0f} ({line['step_ms_p10']:.0f}–{line['step_ms_p90']:.0f})"


def cpu(line):
    value = line.get("cpu_utilisation") if measured(line) else None
    return f"{value:.2f}" if isinstance(value, (int, float)) else "–"


def cpu_table(rows):
    out = [
        "| configuration | sskd ms (p10–p90) | CPU | PyTorch ms (p10–p90) | CPU | sskd / PyTorch |",
        "|---|---|---|---|---|---|",
    ]
    for (config, _), impls in rows.items():
        burn, torch = impls.get("burn"), impls.get("torch")
        ratio = f"{burn['step_ms'] / torch['step_ms']:.2f}" if measured(burn) and measured(torch) else "–"
        out.append(f"| {config} | {spread(burn)} | {cpu(burn)} | {spread(torch)} | {cpu(torch)} | {ratio} |")
    return out


def table(lines, cpu_columns=False):
    rows = {}
    for line in lines:
        if "config" not in line:
            continue
        missing = [key for key in ("precision", "impl") if key not in line]
        if missing:
            print(f"a line of {line['config']} lacks {', '.join(missing)}; skipped", file=sys.stderr)
            continue
        impls = rows.setdefault((line["config"], line["precision"]), {})
        kept = impls.get(line["impl"])
        if kept is None or line.get("steps", 0) >= kept.get("steps", 0):
            impls[line["impl"]] = line  # the line with the most timed steps, else the last
    if cpu_columns:
        return "\n".join(cpu_table(rows) + errors_of(rows))
    out = [
        "| configuration | precision | Burn ms | PyTorch ms | Burn / PyTorch | Burn img/s | Burn peak MiB | PyTorch peak MiB | Burn first step s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (config, precision), impls in rows.items():
        burn, torch = impls.get("burn"), impls.get("torch")
        burn_ok, torch_ok = measured(burn), measured(torch)
        cells = [
            config,
            precision,
            ms(burn),
            ms(torch),
            f"{burn['step_ms'] / torch['step_ms']:.2f}" if burn_ok and torch_ok else "–",
            f"{burn['images_per_s']:.0f}" if burn_ok else "–",
            mib(burn.get("peak_memory_reserved_bytes")) if burn_ok else "–",
            mib(torch.get("peak_memory_reserved_bytes")) if torch_ok else "–",
            f"{burn['first_step_s']:.1f}" if burn_ok else "–",
        ]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out + errors_of(rows))


def errors_of(rows):
    errors = [
        f"- {line['impl']} {line['config']} ({line['precision']}): {line['error']}"
        for impls in rows.values()
        for line in impls.values()
        if "error" in line
    ]
    return [""] + errors if errors else []


if __name__ == "__main__":
    paths = [arg for arg in sys.argv[1:] if arg != "--cpu"]
    if not paths:
        raise SystemExit(__doc__)
    print(table(list(read_lines(paths)), cpu_columns="--cpu" in sys.argv[1:]))
