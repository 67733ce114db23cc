"""A mesh as the ingest stage holds it, and the error raised for a file that cannot become one.

A mesh is ``vertices (V, 3) float64`` and ``faces (F, 3) int64`` indices into them (:class:`Mesh`).
:func:`clean_mesh` drops what a voxelizer cannot use.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from voxgan.errors import VoxganError


class MeshError(VoxganError):
    """A mesh file that cannot become a shape; str(error) is the one-line reason for the manifest (white
    space in it, a newline in a name the file holds included, is folded to single spaces)."""

    def __init__(self, reason: str):
        super().__init__(" ".join(str(reason).split()))


class Mesh(NamedTuple):
    """vertices : (V, 3) float64; faces : (F, 3) int64 indices into ``vertices``."""

    vertices: np.ndarray
    faces: np.ndarray


def clean_mesh(vertices: np.ndarray, faces: np.ndarray) -> Mesh:
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
    return Mesh(vertices, faces)


def error_line(error: BaseException) -> str:
    """An error from a parser as a reason for the manifest: one line, at most 160 characters."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:160]
