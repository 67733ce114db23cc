"""STL, binary and ASCII (a binary file may start with ``solid``: its size decides)."""

from __future__ import annotations

import re

import numpy as np

from voxgan.ingest.formats.safety import Origin, check_face_limit
from voxgan.ingest.formats.text import parse_rows
from voxgan.ingest.mesh import Mesh, MeshError

_STL_TRIANGLE = np.dtype([("normal", "<f4", (3,)), ("corners", "<f4", (3, 3)), ("attribute", "<u2")])
_STL_VERTEX = re.compile(rb"vertex([^\n]*)")


def read(data: bytes, origin: Origin) -> Mesh:
    """The registry's reader: the file's mesh, not yet cleaned."""
    return Mesh(*parse_stl(data, max_faces=origin.max_faces))


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
    check_face_limit(claimed, max_faces)
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
    check_face_limit(len(rows) // 3, max_faces)
    try:
        vertices = parse_rows(b"\n".join(rows), len(rows), 3, "coordinates", "STL", 1)
    except MeshError as error:
        raise MeshError(str(error).replace(": line ", ": vertex ")) from None
    return vertices, np.arange(len(rows), dtype=np.int64).reshape(-1, 3)
