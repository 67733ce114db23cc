"""Vectorised parsing of the text formats (OBJ, OFF, ASCII STL and PLY): numbers, rows, polygons.

Lines are never parsed one by one in a Python loop: whole byte buffers go through numpy, and a slower
path is taken only to name the line of an error.
"""

from __future__ import annotations

import re

import numpy as np

from voxgan.ingest.kernels import compiled_kernels
from voxgan.ingest.mesh import MeshError

SPACE, TAB, NEWLINE, SLASH = 32, 9, 10, 47

COMMENT = re.compile(rb"#[^\n]*")


def parse_numbers(text: bytes, dtype=np.float64) -> np.ndarray | None:
    """All whitespace-separated numbers in ``text`` (1-D), or None when one is not a number.

    Plain decimals go through the compiled one-pass parser (:func:`voxgan.ingest.kernels.decimal_loop`,
    4-5 times numpy's); anything else (``nan``, 19 digits, no numba) through ``np.fromstring``.
    """
    if not text.strip():
        return np.zeros(0, dtype=dtype)
    kernels = compiled_kernels()
    if kernels is not None:
        values = np.empty(len(text) // 2 + 1)
        count = kernels.decimals(np.frombuffer(text, dtype=np.uint8), values)
        if count >= 0:
            return values[:count].astype(dtype, copy=False)
    try:
        return np.fromstring(text, dtype=dtype, sep=" ")
    except ValueError:
        return None


def tokens_per_line(text: bytes, line_count: int) -> np.ndarray:
    """Number of whitespace-separated tokens on each of the ``line_count`` newline-separated lines.

    Returns
    -------
    counts : (line_count,) int64
    """
    buffer = np.frombuffer(text, dtype=np.uint8)
    space = buffer <= 32
    starts = ~space
    starts[1:] &= space[:-1]
    line_of_byte = np.cumsum(buffer == 10, dtype=np.int32)
    return np.bincount(line_of_byte[starts], minlength=line_count)[:line_count]


def parse_rows(text: bytes, line_count: int, columns: int, what: str, fmt: str, first_line: int):
    """The first ``columns`` numbers of each line of ``text``.

    Returns
    -------
    rows : (line_count, columns) float64
    """
    values = parse_numbers(text)
    if values is not None and len(values) == columns * line_count:
        counts = None
    else:
        counts = tokens_per_line(text, line_count)
        short = np.flatnonzero(counts < columns)
        if len(short):
            raise MeshError(
                f"cannot parse {fmt}: line {first_line + short[0]}: expected {columns} {what}, "
                f"found {counts[short[0]]}"
            )
        if values is None or len(values) != counts.sum():
            bad = first_non_numeric_line(text)
            raise MeshError(f"cannot parse {fmt}: line {first_line + bad}: not a number")
    if counts is None or (counts == columns).all():
        return values.reshape(line_count, columns)
    starts = np.cumsum(counts) - counts
    return values[starts[:, None] + np.arange(columns)]


def first_non_numeric_line(text: bytes) -> int:
    for number, line in enumerate(text.split(b"\n")):
        try:
            [float(token) for token in line.split()]
        except ValueError:
            return number
    return 0


def fan_triangulate(indices: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Fan-triangulate polygons stored back to back.

    Parameters
    ----------
    indices : (sum(counts),) int64, the corners of every polygon in order
    counts : (P,) int64, corners per polygon; polygons with fewer than 3 corners are dropped

    Returns
    -------
    triangles : (sum(max(counts - 2, 0)), 3) int64
    """
    if len(counts) and (counts == 3).all():
        return indices.reshape(-1, 3)
    starts = np.cumsum(counts) - counts
    per_polygon = np.maximum(counts - 2, 0)
    polygon = np.repeat(np.arange(len(counts)), per_polygon)
    first = starts[polygon]
    step = np.arange(len(polygon)) - np.repeat(np.cumsum(per_polygon) - per_polygon, per_polygon) + 1
    return np.stack([indices[first], indices[first + step], indices[first + step + 1]], axis=1)


def ragged_positions(starts: np.ndarray, counts: np.ndarray, step: int = 1) -> np.ndarray:
    """Positions ``starts[p] + step * (0 .. counts[p]-1)`` for every p, concatenated."""
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(starts, counts) + step * offsets


def counted_polygons(text: bytes, face_count: int, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """Polygons written one a line as ``k i1 .. ik [anything]`` (OFF, ASCII PLY).

    Returns
    -------
    indices : (sum(counts),) int64
    counts : (face_count,) int64
    """
    values = parse_numbers(text)
    tokens = tokens_per_line(text, face_count)
    if values is None or len(values) != tokens.sum():
        raise MeshError(f"cannot parse {fmt}: line {first_non_numeric_line(text)}: not a number")
    starts = np.cumsum(tokens) - tokens
    if (tokens == 0).any():
        raise MeshError(f"cannot parse {fmt}: line {np.flatnonzero(tokens == 0)[0]}: empty face")
    counts = values[starts].astype(np.int64)
    short = np.flatnonzero((counts < 1) | (counts + 1 > tokens))
    if len(short):
        raise MeshError(f"cannot parse {fmt}: line {short[0]}: face lists fewer indices than its count")
    corners = values[ragged_positions(starts + 1, counts)]
    indices = corners.astype(np.int64)
    if not (indices == corners).all():
        raise MeshError(f"cannot parse {fmt}: a face index is not an integer")
    return indices, counts
