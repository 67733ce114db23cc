"""Safe loading of every mesh format into one triangle mesh, and normalisation into the grid frame.

Loading
-------
:func:`load_mesh` reads OBJ, OFF, STL (ASCII and binary), PLY and GLB/glTF into ``vertices (V, 3) float64``
and ``faces (F, 3) int64``: polygons fan-triangulated, every part of a multi-object file kept, a glTF
scene flattened with its node transforms applied, then cleaned (see :func:`clean_mesh`).
:func:`load_binvox` reads a binvox voxel file. OBJ, OFF, STL and PLY are parsed here with
vectorised numpy (trimesh's parsers are slower for these); glTF/GLB and unusual PLY layouts go through
trimesh.

Never trust a file: a path outside ``root`` is never read (symlinks are resolved first); OBJ materials
are not read at all (voxgan needs geometry only); a glTF buffer may only point at a file inside
``root`` (never at an absolute path or a URL: nothing is fetched); glTF images are never read. Counts
claimed by a header are checked against ``max_faces`` and against the file's size before anything is
allocated, so a header that claims 10⁹ faces fails at once.

Normalisation
-------------
:func:`grid_transform` gives the 4×4 affine from mesh coordinates to grid coordinates, where voxel
``(i, j, k)`` spans ``[i, i+1) × [j, j+1) × [k, k+1)``: the dataset's up axis turned to +z, the largest
extent scaled to ``resolution - 2 * padding``, the box centred in ``[0, R]³``. A triangle lying exactly
on a grid plane overlaps neither voxel beside it, so the extreme faces of a shape are kept off the integer
planes: an axis whose minimum or maximum lands within 1e-6 of an integer is shifted by 1/64 voxel.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import struct
import urllib.parse
from pathlib import Path
from typing import NamedTuple

import numpy as np

from voxgan.errors import VoxganError

MESH_EXTENSIONS: frozenset[str] = frozenset({".obj", ".off", ".stl", ".ply", ".glb", ".gltf"})
VOXEL_EXTENSIONS: frozenset[str] = frozenset({".binvox"})

MAX_BINVOX_DIM = 1024
PLANE_TOLERANCE = 1e-6
PLANE_SHIFT = 1.0 / 64.0


class MeshError(VoxganError):
    """A mesh file that cannot become a shape; str(error) is the one-line reason for the manifest."""


# --- reading --------------------------------------------------------------------------------------


def load_mesh(path: Path, root: Path, *, max_faces: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a mesh file of any supported format into one cleaned triangle mesh.

    Parameters
    ----------
    path : the mesh file; it must lie inside ``root`` (after resolving symlinks).
    root : the input folder; nothing outside it is ever read.
    max_faces : refuse meshes with more triangles than this (checked from headers first where the
        format has counts, and again after triangulation).

    Returns
    -------
    vertices : (V, 3) float64, every vertex finite and used by a face
    faces : (F, 3) int64 indices into ``vertices``, F >= 1, no face repeating an index

    Raises
    ------
    MeshError
        with a one-line reason, for anything wrong with the file.
    """
    path, root = Path(path), Path(root)
    real = _inside_root(path, root)
    extension = path.suffix.lower()
    if extension not in MESH_EXTENSIONS:
        raise MeshError(f"not a mesh file extension: {extension or '(none)'}")
    data = _read_bytes(real)
    if not data or data.isspace():
        raise MeshError("empty file")
    if extension == ".obj":
        vertices, faces = parse_obj(data, max_faces=max_faces)
    elif extension == ".off":
        vertices, faces = parse_off(data, max_faces=max_faces)
    elif extension == ".stl":
        vertices, faces = parse_stl(data, max_faces=max_faces)
    elif extension == ".ply":
        vertices, faces = parse_ply(data, max_faces=max_faces)
    else:
        vertices, faces = parse_gltf(data, real.parent, root, binary=extension == ".glb", max_faces=max_faces)
    vertices, faces = clean_mesh(vertices, faces)
    _check_face_limit(len(faces), max_faces)
    return vertices, faces


def clean_mesh(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop what a voxelizer cannot use, and keep only the vertices the faces use.

    Faces are dropped when an index is out of range, when they use a non-finite vertex, or when they
    repeat an index. Duplicate faces stay.

    Parameters
    ----------
    vertices : (V, 3) float
    faces : (F, 3) int

    Returns
    -------
    vertices : (V', 3) float64
    faces : (F', 3) int64, F' >= 1
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    assert vertices.ndim == 2 and vertices.shape[1] == 3, vertices.shape
    assert faces.ndim == 2 and faces.shape[1] == 3, faces.shape
    if len(vertices) == 0:
        raise MeshError("no vertices")
    if len(faces) == 0:
        raise MeshError("no faces")
    finite = np.isfinite(vertices).all(axis=1)
    if not finite.any():
        raise MeshError("no finite vertices")
    keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    if faces.min() < 0 or faces.max() >= len(vertices):
        keep &= ((faces >= 0) & (faces < len(vertices))).all(axis=1)
    if not finite.all():
        keep &= finite[np.where(keep[:, None], faces, 0)].all(axis=1)
    if not keep.all():
        faces = faces[keep]
    if len(faces) == 0:
        raise MeshError(
            "empty after cleaning (every face degenerate, out of range or on a non-finite vertex)"
        )
    used = np.zeros(len(vertices), dtype=bool)
    used[faces] = True
    if not used.all():
        new_index = np.cumsum(used) - 1
        vertices = vertices[used]
        faces = new_index[faces]
    return vertices, faces


def _inside_root(path: Path, root: Path) -> Path:
    """The real path of ``path``, or MeshError when it resolves outside ``root``."""
    real = Path(os.path.realpath(path))
    real_root = Path(os.path.realpath(root))
    if not real.is_relative_to(real_root):
        raise MeshError(f"path resolves outside the input folder: {path}")
    return real


def _read_bytes(path: Path) -> bytes:
    """The whole file; MeshError for a missing file or anything but a regular file (a FIFO would block)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise MeshError("not a regular file")
        with open(path, "rb") as f:
            return f.read()
    except OSError as error:
        raise MeshError(f"cannot read file: {error.strerror or error}") from None


def _check_face_limit(count: int, max_faces: int | None) -> None:
    if max_faces is not None and count > max_faces:
        raise MeshError(f"too many faces ({count:,} > --max-faces {max_faces:,})")


# --- text helpers ---------------------------------------------------------------------------------


def _numbers(text: bytes, dtype=np.float64) -> np.ndarray | None:
    """All whitespace-separated numbers in ``text`` (1-D), or None when one is not a number."""
    if not text.strip():
        return np.zeros(0, dtype=dtype)
    try:
        return np.fromstring(text, dtype=dtype, sep=" ")
    except ValueError:
        return None


def _tokens_per_line(text: bytes, line_count: int) -> np.ndarray:
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


def _rows(text: bytes, line_count: int, columns: int, what: str, fmt: str, first_line: int):
    """The first ``columns`` numbers of each line of ``text``.

    Returns
    -------
    rows : (line_count, columns) float64
    """
    values = _numbers(text)
    if values is not None and len(values) == columns * line_count:
        counts = None
    else:
        counts = _tokens_per_line(text, line_count)
        short = np.flatnonzero(counts < columns)
        if len(short):
            raise MeshError(
                f"cannot parse {fmt}: line {first_line + short[0]}: expected {columns} {what}, "
                f"found {counts[short[0]]}"
            )
        if values is None or len(values) != counts.sum():
            bad = _first_non_numeric_line(text)
            raise MeshError(f"cannot parse {fmt}: line {first_line + bad}: not a number")
    if counts is None or (counts == columns).all():
        return values.reshape(line_count, columns)
    starts = np.cumsum(counts) - counts
    return values[starts[:, None] + np.arange(columns)]


def _first_non_numeric_line(text: bytes) -> int:
    for number, line in enumerate(text.split(b"\n")):
        try:
            [float(token) for token in line.split()]
        except ValueError:
            return number
    return 0


def _fan_triangulate(indices: np.ndarray, counts: np.ndarray) -> np.ndarray:
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


# --- OBJ ------------------------------------------------------------------------------------------

_SPACE, _TAB, _NEWLINE, _SLASH = 32, 9, 10, 47


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
    ends = np.flatnonzero(buffer == _NEWLINE)
    starts = np.empty_like(ends)
    starts[0], starts[1:] = 0, ends[:-1] + 1
    first = buffer[starts]
    second = buffer[np.minimum(starts + 1, len(buffer) - 1)]
    keyword_alone = (second == _SPACE) | (second == _TAB)
    is_vertex = (first == ord("v")) & keyword_alone
    is_face = (first == ord("f")) & keyword_alone
    vertex_count, face_count = int(is_vertex.sum()), int(is_face.sum())
    if vertex_count == 0:
        raise MeshError("no vertices")
    if face_count == 0:
        raise MeshError("no faces")
    _check_face_limit(face_count, max_faces)
    vertex_text = _without_comments(_gather_lines(buffer, starts[is_vertex] + 2, ends[is_vertex] + 1))
    vertices = _obj_rows(vertex_text, vertex_count)
    face_text = _without_comments(_gather_lines(buffer, starts[is_face] + 2, ends[is_face] + 1))
    face_bytes = np.frombuffer(face_text, dtype=np.uint8)
    face_bytes, counts = _drop_corner_tails(face_bytes, face_count)
    text = face_bytes.tobytes()
    corners = _numbers(text, np.int64)
    if corners is None or len(corners) != counts.sum():
        raise MeshError(
            f"cannot parse OBJ: face {_first_non_numeric_line(text) + 1}: index is not an integer"
        )
    if (corners < 0).any():  # relative to the vertices defined before the face's line
        defined_before = np.cumsum(is_vertex)[is_face]
        corners = np.where(corners < 0, np.repeat(defined_before, counts) + corners + 1, corners)
    corners = np.where(corners > 0, corners - 1, -1)  # 0 is no valid OBJ index: dropped when cleaning
    faces = _fan_triangulate(corners, counts)
    _check_face_limit(len(faces), max_faces)
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
    return _COMMENT.sub(b"", text) if b"#" in text else text


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
    space = text <= _SPACE
    token_start = ~space
    token_start[1:] &= space[:-1]
    tokens_so_far = np.cumsum(token_start, dtype=np.int32)
    line_ends = np.flatnonzero(text == _NEWLINE)
    assert len(line_ends) == line_count, (len(line_ends), line_count)
    corners = np.diff(tokens_so_far[line_ends], prepend=0).astype(np.int64)
    slash = text == _SLASH
    if slash.any():
        slashes_so_far = np.cumsum(slash, dtype=np.int32)
        slashes_at_token_start = slashes_so_far[token_start]
        token = np.maximum(tokens_so_far - 1, 0)
        tail = (slashes_so_far > slashes_at_token_start[token]) & ~space
        text = np.where(tail, np.uint8(_SPACE), text)
    return text, corners


def _obj_rows(text: bytes, line_count: int) -> np.ndarray:
    try:
        return _rows(text, line_count, 3, "coordinates", "OBJ", 1)
    except MeshError as error:  # line numbers count vertices here, not file lines
        raise MeshError(str(error).replace(": line ", ": vertex ")) from None


# --- OFF ------------------------------------------------------------------------------------------

_OFF_HEADER = re.compile(rb"\s*(ST)?(C)?(N)?(4)?(n)?OFF")
_OFF_COUNTS = re.compile(rb"\s*(\d+)\s+(\d+)(?:[ \t]+(\d+))?")
_COMMENT = re.compile(rb"#[^\n]*")


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
        data = _COMMENT.sub(b"", data)
    header = _OFF_HEADER.match(data)
    if header is None:
        raise MeshError("cannot parse OFF: line 1: no OFF keyword")
    if header.group(4) or header.group(5):
        raise MeshError("cannot parse OFF: 4D and nD OFF files are not supported")
    counts_match = _OFF_COUNTS.match(data, header.end())
    if counts_match is None:
        raise MeshError("cannot parse OFF: no vertex and face counts after the OFF keyword")
    vertex_count, face_count = int(counts_match.group(1)), int(counts_match.group(2))
    _check_face_limit(face_count, max_faces)
    body = data[counts_match.end() :]
    if 6 * vertex_count + 8 * face_count - 1 > len(body):
        raise MeshError(
            f"cannot parse OFF: header claims {vertex_count:,} vertices and {face_count:,} faces "
            f"but only {len(body):,} bytes follow (truncated?)"
        )
    if vertex_count == 0:
        raise MeshError("no vertices")
    if face_count == 0:
        raise MeshError("no faces")
    plain = not (header.group(1) or header.group(2) or header.group(3))
    if plain:
        parsed = _off_tokens(body, vertex_count, face_count)
        if parsed is not None:
            return parsed
    first_line = data[: counts_match.end()].count(b"\n") + 1
    return _off_lines(body, vertex_count, face_count, first_line)


def _off_tokens(body: bytes, vertex_count: int, face_count: int):
    """Fast path: a plain all-triangle OFF read as one stream of numbers; None if it is not that."""
    values = _numbers(body)
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


def _ragged_positions(starts: np.ndarray, counts: np.ndarray, step: int = 1) -> np.ndarray:
    """Positions ``starts[p] + step * (0 .. counts[p]-1)`` for every p, concatenated."""
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(starts, counts) + step * offsets


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
        vertices = _rows(vertex_text, vertex_count, 3, "coordinates", "OFF", 0)
    except MeshError as error:
        raise MeshError(_off_line_number(str(error), numbered, first_line)) from None
    face_text = b"\n".join(face_lines)
    try:
        indices, counts = _counted_polygons(face_text, face_count, "OFF")
    except MeshError as error:
        raise MeshError(_off_line_number(str(error), numbered[vertex_count:], first_line)) from None
    return vertices, _fan_triangulate(indices, counts)


def _counted_polygons(text: bytes, face_count: int, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """Polygons written one a line as ``k i1 .. ik [anything]`` (OFF, ASCII PLY).

    Returns
    -------
    indices : (sum(counts),) int64
    counts : (face_count,) int64
    """
    values = _numbers(text)
    tokens = _tokens_per_line(text, face_count)
    if values is None or len(values) != tokens.sum():
        raise MeshError(f"cannot parse {fmt}: line {_first_non_numeric_line(text)}: not a number")
    starts = np.cumsum(tokens) - tokens
    if (tokens == 0).any():
        raise MeshError(f"cannot parse {fmt}: line {np.flatnonzero(tokens == 0)[0]}: empty face")
    counts = values[starts].astype(np.int64)
    short = np.flatnonzero((counts < 1) | (counts + 1 > tokens))
    if len(short):
        raise MeshError(f"cannot parse {fmt}: line {short[0]}: face lists fewer indices than its count")
    corners = values[_ragged_positions(starts + 1, counts)]
    indices = corners.astype(np.int64)
    if not (indices == corners).all():
        raise MeshError(f"cannot parse {fmt}: a face index is not an integer")
    return indices, counts


def _off_line_number(message: str, numbered: list, first_line: int) -> str:
    match = re.search(r": line (\d+):", message)
    if match is None:
        return message
    line = first_line + numbered[int(match.group(1))][0]
    return message[: match.start()] + f": line {line}:" + message[match.end() :]


# --- STL ------------------------------------------------------------------------------------------

_STL_TRIANGLE = np.dtype([("normal", "<f4", (3,)), ("corners", "<f4", (3, 3)), ("attribute", "<u2")])
_STL_VERTEX = re.compile(rb"vertex([^\n]*)")


def parse_stl(data: bytes, *, max_faces: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Parse binary or ASCII STL (a binary file may start with ``solid``: the size decides).

    Corners are not merged: V = 3F, which every consumer of (vertices, faces) handles.

    Returns
    -------
    vertices : (3F, 3) float64
    faces : (F, 3) int64, ``[[0, 1, 2], [3, 4, 5], ...]``
    """
    claimed = int.from_bytes(data[80:84], "little") if len(data) >= 84 else -1
    binary_size = len(data) >= 84 and len(data) == 84 + 50 * claimed
    if not binary_size and data.lstrip()[:5].lower() == b"solid":
        return _stl_ascii(data, max_faces)
    if len(data) < 84:
        raise MeshError(f"cannot parse STL: {len(data)} bytes is shorter than a binary STL header")
    _check_face_limit(claimed, max_faces)
    if len(data) < 84 + 50 * claimed:
        raise MeshError(
            f"cannot parse STL: header claims {claimed:,} triangles but the file holds "
            f"{(len(data) - 84) // 50:,} (truncated?)"
        )
    if claimed == 0:
        raise MeshError("no faces")
    triangles = np.frombuffer(data, dtype=_STL_TRIANGLE, count=claimed, offset=84)
    vertices = triangles["corners"].reshape(-1, 3).astype(np.float64)
    return vertices, np.arange(3 * claimed, dtype=np.int64).reshape(claimed, 3)


def _stl_ascii(data: bytes, max_faces: int | None):
    if b"VERTEX" in data or b"Vertex" in data:
        data = data.lower()
    rows = _STL_VERTEX.findall(data)
    if not rows:
        raise MeshError("no faces")
    if len(rows) % 3:
        raise MeshError(f"cannot parse STL: {len(rows):,} vertex lines is not a multiple of 3")
    _check_face_limit(len(rows) // 3, max_faces)
    try:
        vertices = _rows(b"\n".join(rows), len(rows), 3, "coordinates", "STL", 1)
    except MeshError as error:
        raise MeshError(str(error).replace(": line ", ": vertex ")) from None
    return vertices, np.arange(len(rows), dtype=np.int64).reshape(-1, 3)


# --- PLY ------------------------------------------------------------------------------------------

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
    _check_face_limit(face_count, max_faces)
    body_size = len(data) - body_start
    least = sum(element.count * _ply_least_size(element, fmt == "ascii") for element in elements)
    if least > body_size:
        raise MeshError(
            f"cannot parse PLY: header claims {vertex_count:,} vertices and {face_count:,} faces "
            f"but only {body_size:,} bytes follow (truncated?)"
        )
    if vertex_count == 0:
        raise MeshError("no vertices")
    if face_count == 0:
        raise MeshError("no faces")
    if _ply_usual_layout(elements):
        if fmt == "ascii":
            return _ply_ascii(data[body_start:], elements, data[:body_start].count(b"\n") + 1)
        return _ply_binary(data, body_start, elements, _PLY_ENDIAN[fmt])
    from trimesh.exchange.ply import load_ply

    try:
        loaded = load_ply(io.BytesIO(data), resolver=None, fix_texture=False, skip_materials=True)
    except Exception as error:
        raise MeshError(f"cannot parse PLY: {_one_line(error)}") from None
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
            if len(words) != 3 or not words[2].isdigit():
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
                return vertices, _fan_triangulate(faces["i"].reshape(-1).astype(np.int64), counts)
    counts, index_starts = _ply_walk_faces(data, start, face_count, count_type, index_type.itemsize, tail)
    offsets = _ragged_positions(index_starts, counts, step=index_type.itemsize)
    raw = np.frombuffer(data, dtype=np.uint8)
    items = raw[offsets[:, None] + np.arange(index_type.itemsize)].copy().view(index_type).reshape(-1)
    return vertices, _fan_triangulate(items.astype(np.int64), counts)


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
    ends = np.flatnonzero(buffer == _NEWLINE)
    if len(ends) < vertex_count + face_count - 1:
        raise MeshError(
            f"cannot parse PLY: header claims {vertex_count:,} vertices and {face_count:,} faces "
            f"but {len(ends) + 1:,} lines follow (truncated?)"
        )
    ends = np.append(ends, len(buffer))
    vertex_end = ends[vertex_count - 1] + 1
    rows = _rows(body[:vertex_end], vertex_count, len(vertex_props), "properties", "PLY", first_line)
    columns = [prop.name for prop in vertex_props]
    vertices = rows[:, [columns.index(axis) for axis in "xyz"]]
    face_text = body[vertex_end : ends[vertex_count + face_count - 1]]
    try:
        indices, counts = _counted_polygons(face_text, face_count, "PLY")
    except MeshError as error:
        message = re.sub(
            r": line (\d+):", lambda m: f": line {first_line + vertex_count + int(m[1])}:", str(error)
        )
        raise MeshError(message) from None
    return vertices, _fan_triangulate(indices, counts)


def _polygons_to_triangles(faces) -> np.ndarray:
    """(F, k) array or ragged list of polygons -> (T, 3) int64 triangles, fan-triangulated."""
    if isinstance(faces, np.ndarray) and faces.dtype != object and faces.ndim == 2:
        if faces.shape[1] == 3:
            return faces.astype(np.int64)
        counts = np.full(len(faces), faces.shape[1], dtype=np.int64)
        return _fan_triangulate(faces.reshape(-1).astype(np.int64), counts)
    polygons = [np.asarray(polygon, dtype=np.int64).reshape(-1) for polygon in faces]
    counts = np.array([len(polygon) for polygon in polygons], dtype=np.int64)
    return _fan_triangulate(np.concatenate(polygons), counts)


# --- glTF / GLB -----------------------------------------------------------------------------------

_GLB_MAGIC = 0x46546C67
_GLB_JSON = 0x4E4F534A
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def parse_gltf(
    data: bytes, folder: Path, root: Path, *, binary: bool, max_faces: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Parse a GLB or glTF file and flatten its scene, node transforms applied.

    Buffers may be embedded (GLB chunk, ``data:`` URI) or a file inside ``root``; anything else
    (a URL, an absolute path, a path leaving ``root``) raises MeshError before any buffer is read.
    Images and materials are never read. Points and lines in the scene are ignored.

    Parameters
    ----------
    folder : the folder holding the glTF file (relative buffer URIs start here).
    root : the input folder; nothing outside it is read.

    Returns
    -------
    vertices : (V, 3) float64
    faces : (F, 3) int64, not yet cleaned
    """
    fmt = "GLB" if binary else "glTF"
    tree = _glb_json(data) if binary else _gltf_json(data)
    try:
        available = len(data) + _check_gltf_buffers(tree, folder, root)
        _check_gltf_counts(tree, available, max_faces)
    except (AttributeError, TypeError, ValueError, KeyError, IndexError) as error:
        raise MeshError(f"cannot parse {fmt}: malformed document: {_one_line(error)}") from None
    import trimesh

    resolver = _RootResolver(folder, root)
    try:
        scene = trimesh.load_scene(
            io.BytesIO(data), file_type=fmt.lower(), resolver=resolver, skip_materials=True, process=False
        )
    except MeshError:
        raise
    except Exception as error:
        raise MeshError(f"cannot parse {fmt}: {_one_line(error)}") from None
    return _flatten_scene(scene)


def _glb_json(data: bytes) -> dict:
    if len(data) < 20:
        raise MeshError(f"cannot parse GLB: {len(data)} bytes is shorter than a GLB header")
    magic, version, _, chunk_length, chunk_type = struct.unpack_from("<5I", data)
    if magic != _GLB_MAGIC or chunk_type != _GLB_JSON:
        raise MeshError("cannot parse GLB: no glTF magic or JSON chunk at the start")
    if version != 2:
        raise MeshError(f"cannot parse GLB: glTF version {version} is not supported (only 2)")
    if 20 + chunk_length > len(data):
        raise MeshError("cannot parse GLB: JSON chunk runs past the end of the file (truncated?)")
    return _gltf_json(data[20 : 20 + chunk_length], "GLB")


def _gltf_json(text: bytes, fmt: str = "glTF") -> dict:
    try:
        tree = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise MeshError(f"cannot parse {fmt}: invalid JSON: {_one_line(error)}") from None
    if not isinstance(tree, dict):
        raise MeshError(f"cannot parse {fmt}: the JSON is not an object")
    return tree


def _check_gltf_buffers(tree: dict, folder: Path, root: Path) -> int:
    """Check every buffer URI is embedded or inside ``root``; return the bytes of the external ones."""
    external = 0
    for buffer in tree.get("buffers", []) or []:
        uri = buffer.get("uri") if isinstance(buffer, dict) else None
        if not isinstance(uri, str) or uri.startswith("data:"):
            external += len(uri) if isinstance(uri, str) else 0
            continue
        path = safe_reference(uri, folder, root)
        try:
            external += path.stat().st_size
        except OSError:
            raise MeshError(f"glTF buffer not found: {uri}") from None
    return external


def safe_reference(uri: str, folder: Path, root: Path) -> Path:
    """The file a relative reference inside a mesh file names, or MeshError if it is not inside ``root``.

    URLs (any ``scheme:``), absolute paths and paths that resolve (symlinks included) outside ``root``
    are refused; percent-escapes are decoded as URIs require.
    """
    if _URI_SCHEME.match(uri):
        raise MeshError(f"refusing to fetch a URL referenced by the file: {uri[:80]}")
    name = urllib.parse.unquote(uri).strip()
    if not name or os.path.isabs(name) or name.startswith(("/", "\\")):
        raise MeshError(f"refusing an absolute path referenced by the file: {uri[:80]}")
    path = Path(os.path.realpath(Path(folder) / name))
    if not path.is_relative_to(Path(os.path.realpath(root))):
        raise MeshError(f"refusing a path outside the input folder referenced by the file: {uri[:80]}")
    return path


def _check_gltf_counts(tree: dict, available: int, max_faces: int | None) -> None:
    """Refuse accessor counts larger than the bytes that exist, and scenes over ``max_faces``."""
    accessors = tree.get("accessors", []) or []
    for accessor in accessors:
        count = accessor.get("count", 0) if isinstance(accessor, dict) else 0
        if not isinstance(count, int) or count < 0:
            raise MeshError(f"cannot parse glTF: an accessor count is not a count: {str(count)[:40]}")
        if count > available:
            raise MeshError(
                f"cannot parse glTF: an accessor claims {count:,} items, more than the file holds"
            )
    faces = 0
    referenced = {node.get("mesh") for node in tree.get("nodes", []) or [] if isinstance(node, dict)}
    for index, mesh in enumerate(tree.get("meshes", []) or []):
        if index not in referenced or not isinstance(mesh, dict):
            continue
        for primitive in mesh.get("primitives", []) or []:
            faces += _primitive_faces(primitive, accessors)
    _check_face_limit(faces, max_faces)


def _primitive_faces(primitive: dict, accessors: list) -> int:
    def count(index) -> int:
        if isinstance(index, int) and 0 <= index < len(accessors) and isinstance(accessors[index], dict):
            return int(accessors[index].get("count", 0))
        return 0

    mode = primitive.get("mode", 4)
    corners = (
        count(primitive["indices"])
        if "indices" in primitive
        else count((primitive.get("attributes") or {}).get("POSITION"))
    )
    if mode == 4:
        return corners // 3
    if mode in (5, 6):
        return max(corners - 2, 0)
    return 0


class _RootResolver:
    """Hands trimesh the files a glTF names, only from inside the input folder (see safe_reference)."""

    def __init__(self, folder: Path, root: Path):
        self.folder, self.root = Path(folder), Path(root)

    def get(self, name: str) -> bytes:
        return _read_bytes(safe_reference(name, self.folder, self.root))

    __getitem__ = get

    def keys(self):
        return []

    def __contains__(self, name: str) -> bool:
        return False

    def write(self, name: str, data) -> None:
        raise MeshError("mesh loading never writes files")

    def namespaced(self, namespace: str) -> _RootResolver:
        return _RootResolver(self.folder / namespace, self.root)


def _flatten_scene(scene) -> tuple[np.ndarray, np.ndarray]:
    """Every triangle mesh instance of a trimesh Scene, in world coordinates, as one mesh."""
    import trimesh

    all_vertices, all_faces, offset = [], [], 0
    for node in scene.graph.nodes_geometry:
        matrix, name = scene.graph[node]
        geometry = scene.geometry.get(name)
        if not isinstance(geometry, trimesh.Trimesh) or len(geometry.faces) == 0:
            continue
        all_vertices.append(apply_transform(np.asarray(geometry.vertices, dtype=np.float64), matrix))
        all_faces.append(np.asarray(geometry.faces, dtype=np.int64) + offset)
        offset += len(geometry.vertices)
    if not all_faces:
        raise MeshError("no faces (the scene holds no triangle mesh)")
    return np.concatenate(all_vertices), np.concatenate(all_faces)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:160]


# --- binvox ---------------------------------------------------------------------------------------


def load_binvox(path: Path, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a binvox file (run-length encoded voxels, stored with y fastest, then z, then x).

    Returns
    -------
    occupancy : (D, D, D) bool indexed ``[x, y, z]``
    voxel_to_mesh : (4, 4) float64 affine from voxel index coordinates (voxel (i, j, k) spans
        [i, i+1) × [j, j+1) × [k, k+1)) to the model's coordinates: ``translate + scale * ijk / D``.
    """
    real = _inside_root(Path(path), Path(root))
    data = _read_bytes(real)
    if not data or data.isspace():
        raise MeshError("empty file")
    return parse_binvox(data)


def parse_binvox(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Parse the bytes of a binvox file; see :func:`load_binvox`."""
    if not data.startswith(b"#binvox"):
        raise MeshError("cannot parse binvox: no '#binvox' header")
    end = data.find(b"\ndata\n")
    if end < 0:
        raise MeshError("cannot parse binvox: no 'data' line")
    fields = {}
    for line in data[:end].split(b"\n")[1:]:
        words = line.split()
        if words:
            fields[words[0].decode("latin-1")] = words[1:]
    try:
        dims = [int(word) for word in fields["dim"]]
        translate = [float(word) for word in fields.get("translate", [b"0", b"0", b"0"])]
        scale = float(fields.get("scale", [b"1"])[0])
    except (KeyError, ValueError, IndexError):
        raise MeshError("cannot parse binvox: bad or missing dim/translate/scale line") from None
    if len(dims) != 3 or len(translate) != 3:
        raise MeshError("cannot parse binvox: dim and translate need 3 values")
    if len(set(dims)) != 1 or not 1 <= dims[0] <= MAX_BINVOX_DIM:
        raise MeshError(f"cannot parse binvox: grid {dims} is not cubic with a side of 1 to {MAX_BINVOX_DIM}")
    if not (np.isfinite(translate).all() and np.isfinite(scale) and scale > 0):
        raise MeshError("cannot parse binvox: translate and scale must be finite, scale positive")
    side = dims[0]
    runs = np.frombuffer(data, dtype=np.uint8, offset=end + 6)
    if len(runs) % 2:
        runs = runs[:-1]
    values, lengths = runs[0::2], runs[1::2]
    total = int(lengths.sum(dtype=np.int64))
    if total != side**3:
        raise MeshError(f"cannot parse binvox: runs cover {total:,} voxels, the grid has {side**3:,}")
    occupancy_xzy = np.repeat(values > 0, lengths).reshape(side, side, side)
    occupancy = np.ascontiguousarray(occupancy_xzy.transpose(0, 2, 1))
    voxel_to_mesh = np.eye(4)
    voxel_to_mesh[:3, :3] *= scale / side
    voxel_to_mesh[:3, 3] = translate
    return occupancy, voxel_to_mesh


# --- normalisation --------------------------------------------------------------------------------

_AXES = {"x": 0, "y": 1, "z": 2}


def up_to_z(up_axis: str) -> np.ndarray:
    """The proper rotation taking a dataset's up axis to +z.

    ``"z"`` is the identity; ``"y"`` (ShapeNet) maps y → z, z → -y, x → x; ``"x"`` maps x → z, z → -x,
    y → y; ``"-y"``, ``"-x"``, ``"-z"`` turn the negative axis up.

    Returns
    -------
    rotation : (4, 4) float64 with det +1
    """
    name = up_axis.strip().lower()
    sign = -1.0 if name.startswith("-") else 1.0
    name = name.lstrip("+-")
    if name not in _AXES:
        raise MeshError(f"unknown up axis {up_axis!r}: use x, y, z, -x, -y or -z")
    axis = _AXES[name]
    rotation = np.eye(4)
    if axis == 2:
        if sign < 0:  # half turn about x
            rotation[:3, :3] = np.diag([1.0, -1.0, -1.0])
        return rotation
    # a quarter turn about the third axis ``other`` that takes ``up`` to +z and +z to -up
    up = np.zeros(3)
    up[axis] = sign
    z = np.array([0.0, 0.0, 1.0])
    other = np.cross(up, z)  # stays fixed
    columns = np.zeros((3, 3))
    for source in range(3):
        unit = np.eye(3)[source]
        columns[:, source] = (unit @ up) * z - (unit @ z) * up + (unit @ other) * other / (other @ other)
    rotation[:3, :3] = columns
    assert np.isclose(np.linalg.det(columns), 1.0)
    return rotation


def apply_transform(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 4×4 affine to points.

    Parameters
    ----------
    points : (N, 3) float
    matrix : (4, 4) float

    Returns
    -------
    transformed : (N, 3) float64
    """
    points = np.asarray(points, dtype=np.float64)
    matrix = np.asarray(matrix, dtype=np.float64)
    assert points.ndim == 2 and points.shape[1] == 3, points.shape
    assert matrix.shape == (4, 4), matrix.shape
    if (matrix == np.eye(4)).all():
        return points.copy()
    # broadcast products, not matmul: no BLAS threads fighting the worker processes
    linear, shift = matrix[:3, :3], matrix[:3, 3]
    return (
        points[:, 0:1] * linear[:, 0] + points[:, 1:2] * linear[:, 1] + points[:, 2:3] * linear[:, 2] + shift
    )


def grid_transform(
    vertices: np.ndarray, resolution: int, *, padding: float = 0.5, up_axis: str = "z"
) -> np.ndarray:
    """The affine from mesh coordinates to grid coordinates for a ``resolution``³ grid.

    The up axis is turned to +z, then the bounding box is scaled uniformly so its largest extent is
    ``resolution - 2 * padding`` and centred in ``[0, R]³``. An axis whose minimum or maximum would
    land within 1e-6 of an integer grid plane is shifted by 1/64 voxel (a face lying on a grid plane
    overlaps neither voxel beside it, which would open the surface shell). A padding below 1/64 is
    raised to 1/64 so that the extremes of the largest axis can stay inside the grid and off its planes.

    Parameters
    ----------
    vertices : (V, 3) float, finite
    resolution : R >= 1
    padding : voxels left free on each side of the largest extent, 0 <= padding < R / 2

    Returns
    -------
    mesh_to_grid : (4, 4) float64; voxel (i, j, k) spans [i, i+1) × [j, j+1) × [k, k+1) in grid coordinates.
    """
    if resolution < 1:
        raise MeshError(f"resolution must be at least 1, got {resolution}")
    if not 0 <= padding < resolution / 2:
        raise MeshError(f"padding must be in [0, {resolution / 2}), got {padding}")
    rotation = up_to_z(up_axis)
    rotated = apply_transform(vertices, rotation)
    low, high = rotated.min(axis=0), rotated.max(axis=0)
    extent = high - low
    if not np.isfinite(extent).all():
        raise MeshError("non-finite vertex coordinates")
    largest = extent.max()
    if largest <= 0 or largest * 1e12 < np.abs(rotated).max():
        raise MeshError("zero extent (every vertex at one point)")
    padding = max(padding, PLANE_SHIFT)
    scale = (resolution - 2 * padding) / largest
    offset = resolution / 2 - scale * (low + high) / 2
    offset += _plane_shifts(scale * low + offset, scale * high + offset, resolution)
    scaling = np.diag([scale, scale, scale, 1.0])
    scaling[:3, 3] = offset
    return scaling @ rotation


def _plane_shifts(low: np.ndarray, high: np.ndarray, resolution: int) -> np.ndarray:
    """Per-axis shift (3,) that moves both extremes of every axis off the integer planes, inside [0, R]."""
    shifts = np.zeros(3)
    for axis in range(3):
        for shift in (0.0, PLANE_SHIFT, -PLANE_SHIFT, 2 * PLANE_SHIFT, -2 * PLANE_SHIFT):
            ends = np.array([low[axis], high[axis]]) + shift
            off_planes = (np.abs(ends - np.round(ends)) > PLANE_TOLERANCE).all()
            if off_planes and ends[0] > 0 and ends[1] < resolution:
                shifts[axis] = shift
                break
    return shifts
