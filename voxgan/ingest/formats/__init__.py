"""Mesh and voxel files -> one cleaned triangle mesh or one voxel grid: one module per format, one registry.

:data:`READERS` maps a file suffix to its format's reader. :func:`read` takes any of them;
:func:`load_mesh` reads OBJ, OFF, STL (ASCII and binary), PLY and GLB/glTF into a :class:`Mesh`,
``vertices (V, 3) float64`` and ``faces (F, 3) int64``: polygons fan-triangulated, every part of a
multi-object file kept, a glTF scene flattened with its node transforms applied, then cleaned
(:func:`voxgan.ingest.mesh.clean_mesh`); :func:`load_binvox` reads a binvox file into a :class:`Volume`.
Voxel arrays (:data:`ARRAY_FORMATS`: ``.npy``, ``.npz``, ``.mat``) hold one volume or a stack of them:
:func:`volume_sources` names one source per volume (``file.npy#7``) and :func:`read_source` reads any
source, a mesh file or one volume (:mod:`voxgan.ingest.formats.volumes` has the rules they share).
OBJ, OFF, STL and PLY are parsed with vectorised numpy (trimesh's parsers are slower for these);
glTF/GLB and unusual PLY layouts go through trimesh.

Never trust a file (:mod:`voxgan.ingest.formats.safety`): a path outside ``root`` is never read; OBJ
materials are not read at all (voxgan needs geometry only); a glTF buffer may only point at a file inside
``root`` (never at an absolute path or a URL: nothing is fetched); glTF images are never read. Counts
claimed by a header are checked against ``max_faces`` and against the file's size before anything is
allocated, so a header that claims 10⁹ faces fails at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np

from voxgan.ingest.formats import binvox, gltf, mat, npy, obj, off, ply, stl, volumes
from voxgan.ingest.formats.binvox import Volume
from voxgan.ingest.formats.safety import Origin, check_face_limit, check_regular, inside_root, read_bytes
from voxgan.ingest.mesh import Mesh, MeshError, clean_mesh

Reader = Callable[[bytes, Origin], "Mesh | Volume"]
MESH_READERS: dict[str, Reader] = {
    ".obj": obj.read,
    ".off": off.read,
    ".stl": stl.read,
    ".ply": ply.read,
    ".glb": gltf.read_glb,
    ".gltf": gltf.read_gltf,
}
VOXEL_READERS: dict[str, Reader] = {".binvox": binvox.read}
READERS: dict[str, Reader] = {**MESH_READERS, **VOXEL_READERS}


class ArrayFormat(NamedTuple):
    """A voxel-array format: ``shape(path, key)`` of the chosen array, and ``volume(path, key, index)``,
    one volume of it (index None: the only one) as an (R, R, R) array of numbers."""

    shape: Callable[[Path, str | None], tuple[int, ...]]
    volume: Callable[[Path, str | None, int | None], np.ndarray]


ARRAY_FORMATS: dict[str, ArrayFormat] = {
    ".npy": ArrayFormat(npy.npy_shape, npy.npy_volume),
    ".npz": ArrayFormat(npy.npz_shape, npy.npz_volume),
    ".mat": ArrayFormat(mat.mat_shape, mat.mat_volume),
}
MESH_EXTENSIONS: frozenset[str] = frozenset(MESH_READERS)
VOXEL_EXTENSIONS: frozenset[str] = frozenset(VOXEL_READERS) | frozenset(ARRAY_FORMATS)

__all__ = [
    "ARRAY_FORMATS", "MESH_EXTENSIONS", "READERS", "VOXEL_EXTENSIONS", "Mesh", "MeshError", "Volume", "read",
    "read_source", "volume_sources",
]  # fmt: skip


def read(path: Path, root: Path, *, max_faces: int | None = None) -> Mesh | Volume:
    """Read a file of any supported format: a cleaned :class:`Mesh` or a :class:`Volume`.

    Parameters
    ----------
    path : the file; it must lie inside ``root`` (after resolving symlinks).
    root : the input folder; nothing outside it is ever read.
    max_faces : refuse meshes with more triangles than this (checked from headers first where the
        format has counts, and again after triangulation).

    Raises
    ------
    MeshError
        with a one-line reason, for anything wrong with the file.
    """
    return _read(path, root, READERS, "mesh", max_faces)


def load_mesh(path: Path, root: Path, *, max_faces: int | None = None) -> Mesh:
    """Read a mesh file of any supported format into one cleaned triangle mesh.

    Returns
    -------
    vertices : (V, 3) float64, every vertex finite and used by a face
    faces : (F, 3) int64 indices into ``vertices``, F >= 1, no face repeating an index

    Raises MeshError with a one-line reason for anything wrong with the file (see :func:`read`).
    """
    return _read(path, root, MESH_READERS, "mesh", max_faces)


def load_binvox(path: Path, root: Path) -> Volume:
    """Read a binvox file (run-length encoded voxels, stored with y fastest, then z, then x).

    Returns
    -------
    occupancy : (D, D, D) bool indexed ``[x, y, z]``
    voxel_to_mesh : (4, 4) float64 affine from voxel index coordinates (voxel (i, j, k) spans
        [i, i+1) × [j, j+1) × [k, k+1)) to the model's coordinates: ``translate + scale * ijk / D``.
    """
    return _read(path, root, VOXEL_READERS, "voxel", None)


def extension_of(source: str) -> str:
    """The lower-case suffix of a source's file: ``"a/b.NPY#3"`` -> ``".npy"``."""
    return PurePosixPath(volumes.split_source(source)[0]).suffix.lower()


def volume_sources(root: Path, files: list[str], key: str | None = None) -> list[str]:
    """The sources a run makes samples of, in order: each file, except that an array file holding a
    stack of N volumes gives ``file#0`` ... ``file#N-1``.

    files : paths relative to ``root``; key : ``--mat-key``. Only array headers are read. A file whose
    array cannot be read stays one source, so that reading it names the error.
    """
    sources = []
    for file in files:
        count = None
        if extension_of(file) in ARRAY_FORMATS:
            try:
                count = volumes.stack_length(_array_shape(Path(root) / file, Path(root), key))
            except Exception:  # any unreadable file: its read reports the reason
                count = None
        sources += [file] if count is None else [f"{file}#{index}" for index in range(count)]
    return sources


def read_source(root: Path, source: str, *, max_faces: int | None = None, key: str | None = None):
    """Read one source (see :func:`volume_sources`): a mesh file as :func:`read` does, or one volume.

    A volume is a :class:`Volume` whose occupancy is (R, R, R) bool (values above 0.5) and whose
    voxel_to_mesh is the identity: the source's coordinates are its voxel indices. MeshError names what
    is wrong with the file or with that volume (NaN, empty, wrong rank).
    """
    root = Path(root)
    file, index = volumes.split_source(source)
    array_format = ARRAY_FORMATS.get(extension_of(file))
    if array_format is None:
        return read(root / source, root, max_faces=max_faces)
    _array_shape(root / file, root, key)  # refuses a stack the file cannot hold
    real = inside_root(root / file, root)
    return Volume(volumes.occupancy_of(array_format.volume(real, key, index)), np.eye(4))


def _array_shape(path: Path, root: Path, key: str | None) -> tuple[int, ...]:
    """The chosen array's shape; MeshError for a stack claiming more volumes than the file has bytes (an
    HDF5 dataset may declare any shape and store nothing: its sources alone would fill the memory)."""
    real = inside_root(path, root)
    check_regular(real)
    shape = ARRAY_FORMATS[path.suffix.lower()].shape(real, key)
    count = volumes.stack_length(shape)
    if count is not None and count > os.path.getsize(real):
        raise MeshError(f"the array claims a stack of {count:,} volumes, more than the file's bytes can hold")
    return shape


def _read(path: Path, root: Path, readers: dict[str, Reader], kind: str, max_faces: int | None):
    """Check the path, pick the reader by suffix, read the bytes, parse; clean a mesh."""
    path, root = Path(path), Path(root)
    real = inside_root(path, root)
    extension = path.suffix.lower()
    reader = readers.get(extension)
    if reader is None:
        raise MeshError(f"not a {kind} file extension: {extension or '(none)'}")
    data = read_bytes(real)
    if not data or data.isspace():
        raise MeshError("empty file")
    result = reader(data, Origin(real.parent, root, max_faces))
    if isinstance(result, Volume):
        return result
    mesh = clean_mesh(*result)
    check_face_limit(len(mesh.faces), max_faces)
    return mesh
