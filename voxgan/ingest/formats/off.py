"""Object File Format, including ModelNet's ``OFF490 518 0`` (counts fused to the keyword) and COFF."""

from __future__ import annotations

import re

import numpy as np

from voxgan.ingest.formats.safety import Origin, check_claimed_counts, check_face_limit
from voxgan.ingest.formats.text import COMMENT, counted_polygons, fan_triangulate, parse_numbers, parse_rows
from voxgan.ingest.mesh import Mesh, MeshError

_OFF_HEADER = re.compile(rb"\s*(ST)?(C)?(N)?(4)?(n)?OFF")
_OFF_COUNTS = re.compile(rb"\s*(\d+)\s+(\d+)(?:[ \t]+(\d+))?")


def read(data: bytes, origin: Origin) -> Mesh:
    """The registry's reader: the file's mesh, not yet cleaned."""
    return Mesh(*parse_off(data, max_faces=origin.max_faces))


def parse_off(data: bytes, *, max_faces: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Parse Object File Format, including ModelNet's ``OFF490 518 0`` (counts fused to the keyword).

    ``COFF``/``NOFF``/``STOFF`` extra vertex columns and face colours are ignored; polygons are
    fan-triangulated. The header counts are checked against ``max_faces`` and the file size first.

    Returns
    -------
    vertices : (V, 3) float64
    faces : (F, 3) int64, not yet cleaned
    """
    if b"#" in data:
        data = COMMENT.sub(b"", data)
    header = _OFF_HEADER.match(data)
    if header is None:
        raise MeshError("cannot parse OFF: line 1: no OFF keyword")
    if header.group(4) or header.group(5):
        raise MeshError("cannot parse OFF: 4D and nD OFF files are not supported")
    counts_match = _OFF_COUNTS.match(data, header.end())
    if counts_match is None:
        raise MeshError("cannot parse OFF: no vertex and face counts after the OFF keyword")
    vertex_count, face_count = int(counts_match.group(1)), int(counts_match.group(2))
    check_face_limit(face_count, max_faces)
    body = data[counts_match.end() :]
    least = 6 * vertex_count + 8 * face_count - 1  # "x y z" lines, then "3 i j k" lines
    check_claimed_counts("OFF", vertex_count, face_count, least, len(body))
    plain = not (header.group(1) or header.group(2) or header.group(3))
    if plain:
        parsed = _off_tokens(body, vertex_count, face_count)
        if parsed is not None:
            return parsed
    first_line = data[: counts_match.end()].count(b"\n") + 1
    return _off_lines(body, vertex_count, face_count, first_line)


def _off_tokens(body: bytes, vertex_count: int, face_count: int):
    """Fast path: a plain all-triangle OFF read as one stream of numbers; None if it is not that."""
    values = parse_numbers(body)
    if values is None or len(values) < 3 * vertex_count + 4 * face_count:
        return None
    vertices = values[: 3 * vertex_count].reshape(vertex_count, 3)
    stream = values[3 * vertex_count :]
    if len(stream) == 4 * face_count and (stream[::4] == 3).all():
        faces = stream.reshape(face_count, 4)[:, 1:]
        indices = faces.astype(np.int64)
        if not (indices == faces).all():
            return None
        return vertices, indices
    return None  # polygons or face colours: the line-by-line path knows where each face ends


def _off_lines(body: bytes, vertex_count: int, face_count: int, first_line: int):
    """Line-by-line path: extra vertex columns, face colours, or a malformed file (precise errors)."""
    numbered = [(n, line) for n, line in enumerate(body.split(b"\n")) if line.strip()]
    if len(numbered) < vertex_count + face_count:
        raise MeshError(
            f"cannot parse OFF: header claims {vertex_count:,} vertices and {face_count:,} faces "
            f"but the file has {len(numbered):,} lines after it (truncated?)"
        )
    vertex_lines = [line for _, line in numbered[:vertex_count]]
    face_lines = [line for _, line in numbered[vertex_count : vertex_count + face_count]]
    vertex_text = b"\n".join(vertex_lines)
    try:
        vertices = parse_rows(vertex_text, vertex_count, 3, "coordinates", "OFF", 0)
    except MeshError as error:
        raise MeshError(_off_line_number(str(error), numbered, first_line)) from None
    face_text = b"\n".join(face_lines)
    try:
        indices, counts = counted_polygons(face_text, face_count, "OFF")
    except MeshError as error:
        raise MeshError(_off_line_number(str(error), numbered[vertex_count:], first_line)) from None
    return vertices, fan_triangulate(indices, counts)


def _off_line_number(message: str, numbered: list, first_line: int) -> str:
    match = re.search(r": line (\d+):", message)
    if match is None:
        return message
    line = first_line + numbered[int(match.group(1))][0]
    return message[: match.start()] + f": line {line}:" + message[match.end() :]
