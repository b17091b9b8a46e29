"""The side-by-side table of a GPU session (benchmarks/gpu_session.sh): our train-step rows
against the official PyTorch step's, as a Markdown table for the note and docs/speed.md.

    python benchmarks/gpu_table.py OUR_ROWS.jsonl OFFICIAL_ROWS.jsonl

Ratios are ours over the official eager fp32 step of the same width (and over its
torch.compile where that row exists): higher is faster. Memory: GiB at the peak, ours from
JAX's allocator statistics, theirs from torch.cuda.max_memory_allocated.
"""

import json
import sys
from pathlib import Path


def read_rows(path):
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a row cut short by a time limit
    return rows


def official_rows(rows):
    """{(width, variant): row} of the finished official rows."""
    return {(row["width"], row["variant"]): row for row in rows
            if row.get("status") == "ok" and "img_s" in row}


def table(ours, theirs):
    width_of = {"nafnet-w32": 32, "nafnet-w64": 64}
    lines = ["| step | img/s | first step s | peak GiB | vs official eager fp32 | vs torch.compile |",
             "| --- | --- | --- | --- | --- | --- |"]
    for (width, variant), row in sorted(theirs.items()):
        lines.append(f"| official PyTorch w{width} {variant}, batch {row['batch']}, "
                     f"{row['crop']}px | {row['img_s']:.1f} | {row['first_step_s']:.1f} | "
                     f"{row.get('peak_mem_gib', float('nan')):.2f} | | |")
    for row in ours:
        width = row.get("override") and json.loads(row["override"]).get("width") \
            or width_of.get(row["config"])
        eager = theirs.get((width, "eager_fp32"))
        compiled = theirs.get((width, "compile_fp32"))
        ratio = f"{row['images_per_s'] / eager['img_s']:.2f}x" if eager else "-"
        ratio_compiled = f"{row['images_per_s'] / compiled['img_s']:.2f}x" if compiled else "-"
        flags = f" XLA_FLAGS={row['xla_flags']}" if row.get("xla_flags") else ""
        lines.append(f"| ours {row['config']} {row['precision']} {row['override']}{flags}, batch "
                     f"{row['batch']}, {row['crop']}px | {row['images_per_s']:.1f} | "
                     f"{row['first_step_s']:.1f} | {row['peak_memory_gib']:.2f} | {ratio} | "
                     f"{ratio_compiled} |")
    return "\n".join(lines)


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    print(table(read_rows(argv[0]), official_rows(read_rows(argv[1]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
