"""Inline SVG for the image page: the picture with its tiles drawn and labelled, and a small
chart of the image's scores over the label rounds."""

from __future__ import annotations

from html import escape

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def tiles_picture(src: str, hw: list[int] | None, tiles: list[dict]) -> str:
    """The picture, scaled to its box, with each tile's outline and its top class written in
    it (all three top classes on hover), in the image's own pixel coordinates."""
    if not hw or min(hw) < 1:
        return f"<img class='picture' src='{src}' alt='the image'>"
    h, w = hw
    size = max(w, h) / 36
    parts = [
        f"<svg class='picture' viewBox='0 0 {w} {h}' xmlns='http://www.w3.org/2000/svg' role='img'>"
        f"<image href='{src}' x='0' y='0' width='{w}' height='{h}' preserveAspectRatio='none'/>"
    ]
    for t in tiles:
        top, left, th, tw = t["box"]
        hover = ", ".join(f"{n} {p:.2f}" for n, p in t["top"])
        label = f"{t['top'][0][0]} {t['top'][0][1]:.2f}" if t["top"] else ""
        parts.append(
            f"<g class='tile'><title>{escape(hover)}</title>"
            f"<rect x='{left}' y='{top}' width='{tw}' height='{th}' stroke-width='{size / 6:.1f}'/>"
            f"<text x='{left + size / 2:.1f}' y='{top + size * 1.3:.1f}' font-size='{size:.1f}' "
            f"stroke-width='{size / 4:.1f}'>{escape(label)}</text></g>"
        )
    return "".join(parts) + "</svg>"


def rounds_chart(d: dict, width: int = 380, height: int = 190) -> str:
    """Every label round's score for the image's top classes (and its true ones), one line a class."""
    rounds = [k for k in d["scores"] if k.startswith("round_")]
    if not rounds:
        return ""
    index = {n: i for i, n in enumerate(d["classes"])}
    names = list(dict.fromkeys([n for n, _ in d.get("top", [])][:5] + d.get("truth", [])))[: len(PALETTE)]
    left, right, top, bottom = 34, 120, 10, 30
    pw, ph = width - left - right, height - top - bottom

    def x(i: int) -> float:
        return left + (pw / 2 if len(rounds) == 1 else pw * i / (len(rounds) - 1))

    def y(v: float) -> float:
        return top + ph * (1 - v)

    out = [f"<svg class='chart' width='{width}' height='{height}' xmlns='http://www.w3.org/2000/svg'>"]
    for v in (0, 0.5, 1):
        out.append(f"<line class='grid' x1='{left}' x2='{left + pw}' y1='{y(v):.1f}' y2='{y(v):.1f}'/>")
        out.append(f"<text class='tick' x='{left - 4}' y='{y(v) + 4:.1f}' text-anchor='end'>{v:g}</text>")
    for i, r in enumerate(rounds):
        out.append(f"<text class='tick' x='{x(i):.1f}' y='{height - 12}' text-anchor='middle'>{int(r[6:])}</text>")
    out.append(f"<text class='tick' x='{left + pw / 2:.1f}' y='{height - 1}' text-anchor='middle'>label round</text>")
    for j, name in enumerate(names):
        colour = PALETTE[j]
        points = [(x(i), y(v)) for i, r in enumerate(rounds) if (v := d["scores"][r][index[name]]) is not None]
        if len(points) > 1:
            path = " ".join(f"{a:.1f},{b:.1f}" for a, b in points)
            out.append(f"<polyline points='{path}' fill='none' stroke='{colour}' stroke-width='2'/>")
        out += [f"<circle cx='{a:.1f}' cy='{b:.1f}' r='3' fill='{colour}'/>" for a, b in points]
        ly = top + 14 * j + 8
        mark = " (truth)" if name in d.get("truth", []) else ""
        out.append(
            f"<rect x='{width - right + 8}' y='{ly - 8}' width='10' height='10' fill='{colour}'/>"
            f"<text class='legend' x='{width - right + 22}' y='{ly + 1}'>{escape(name + mark)}</text>"
        )
    return "".join(out) + "</svg>"
