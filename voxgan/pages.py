"""Pages people open in a browser: volumes in 3D, turnable with the mouse, in one self-contained HTML file.

A page is a title and sections in order: HTML (a table, a chart, text; built with :func:`html_table`,
:func:`line_chart` and :func:`escape`) or a :class:`Gallery` of volumes. Every volume is drawn as blocks
by three.js (vendored in ``voxgan/viewer/``, see its README) through one WebGL renderer on one canvas, so a
page holds any number of volumes (a browser allows about 16 WebGL contexts a page). Everything is inline,
three.js and its licence included, and the page's Content-Security-Policy forbids any request, so the file
opens from disk with no network and can be mailed as it is. The volumes travel bit-packed in base64, as
the shards pack them: 64 volumes at 16³ take 44 KB; three.js takes 690 KB.

``voxgan export --format html``, ``voxgan evaluate`` (``report.html``) and ``voxgan info --html`` all
write their pages with :func:`write_page`.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from voxgan import __version__
from voxgan.atomic import write_bytes_atomic

THREE_VERSION = "0.170.0"  # npm three@0.170.0, build/three.module.min.js (voxgan/viewer/README.md)
CHART_COLOURS = ("#2f6fc4", "#d0562c", "#3a9a4a", "#8a4fb5", "#b58a12", "#2a9d9d")
# The page may load nothing: scripts and styles are inline, three.js is imported from a Blob URL it makes.
CONTENT_SECURITY_POLICY = "default-src 'none'; script-src 'unsafe-inline' blob:; style-src 'unsafe-inline'"


@dataclass
class Cell:
    """One volume of a gallery: (R, R, R) bool indexed [x, y, z], +z up, with a title and a detail line."""

    volume: np.ndarray
    title: str = ""
    detail: str = ""


@dataclass
class Gallery:
    """Volumes side by side under a heading; ``group`` consecutive cells share a frame (e.g. a sample, its
    nearest training volume and its nearest test volume)."""

    title: str
    cells: list[Cell]
    note: str = ""
    group: int = 1
    level: int = 2  # the heading: h2 or h3


def escape(text) -> str:
    """``text`` as HTML text (quotes too)."""
    return html.escape(str(text), quote=True)


@lru_cache(maxsize=8)
def viewer_file(name: str) -> str:
    """The text of ``voxgan/viewer/<name>`` (package data)."""
    return resources.files("voxgan").joinpath("viewer", name).read_text(encoding="utf-8")


def pack_volume(volume: np.ndarray) -> str:
    """(R, R, R) bool  ->  base64 of ``np.packbits`` of the [x, y, z] C-order bits (the shards' packing)."""
    volume = np.asarray(volume, bool)
    assert volume.ndim == 3 and len(set(volume.shape)) == 1, volume.shape
    return base64.b64encode(np.packbits(volume.reshape(-1)).tobytes()).decode("ascii")


def inline_script(text: str) -> str:
    """``text`` checked to be safe inside ``<script>``: no ``</script`` and no ``<!--`` in it."""
    lowered = text.lower()
    assert "</script" not in lowered and "<!--" not in lowered, "text would end the <script> element early"
    return text


def html_table(header: list[str], rows: list[list]) -> str:
    """A table of plain text cells (escaped here): ``header`` (C,) and rows (N, C)."""
    head = "".join(f"<th>{escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def axis_ticks(low: float, high: float, count: int = 5) -> np.ndarray:
    """About ``count`` round tick values covering [low, high] (step 1, 2 or 5 times a power of ten)."""
    if not high > low:
        return np.array([low])
    raw = (high - low) / max(count - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return np.arange(math.ceil(low / step) * step, high + step * 1e-9, step)


def tick_label(value: float) -> str:
    """A short label for an axis tick: 0.25, 1e+03, 1200."""
    return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.2g}"


def line_chart(title: str, series: dict[str, list[tuple[float, float]]], width: int = 380, height: int = 200):
    """An inline SVG chart of ``series``: name -> [(step, value), ...]; None and NaN values are left out.

    A series of one point shows as a dot. Returns "" when no series has a finite point.
    """
    clean = {
        name: [(float(x), float(y)) for x, y in points if y is not None and math.isfinite(float(y))]
        for name, points in series.items()
    }
    clean = {name: points for name, points in clean.items() if points}
    if not clean:
        return ""
    xs = np.array([x for points in clean.values() for x, _ in points])
    ys = np.array([y for points in clean.values() for _, y in points])
    x_low, x_high = float(xs.min()), float(xs.max())
    y_low, y_high = float(ys.min()), float(ys.max())
    if x_high == x_low:
        x_low, x_high = x_low - 1, x_high + 1
    margin = 0.05 * (y_high - y_low) or max(abs(y_high) * 0.05, 1e-3)
    y_low, y_high = y_low - margin, y_high + margin
    left, right, top, bottom = 52, 12, 26 + 14 * math.ceil(len(clean) / 3), 30
    plot_w, plot_h = width - left - right, height - top - bottom

    def at(x: float, y: float) -> tuple[float, float]:
        return (
            left + plot_w * (x - x_low) / (x_high - x_low),
            top + plot_h * (1 - (y - y_low) / (y_high - y_low)),
        )

    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="{left}" y="13" style="font-weight:600;font-size:12px">{escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fbfbfc" stroke="#c9ced6"/>',
    ]
    for tick in axis_ticks(y_low, y_high, 5):
        _, y = at(x_low, tick)
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e6e9ee"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{tick_label(tick)}</text>')
    for tick in axis_ticks(x_low, x_high, 6):
        x, _ = at(tick, y_low)
        parts.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 14}" text-anchor="middle">{tick_label(tick)}</text>'
        )
    parts.append(f'<text x="{left + plot_w}" y="{height - 2}" text-anchor="end">step</text>')
    for index, (name, points) in enumerate(clean.items()):
        colour = CHART_COLOURS[index % len(CHART_COLOURS)]
        row, column = divmod(index, 3)
        lx, ly = left + column * (plot_w / 3), 28 + 14 * row
        parts.append(f'<rect x="{lx:.1f}" y="{ly - 8}" width="10" height="3" fill="{colour}"/>')
        parts.append(f'<text x="{lx + 14:.1f}" y="{ly - 4}">{escape(name)}</text>')
        coords = [at(x, y) for x, y in sorted(points)]
        if len(coords) > 1:
            line = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            parts.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="1.6"/>')
        if len(coords) <= 40:
            parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.6" fill="{colour}"/>' for x, y in coords]
    parts.append("</svg>")
    return "".join(parts)


def gallery_html(gallery: Gallery, first: int) -> str:
    """The HTML of one gallery whose cells are numbered from ``first`` in the page's volume list."""
    cells = []
    for index, cell in enumerate(gallery.cells):
        detail = f'<br><span class="detail">{escape(cell.detail)}</span>' if cell.detail else ""
        cells.append(
            f'<div class="cell"><div class="view" data-cell="{first + index}" title="drag to turn"></div>'
            f'<div class="caption">{escape(cell.title)}{detail}</div></div>'
        )
    size = max(1, gallery.group)
    if size > 1:
        cells = [
            f'<div class="group">{"".join(cells[i : i + size])}</div>' for i in range(0, len(cells), size)
        ]
    level = gallery.level
    note = f'<p class="note">{escape(gallery.note)}</p>' if gallery.note else ""
    return f'<h{level}>{escape(gallery.title)}</h{level}>{note}<div class="gallery">{"".join(cells)}</div>'


def page_html(title: str, sections: list, subtitle: str = "") -> str:
    """The whole page: ``sections`` are HTML strings or :class:`Gallery` objects, in order."""
    body, volumes = [], []
    for section in sections:
        if isinstance(section, Gallery):
            body.append(gallery_html(section, len(volumes)))
            volumes += [cell.volume for cell in section.cells]
        else:
            body.append(section)
    data = {"cells": [{"r": int(np.shape(v)[0]), "v": pack_volume(v)} for v in volumes]}
    data_text = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
    licence = viewer_file("three-LICENSE")
    assert "--" not in licence
    subtitle_html = f'<p class="subtitle">{escape(subtitle)}</p>' if subtitle else ""
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f'<meta name="generator" content="voxgan {escape(__version__)}">',
            f"<title>{escape(title)}</title>",
            f"<style>{viewer_file('page.css')}</style>",
            "</head><body>",
            '<canvas id="voxgan-canvas"></canvas>',
            '<p id="voxgan-message" hidden></p>',
            f"<h1>{escape(title)}</h1>{subtitle_html}",
            *body,
            f"<footer>Made by voxgan {escape(__version__)}. Drag a volume to turn it; a double click turns "
            "it back. +z is up; the grey square is the grid's floor. 3D view: three.js "
            f"r{THREE_VERSION.split('.')[1]} (MIT licence, in this file's source), inline: this page needs "
            "no network.</footer>",
            f'<script type="application/json" id="voxgan-data">{data_text}</script>',
            f"<!-- three.js {THREE_VERSION} (https://threejs.org), embedded unchanged:\n{licence}-->",
            '<script type="text/plain" id="voxgan-three">'
            f"{inline_script(viewer_file('three.module.min.js'))}</script>",
            f'<script type="module">{inline_script(viewer_file("viewer.js"))}</script>',
            "</body></html>",
            "",
        ]
    )


def write_page(path: str | Path, title: str, sections: list, subtitle: str = "") -> Path:
    """Write :func:`page_html` to ``path`` (atomically; its folder must exist). Returns the path."""
    path = Path(path)
    write_bytes_atomic(path, page_html(title, sections, subtitle).encode("utf-8"))
    return path
