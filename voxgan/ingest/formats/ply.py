"""PLY, ASCII and binary (either byte order), polygons of mixed sizes; unusual layouts through trimesh."""

from __future__ import annotations

import io
import re
import struct
from typing import NamedTuple

import numpy as np

from voxgan.ingest.formats.safety import Origin, check_claimed_counts, check_face_limit
from voxgan.ingest.formats.text import (
    NEWLINE,
    counted_polygons,
    fan_triangulate,
    parse_rows,
    ragged_positions,
)
from voxgan.ingest.mesh import Mesh, MeshError, error_line

_PLY_TYPES = {
    "char": "i1", "uchar": "u1", "int8": "i1", "uint8": "u1", "short": "i2", "ushort": "u2", "int16": "i2",
    "uint16": "u2", "int": "i4", "uint": "u4", "int32": "i4", "uint32": "u4", "float": "f4", "float32": "f4",
    "double": "f8", "float64": "f8",
}  # fmt: skip

_PLY_ENDIAN = {"ascii": "<", "binary_little_endian": "<", "binary_big_endian": ">"}


class _PlyProperty(NamedTuple):
    name: str
    code: str  # numpy type code of the value (of each item, for a list)
    count_code: str | None  # numpy type code of a list's count; None for a scalar


class _PlyElement(NamedTuple):
    name: str
    count: int
    properties: list[_PlyProperty]


def read(data: bytes, origin: Origin) -> Mesh:
    """The registry's reader: the file's mesh, not yet cleaned."""
    return Mesh(*parse_ply(data, max_faces=origin.max_faces))


def parse_ply(data: bytes, *, max_faces: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Parse PLY after checking the header's counts against ``max_faces`` and the file size.

    Files with the usual layout (``vertex`` then ``face``, scalar vertex properties, the face's index
    list first) are parsed here with numpy, ASCII or binary, polygons of mixed sizes included; other
    layouts go to trimesh. Texture files named in the header are never read.

    Returns
    -------
    vertices : (V, 3) float64
    faces : (F, 3) int64, not yet cleaned
    """
    elements, fmt, body_start = _ply_header(data)
    counts = {element.name: element.count for element in elements}
    face_count, vertex_count = counts.get("face", 0), counts.get("vertex", 0)
    check_face_limit(face_count, max_faces)
    body_size = len(data) - body_start
    least = sum(element.count * _ply_least_size(element, fmt == "ascii") for element in elements)
    check_claimed_counts("PLY", vertex_count, face_count, least, body_size)
    if _ply_usual_layout(elements):
        if fmt == "ascii":
            return _ply_ascii(data[body_start:], elements, data[:body_start].count(b"\n") + 1)
        return _ply_binary(data, body_start, elements, _PLY_ENDIAN[fmt])
    from trimesh.exchange.ply import load_ply

    try:
        loaded = load_ply(io.BytesIO(data), resolver=None, fix_texture=False, skip_materials=True)
    except Exception as error:
        raise MeshError(f"cannot parse PLY: {error_line(error)}") from None
    vertices = np.asarray(loaded.get("vertices", np.zeros((0, 3))), dtype=np.float64)
    faces = loaded.get("faces")
    if faces is None or len(faces) == 0:
        raise MeshError("no faces")
    return vertices, _polygons_to_triangles(faces)


def _ply_header(data: bytes) -> tuple[list[_PlyElement], str, int]:
    """The elements, the format (``ascii``, ``binary_little_endian``, ...) and where the body starts."""
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise MeshError("cannot parse PLY: no 'ply ... end_header' header")
    newline = data.find(b"\n", end)
    body_start = newline + 1 if newline >= 0 else len(data)
    fmt = ""
    elements: list[_PlyElement] = []
    for line in data[:end].decode("latin-1").splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "format" and len(words) > 1:
            fmt = words[1]
        elif words[0] == "element":
            # isascii: "¹" is a digit to isdigit but not to int
            if len(words) != 3 or not (words[2].isascii() and words[2].isdigit()):
                raise MeshError(f"cannot parse PLY: bad header line: {line.strip()[:60]}")
            elements.append(_PlyElement(words[1], int(words[2]), []))
        elif words[0] == "property" and elements:
            is_list = len(words) == 5 and words[1] == "list"
            kinds = words[2:4] if is_list else words[1:2]
            if len(words) != (5 if is_list else 3) or any(kind not in _PLY_TYPES for kind in kinds):
                raise MeshError(f"cannot parse PLY: bad header line: {line.strip()[:60]}")
            count_code = _PLY_TYPES[words[2]] if is_list else None
            elements[-1].properties.append(_PlyProperty(words[-1], _PLY_TYPES[kinds[-1]], count_code))
    if fmt not in _PLY_ENDIAN:
        raise MeshError(f"cannot parse PLY: unknown format {fmt or '(none)'}")
    return elements, fmt, body_start


def _ply_least_size(element: _PlyElement, ascii_format: bool) -> int:
    """The fewest bytes one element can take (a list at least its count)."""
    if ascii_format:
        return max(2 * len(element.properties) - 1, 1)
    codes = [prop.count_code or prop.code for prop in element.properties]
    return max(sum(np.dtype(code).itemsize for code in codes), 1)


def _ply_usual_layout(elements: list[_PlyElement]) -> bool:
    """``vertex`` (scalars, x y z among them) then ``face`` (its index list first, then scalars)."""
    if len(elements) < 2 or elements[0].name != "vertex" or elements[1].name != "face":
        return False
    vertex_props, face_props = elements[0].properties, elements[1].properties
    names = [prop.name for prop in vertex_props]
    scalar_vertices = all(prop.count_code is None for prop in vertex_props)
    return (
        scalar_vertices
        and {"x", "y", "z"} <= set(names)
        and bool(face_props)
        and face_props[0].count_code is not None
        and all(prop.count_code is None for prop in face_props[1:])
        and face_props[0].count_code[0] in "iu"
        and face_props[0].code[0] in "iu"
    )


def _ply_binary(data: bytes, start: int, elements: list[_PlyElement], endian: str):
    """Binary PLY body: a vertex table, then faces ``count, indices[count], scalars`` back to back."""
    (_, vertex_count, vertex_props), (_, face_count, face_props) = elements[0], elements[1]
    row = np.dtype([(f"p{i}", endian + prop.code) for i, prop in enumerate(vertex_props)])
    if start + vertex_count * row.itemsize > len(data):
        raise MeshError("cannot parse PLY: the vertex table runs past the end of the file (truncated?)")
    table = np.frombuffer(data, dtype=row, count=vertex_count, offset=start)
    names = [prop.name for prop in vertex_props]
    vertices = np.stack([table[f"p{names.index(axis)}"] for axis in "xyz"], axis=1).astype(np.float64)
    start += vertex_count * row.itemsize
    count_type = np.dtype(endian + face_props[0].count_code)
    index_type = np.dtype(endian + face_props[0].code)
    tail = sum(np.dtype(prop.code).itemsize for prop in face_props[1:])
    if start + count_type.itemsize > len(data):
        raise MeshError("cannot parse PLY: no face data after the vertices (truncated?)")
    first = int(np.frombuffer(data, dtype=count_type, count=1, offset=start)[0])
    if first >= 1:  # fast path: every face has the first face's corner count
        face_row = np.dtype([("k", count_type), ("i", index_type, (first,)), ("tail", f"V{tail}")])
        if start + face_count * face_row.itemsize <= len(data):
            faces = np.frombuffer(data, dtype=face_row, count=face_count, offset=start)
            if (faces["k"] == first).all():
                counts = np.full(face_count, first, dtype=np.int64)
                return vertices, fan_triangulate(faces["i"].reshape(-1).astype(np.int64), counts)
    counts, index_starts = _ply_walk_faces(data, start, face_count, count_type, index_type.itemsize, tail)
    offsets = ragged_positions(index_starts, counts, step=index_type.itemsize)
    raw = np.frombuffer(data, dtype=np.uint8)
    items = raw[offsets[:, None] + np.arange(index_type.itemsize)].copy().view(index_type).reshape(-1)
    return vertices, fan_triangulate(items.astype(np.int64), counts)


def _ply_walk_faces(
    data: bytes, start: int, face_count: int, count_type: np.dtype, index_size: int, tail: int
):
    """Face by face: corner counts (F,) int64 and byte offsets (F,) int64 of each face's first index."""
    order = ">" if count_type.byteorder == ">" else "<"  # "|" for one byte, "=" for native (little)
    read_count = struct.Struct(order + count_type.char).unpack_from
    counts = np.empty(face_count, dtype=np.int64)
    index_starts = np.empty(face_count, dtype=np.int64)
    position, size = start, count_type.itemsize
    for face in range(face_count):
        if position + size > len(data):
            raise MeshError(f"cannot parse PLY: face {face} runs past the end of the file (truncated?)")
        count = read_count(data, position)[0]
        if count < 0:
            raise MeshError(f"cannot parse PLY: face {face} has a negative corner count")
        counts[face], index_starts[face] = count, position + size
        position += size + count * index_size + tail
    if position > len(data):
        raise MeshError("cannot parse PLY: the last face runs past the end of the file (truncated?)")
    return counts, index_starts


def _ply_ascii(body: bytes, elements, first_line: int) -> tuple[np.ndarray, np.ndarray]:
    """ASCII PLY body, one element a line: vertex lines then face lines (``k i1 .. ik [more]``).

    ``first_line`` is the file's line number of the body's first line, for error messages.
    """
    (_, vertex_count, vertex_props), (_, face_count, _) = elements[0], elements[1]
    buffer = np.frombuffer(body, dtype=np.uint8)
    ends = np.flatnonzero(buffer == NEWLINE)
    if len(ends) < vertex_count + face_count - 1:
        raise MeshError(
            f"cannot parse PLY: header claims {vertex_count:,} vertices and {face_count:,} faces "
            f"but {len(ends) + 1:,} lines follow (truncated?)"
        )
    ends = np.append(ends, len(buffer))
    vertex_end = ends[vertex_count - 1] + 1
    rows = parse_rows(body[:vertex_end], vertex_count, len(vertex_props), "properties", "PLY", first_line)
    columns = [prop.name for prop in vertex_props]
    vertices = rows[:, [columns.index(axis) for axis in "xyz"]]
    face_text = body[vertex_end : ends[vertex_count + face_count - 1]]
    try:
        indices, counts = counted_polygons(face_text, face_count, "PLY")
    except MeshError as error:
        message = re.sub(
            r": line (\d+):", lambda m: f": line {first_line + vertex_count + int(m[1])}:", str(error)
        )
        raise MeshError(message) from None
    return vertices, fan_triangulate(indices, counts)


def _polygons_to_triangles(faces) -> np.ndarray:
    """(F, k) array or ragged list of polygons -> (T, 3) int64 triangles, fan-triangulated."""
    if isinstance(faces, np.ndarray) and faces.dtype != object and faces.ndim == 2:
        if faces.shape[1] == 3:
            return faces.astype(np.int64)
        counts = np.full(len(faces), faces.shape[1], dtype=np.int64)
        return fan_triangulate(faces.reshape(-1).astype(np.int64), counts)
    polygons = [np.asarray(polygon, dtype=np.int64).reshape(-1) for polygon in faces]
    counts = np.array([len(polygon) for polygon in polygons], dtype=np.int64)
    return fan_triangulate(np.concatenate(polygons), counts)
