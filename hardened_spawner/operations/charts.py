"""The operations page's pictures, drawn on the server as SVG: no JavaScript, no build step. Pure.

Every text that comes from outside (user and server names, GPU ids, reason
codes) is escaped before it goes into the SVG, which the page embeds as is.
"""

import datetime
from collections import Counter
from html import escape

from ..decisions.idle import gpu_names

COLORS = {"free": "#d8f0d8", "held": "#f4b183", "pending": "#ffe699", "stuck": "#e06666", "idle": "#b4a7d6"}
STATE_WORDS = {"free": "free", "held": "in use", "pending": "starting", "stuck": "stuck (no running server)",
               "idle": "due to be reclaimed"}
REASON_COLORS = ("#c0504d", "#4f81bd", "#9bbb59", "#8064a2", "#4bacc6", "#7f7f7f")
FONT = 'font-family="sans-serif" font-size="12"'


def _legend(items, x, y):
    out = []
    for i, (color, words) in enumerate(items):
        left = x + (i % 3) * 220
        top = y + (i // 3) * 18
        out.append(f'<rect x="{left}" y="{top}" width="12" height="12" fill="{color}" stroke="#555"/>'
                   f'<text x="{left + 18}" y="{top + 10}" {FONT}>{escape(words)}</text>')
    return "".join(out)


def occupancy_svg(pools, cell=(150, 54), columns=6):
    """A grid of GPUs, one row of cells per pool.

    ``pools``: ``[(pool label, [(gpu id, state, [holder line, ...]), ...]), ...]``;
    ``state`` is a key of :data:`COLORS`.
    """
    width, height = cell
    body, y = [], 0
    for label, gpus in pools:
        body.append(f'<text x="0" y="{y + 14}" {FONT} font-weight="bold">{escape(label)}</text>')
        y += 22
        for i, (gpu, state, lines) in enumerate(gpus):
            x, top = (i % columns) * (width + 8), y + (i // columns) * (height + 8)
            title = f"{gpu_names([gpu])}: {STATE_WORDS.get(state, state)}" + "".join(f"\n{line}" for line in lines)
            body.append(
                f'<g class="gpu gpu-{escape(state)}" data-gpu="{escape(gpu)}"><title>{escape(title)}</title>'
                f'<rect x="{x}" y="{top}" width="{width}" height="{height}" rx="6" fill="{COLORS.get(state, "#ccc")}" '
                f'stroke="#555"/><text x="{x + 8}" y="{top + 17}" {FONT} font-weight="bold">{escape(gpu_names([gpu]))}</text>'
                + "".join(f'<text x="{x + 8}" y="{top + 33 + 14 * j}" {FONT}>{escape(_fit(line, width))}</text>'
                          for j, line in enumerate(lines[:2]))
                + "</g>")
        rows = max(1, (len(gpus) + columns - 1) // columns)
        y += rows * (height + 8) + 6
    legend = _legend([(COLORS[s], STATE_WORDS[s]) for s in ("free", "held", "pending", "idle", "stuck")], 0, y + 4)
    total_w = columns * (width + 8)
    total_h = y + 44
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="GPU occupancy" class="hs-gpu-grid" '
            f'width="{total_w}" height="{total_h}" viewBox="0 0 {total_w} {total_h}">'
            + "".join(body) + legend + "</svg>")


def _fit(text, width):
    most = max(4, width // 7)
    return text if len(text) <= most else text[: most - 1] + "…"


def denial_buckets(denials, now, hours=24, buckets=24):
    """``(bucket starts, {reason: [count per bucket]})`` of ``denials`` (``(time, reason)``) in the last ``hours``."""
    span = datetime.timedelta(hours=hours) / buckets
    start = now - span * buckets
    starts = [start + span * i for i in range(buckets)]
    reasons = Counter(reason for when, reason in denials if start <= when <= now)
    top = [r for r, _ in reasons.most_common(len(REASON_COLORS) - 1)]
    series = {r: [0] * buckets for r in top}
    for when, reason in denials:
        if start <= when <= now:
            key = reason if reason in series else "other"
            series.setdefault(key, [0] * buckets)[min(int((when - start) / span), buckets - 1)] += 1
    return starts, series


def denials_svg(denials, now, hours=24, buckets=24, size=(860, 220)):
    """Stacked bars of refused spawns per time bucket, coloured by reason code."""
    width, height = size
    starts, series = denial_buckets(denials, now, hours, buckets)
    left, bottom, top = 40, 40, 10
    plot_w, plot_h = width - left - 10, height - bottom - top
    totals = [sum(s[i] for s in series.values()) for i in range(buckets)]
    peak = max(totals + [1])
    bar_w = plot_w / buckets
    out = [f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#555"/>',
           f'<text x="{left - 6}" y="{top + 10}" {FONT} text-anchor="end">{peak}</text>',
           f'<text x="{left - 6}" y="{top + plot_h}" {FONT} text-anchor="end">0</text>']
    colors = {reason: REASON_COLORS[i % len(REASON_COLORS)] for i, reason in enumerate(series)}
    for i in range(buckets):
        y = top + plot_h
        for reason, counts in series.items():
            if counts[i]:
                h = plot_h * counts[i] / peak
                y -= h
                out.append(f'<rect class="denial-bar" x="{left + i * bar_w + 1:.1f}" y="{y:.1f}" '
                           f'width="{bar_w - 2:.1f}" height="{h:.1f}" fill="{colors[reason]}">'
                           f'<title>{escape(reason)}: {counts[i]} from {starts[i]:%H:%M} UTC</title></rect>')
        if i % max(1, buckets // 6) == 0:
            out.append(f'<text x="{left + i * bar_w:.1f}" y="{top + plot_h + 14}" {FONT}>{starts[i]:%H:%M}</text>')
    if not series:
        out.append(f'<text x="{left + 10}" y="{top + plot_h / 2}" {FONT}>No spawn was refused in the last '
                   f'{hours} h.</text>')
    legend = _legend([(colors[r], f"{r} ({sum(c)})") for r, c in series.items()], left, top + plot_h + 22)
    total_h = height + 18 * max(0, (len(series) - 1) // 3)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="Refused spawns over time" '
            f'class="hs-denials" width="{width}" height="{total_h}" viewBox="0 0 {width} {total_h}">'
            + "".join(out) + legend + "</svg>")
