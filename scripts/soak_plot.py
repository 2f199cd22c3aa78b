"""Summary and SVG plot of scripts/soak.sh's CSV: each process's memory over time, the
storage queue's depth, the faults marked. Standard library only.

    python3 scripts/soak_plot.py soak.csv soak.svg
"""

import csv
import statistics
import sys

PROCESSES = ["collector1", "collector2", "monitor", "simulator", "secantusd",
             "node1", "node2", "node3"]
COLOURS = ["#1f77b4", "#aec7e8", "#2ca02c", "#9467bd", "#d62728", "#ff7f0e", "#ffbb78",
           "#8c564b"]


def number(text):
    try:
        return float(text)
    except ValueError:
        return 0.0


def main(csv_path, svg_path):
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        sys.exit("no samples")
    seconds = [number(row["seconds"]) for row in rows]
    memory = {name: [number(row[f"{name}_kib"]) / 1024 for row in rows] for name in PROCESSES}
    depth = [number(row["storage_depth"]) for row in rows]
    faults = [(number(row["seconds"]), row["fault"]) for row in rows if row["fault"]]

    third = max(1, len(rows) // 3)
    print("RSS MiB      first third (median)  last third (median)  max")
    for name in PROCESSES:
        values = [value for value in memory[name] if value > 0]
        if not values:
            continue
        first = statistics.median([v for v in memory[name][:third] if v > 0] or [0])
        last = statistics.median([v for v in memory[name][-third:] if v > 0] or [0])
        print(f"  {name:<11} {first:>18.1f}  {last:>19.1f}  {max(values):>5.1f}")
    calm = statistics.median(depth[: max(1, int(faults[0][0] // max(seconds[1] - seconds[0], 1)))]
                             if faults else depth)
    print(f"storage queue depth: median before the first fault {calm:.0f}")
    for index, (at, label) in enumerate(faults):
        until = faults[index + 1][0] if index + 1 < len(faults) else seconds[-1] + 1
        window = [(s, d) for s, d in zip(seconds, depth) if at <= s < until]
        peak = max((d for _, d in window), default=0)
        peak_at = next((s for s, d in window if d == peak), at)
        drained = next((s for s, d in window if s >= peak_at and d <= max(calm * 2, 100)), None)
        drained_text = f"drained {drained - at:.0f} s after" if drained is not None else "not drained"
        print(f"  {at:>5.0f} s {label}: peak depth {peak:.0f}, {drained_text}")

    width, height, left, right = 960, 640, 70, 190
    panel = (height - 110) / 2
    span = max(seconds[-1], 1)

    def x(value):
        return left + (width - left - right) * value / span

    def chart(top, series, unit, title):
        peak = max((max(values) for _, values, _ in series), default=1) or 1
        parts = [f'<text x="{left}" y="{top - 8}" font-weight="bold">{title}</text>',
                 f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{panel}" '
                 'fill="none" stroke="#999"/>']
        for tick in range(5):
            value = peak * tick / 4
            y = top + panel - panel * tick / 4
            parts.append(f'<text x="{left - 6}" y="{y + 4}" text-anchor="end">{value:.0f}</text>')
        parts.append(f'<text x="12" y="{top + panel / 2}" transform="rotate(-90 12 '
                     f'{top + panel / 2})" text-anchor="middle">{unit}</text>')
        for index, (name, values, colour) in enumerate(series):
            points = " ".join(f"{x(s):.1f},{top + panel - panel * v / peak:.1f}"
                              for s, v in zip(seconds, values))
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                         f'points="{points}"/>')
            parts.append(f'<text x="{width - right + 10}" y="{top + 14 + 16 * index}" '
                         f'fill="{colour}">{name}</text>')
        for at, _ in faults:
            parts.append(f'<line x1="{x(at):.1f}" y1="{top}" x2="{x(at):.1f}" '
                         f'y2="{top + panel}" stroke="#c00" stroke-dasharray="4 3"/>')
        return parts

    memory_series = [(name, memory[name], colour) for name, colour in zip(PROCESSES, COLOURS)
                     if any(memory[name])]
    body = chart(40, memory_series, "RSS, MiB", "Memory of each process")
    body += chart(80 + panel, [("storage queue", depth, "#333")], "messages",
                  "Storage queue depth (dashed: a fault)")
    axis_y = height - 20
    for tick in range(7):
        value = span * tick / 6
        body.append(f'<text x="{x(value):.1f}" y="{axis_y}" text-anchor="middle">'
                    f'{value / 60:.0f} min</text>')
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">\n' + "\n".join(body) + "\n</svg>\n")
    with open(svg_path, "w") as handle:
        handle.write(svg)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
