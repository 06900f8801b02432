"""The SVG plot of jobs finished and failed per minute over the last hour, drawn on the server
(no script, no library): two bars per minute, a y axis scaled to the busiest minute.
"""

from __future__ import annotations

WIDTH, HEIGHT = 760, 220
LEFT, RIGHT, TOP, BOTTOM = 44, 10, 26, 28
FINISHED, FAILED = "#1b7f3b", "#b3261e"


def _nice_max(peak: int) -> int:
    """The y axis top: 1, 2 or 5 times a power of ten, at least `peak` (and at least 1)."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step >= peak:
                return m * step
        step *= 10


def svg(per_minute: list[tuple[int, int]]) -> str:
    """The plot of (finished, failed) per minute, oldest first, as one <svg> element."""
    n = max(1, len(per_minute))
    top = _nice_max(max([max(a, b) for a, b in per_minute] or [0]))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / n
    bar = max(1.0, slot / 2 - 0.5)
    done = sum(a for a, _ in per_minute)
    failed = sum(b for _, b in per_minute)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" id="throughput" font-family="sans-serif" '
        'font-size="11">',
        f"<title>Jobs per minute, last hour: {done} finished, {failed} failed</title>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>',
    ]
    for frac in (0, 0.5, 1):
        y = TOP + plot_h * (1 - frac)
        label = f"{top * frac:g}"
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#e2e5e9"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#68707a">{label}</text>'
        )
    for i, (a, b) in enumerate(per_minute):
        x = LEFT + i * slot
        for k, (count, colour) in enumerate(((a, FINISHED), (b, FAILED))):
            if count:
                h = plot_h * count / top
                parts.append(
                    f'<rect class="{"finished" if k == 0 else "failed"}" x="{x + k * bar:.1f}" '
                    f'y="{TOP + plot_h - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                    f'fill="{colour}"><title>{n - 1 - i} min ago: {count} '
                    f"{'finished' if k == 0 else 'failed'}</title></rect>"
                )
    base = TOP + plot_h
    for minutes_ago in (60, 45, 30, 15, 0):
        x = LEFT + plot_w * (n - minutes_ago) / n
        label = "now" if minutes_ago == 0 else f"-{minutes_ago} min"
        parts.append(
            f'<text x="{x:.1f}" y="{base + 16}" text-anchor="middle" fill="#68707a">{label}</text>'
        )
    parts.append(
        f'<line x1="{LEFT}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}" stroke="#9aa0a6"/>'
        f'<rect x="{LEFT}" y="6" width="10" height="10" fill="{FINISHED}"/>'
        f'<text x="{LEFT + 14}" y="15">finished ({done})</text>'
        f'<rect x="{LEFT + 120}" y="6" width="10" height="10" fill="{FAILED}"/>'
        f'<text x="{LEFT + 134}" y="15">failed or timed out ({failed})</text>'
        "</svg>"
    )
    return "".join(parts)
