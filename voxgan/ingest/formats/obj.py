"""Wavefront OBJ: every ``v`` and ``f`` line of every object and group; materials are never read."""

from __future__ import annotations

import numpy as np

from voxgan.ingest.formats.safety import Origin, check_face_limit
from voxgan.ingest.formats.text import (
    COMMENT,
    NEWLINE,
    SLASH,
    SPACE,
    TAB,
    fan_triangulate,
    first_non_numeric_line,
    parse_numbers,
    parse_rows,
)
from voxgan.ingest.mesh import Mesh, MeshError


def read(data: bytes, origin: Origin) -> Mesh:
    """The registry's reader: the file's mesh, not yet cleaned."""
    return Mesh(*parse_obj(data, max_faces=origin.max_faces))


def parse_obj(data: bytes, *, max_faces: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Parse Wavefront OBJ geometry: every ``v`` and ``f`` line of every object and group.

    Materials (``mtllib``, ``usemtl``), texture coordinates and normals are ignored, so no other file
    is ever opened. Face corners may be ``i``, ``i/t``, ``i//n`` or ``i/t/n``; negative indices count
    back from the last vertex defined; polygons are fan-triangulated. Lines are selected and parsed
    with numpy over the whole byte buffer, without a Python loop over lines.

    Returns
    -------
    vertices : (V, 3) float64
    faces : (F, 3) int64, zero-based, not yet cleaned
    """
    if b"\\\n" in data or b"\\\r\n" in data:  # line continuations
        data = data.replace(b"\\\r\n", b" ").replace(b"\\\n", b" ")
    if b"\n " in data or b"\n\t" in data or data[:1] in (b" ", b"\t"):
        data = b"\n".join(line.lstrip() for line in data.split(b"\n"))
    buffer = np.frombuffer(data + b"\n", dtype=np.uint8)
    ends = np.flatnonzero(buffer == NEWLINE)
    starts = np.empty_like(ends)
    starts[0], starts[1:] = 0, ends[:-1] + 1
    first = buffer[starts]
    second = buffer[np.minimum(starts + 1, len(buffer) - 1)]
    keyword_alone = (second == SPACE) | (second == TAB)
    is_vertex = (first == ord("v")) & keyword_alone
    is_face = (first == ord("f")) & keyword_alone
    vertex_count, face_count = int(is_vertex.sum()), int(is_face.sum())
    if vertex_count == 0:
        raise MeshError("no vertices")
    if face_count == 0:
        raise MeshError("no faces")
    check_face_limit(face_count, max_faces)
    vertex_text = _without_comments(_gather_lines(buffer, starts[is_vertex] + 2, ends[is_vertex] + 1))
    vertices = _obj_rows(vertex_text, vertex_count)
    face_text = _without_comments(_gather_lines(buffer, starts[is_face] + 2, ends[is_face] + 1))
    face_bytes = np.frombuffer(face_text, dtype=np.uint8)
    face_bytes, counts = _drop_corner_tails(face_bytes, face_count)
    text = face_bytes.tobytes()
    corners = parse_numbers(text, np.int64)
    if corners is None or len(corners) != counts.sum():
        raise MeshError(f"cannot parse OBJ: face {first_non_numeric_line(text) + 1}: index is not an integer")
    if (corners < 0).any():  # relative to the vertices defined before the face's line
        defined_before = np.cumsum(is_vertex)[is_face]
        corners = np.where(corners < 0, np.repeat(defined_before, counts) + corners + 1, corners)
    corners = np.where(corners > 0, corners - 1, -1)  # 0 is no valid OBJ index: dropped when cleaning
    faces = fan_triangulate(corners, counts)
    check_face_limit(len(faces), max_faces)
    return vertices, faces


def _gather_lines(buffer: np.ndarray, begins: np.ndarray, ends: np.ndarray) -> bytes:
    """The bytes ``buffer[begins[i]:ends[i]]`` of every i, concatenated (ranges sorted, disjoint)."""
    marks = np.zeros(len(buffer) + 1, dtype=np.int8)
    marks[begins] += 1
    marks[ends] -= 1
    inside = np.cumsum(marks[:-1], dtype=np.int8) > 0
    return buffer[inside].tobytes()


def _without_comments(text: bytes) -> bytes:
    """``text`` with every ``# ...`` comment up to the end of its line removed."""
    return COMMENT.sub(b"", text) if b"#" in text else text


def _drop_corner_tails(text: np.ndarray, line_count: int) -> tuple[np.ndarray, np.ndarray]:
    """Blank the ``/t/n`` tail of every face corner and count the corners of every line.

    Parameters
    ----------
    text : (N,) uint8, ``line_count`` face lines without their ``f``, each ending with a newline

    Returns
    -------
    text : (N,) uint8 with only the vertex indices left
    corners : (line_count,) int64 corners per line
    """
    space = text <= SPACE
    token_start = ~space
    token_start[1:] &= space[:-1]
    tokens_so_far = np.cumsum(token_start, dtype=np.int32)
    line_ends = np.flatnonzero(text == NEWLINE)
    assert len(line_ends) == line_count, (len(line_ends), line_count)
    corners = np.diff(tokens_so_far[line_ends], prepend=0).astype(np.int64)
    slash = text == SLASH
    if slash.any():
        slashes_so_far = np.cumsum(slash, dtype=np.int32)
        slashes_at_token_start = slashes_so_far[token_start]
        token = np.maximum(tokens_so_far - 1, 0)
        tail = (slashes_so_far > slashes_at_token_start[token]) & ~space
        text = np.where(tail, np.uint8(SPACE), text)
    return text, corners


def _obj_rows(text: bytes, line_count: int) -> np.ndarray:
    try:
        return parse_rows(text, line_count, 3, "coordinates", "OBJ", 1)
    except MeshError as error:  # line numbers count vertices here, not file lines
        raise MeshError(str(error).replace(": line ", ": vertex ")) from None
