"""MATLAB ``.mat`` voxel arrays: v5/v7 by our own reader, v7.3 (HDF5) through h5py, v4 through scipy.io.

The 3D ShapeNets volumes (the original 3D-GAN's training set) are v5 files holding one 30³ ``uint8``
array named ``instance``. Arrays keep MATLAB's index order: ``A(i, j, k)`` is voxel ``[i, j, k]`` =
``[x, y, z]``; v7.3 stores arrays with their axes reversed, so they are turned back on reading. A v7.3
stack is read one volume at a time (HDF5 reads in part); a v5 file is loaded once per process. The
array is chosen as :func:`voxgan.ingest.formats.volumes.choose_key` says (``--mat-key``).

v5 is read here, not by ``scipy.io.loadmat``: scipy's compiled v5 reader crashes the process
(segmentation fault) on some damaged files, which the fuzzing campaign (``benchmarks/fuzz_readers.py``)
found. The v5 layout is small: a 128-byte header (text, version 0x0100, ``IM`` or ``MI`` for the byte
order), then tagged elements, each ``miMATRIX`` (14) or ``miCOMPRESSED`` (15, zlib around one
``miMATRIX``); a numeric matrix holds its flags (class), dimensions, name and real part, column-major.
Only numeric and logical arrays are read; a compressed element never inflates past
:data:`voxgan.ingest.formats.volumes.MAX_WHOLE_BYTES`. HDF5 datasets whose data lives in another file
(external storage, virtual datasets) and links to other files are refused: nothing outside the file is
read.
"""

from __future__ import annotations

import functools
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from voxgan.ingest.formats.volumes import MAX_WHOLE_BYTES, choose_key, volume_index, whole_array
from voxgan.ingest.mesh import MeshError, error_line

_V5_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}
_MI_INT8, _MI_INT32, _MI_UINT32, _MI_MATRIX, _MI_COMPRESSED = 1, 5, 6, 14, 15
_NUMERIC_CLASSES = range(6, 16)  # mxDOUBLE_CLASS .. mxUINT64_CLASS
_HEADER_BYTES = 128


def mat_shape(path: Path, key: str | None) -> tuple[int, ...]:
    """The shape (MATLAB's order) of the chosen array of a .mat file."""
    if _is_hdf5(path):
        with _open_hdf5(path) as f:
            shapes = _hdf5_shapes(f)
    else:
        shapes = _v5_shapes(path)
    return shapes[choose_key(shapes, key)]


def mat_volume(path: Path, key: str | None, index: int | None) -> np.ndarray:
    """Volume ``index`` (None: the only one) of the chosen array of a .mat file: (R, R, R)."""
    if not _is_hdf5(path):
        shapes = _v5_shapes(path)
        name = choose_key(shapes, key)
        return whole_array(_load_v5, path, name)[volume_index(shapes[name], index)]
    with _open_hdf5(path) as f:
        shapes = _hdf5_shapes(f)
        name = choose_key(shapes, key)
        take = volume_index(shapes[name], index)
        try:
            return np.asarray(f[name][(Ellipsis, *reversed(take))]).T  # HDF5 holds MATLAB's axes reversed
        except (OSError, ValueError, TypeError, RuntimeError, KeyError) as error:
            raise MeshError(f"cannot read .mat (v7.3) array {name}: {error_line(error)}") from None


def _is_hdf5(path: Path) -> bool:
    import h5py

    try:
        return h5py.is_hdf5(path)
    except (OSError, RuntimeError, ValueError) as error:
        raise MeshError(f"cannot read .mat: {error_line(error)}") from None


def _open_hdf5(path: Path):
    import h5py

    try:
        return h5py.File(path, "r")
    except (OSError, RuntimeError, ValueError) as error:
        raise MeshError(f"cannot read .mat (v7.3): {error_line(error)}") from None


def _hdf5_shapes(f) -> dict[str, tuple[int, ...]]:
    """{name: shape in MATLAB's order} of the file's top-level numeric arrays; MeshError for a damaged
    file and for arrays whose data lives outside it (external storage, virtual datasets, external links)."""
    import h5py

    shapes = {}
    try:
        for name in f:
            if isinstance(f.get(name, getlink=True), h5py.ExternalLink):
                raise MeshError(f".mat (v7.3) entry {name} links to another file, which voxgan never reads")
            item = f[name]
            if not isinstance(item, h5py.Dataset) or item.dtype.kind not in "biuf":
                continue
            if item.external or item.is_virtual:
                raise MeshError(
                    f".mat (v7.3) array {name} keeps its data in another file, which voxgan never reads"
                )
            shapes[name] = tuple(reversed(item.shape))
    except MeshError:
        raise
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as error:
        raise MeshError(f"cannot read .mat (v7.3): {error_line(error)}") from None
    return shapes


def _v5_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """{name: dimensions} of the numeric and logical arrays of a v5 file (v4: through scipy), each checked
    against the values it holds; kept for the next call on the same unchanged file (a stack's volumes
    are read one by one)."""
    status = os.stat(path)
    return dict(_cached_v5_shapes(str(path), (status.st_mtime_ns, status.st_size)))


@functools.lru_cache(maxsize=4)
def _cached_v5_shapes(path: str, stamp: tuple[int, int]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    data = _v5_bytes(Path(path))
    if data is None:
        return tuple(_v4_shapes(Path(path)).items())
    return tuple((name, dims) for name, dims, _ in _v5_matrices(data, None))


def _load_v5(path: str, name: str) -> np.ndarray:
    """The array ``name`` of a v5 file (v4: through scipy), in MATLAB's index order."""
    data = _v5_bytes(Path(path))
    if data is None:
        return _load_v4(path, name)
    for found, _, array in _v5_matrices(data, name):
        if found == name:
            return array
    raise MeshError(f"cannot read .mat array {name}: not in the file")


def _v5_bytes(path: Path) -> bytes | None:
    """The file's bytes if it is a v5 file (version 0x0100 after 124 bytes of text), else None."""
    with open(path, "rb") as handle:
        data = handle.read()
    if len(data) >= _HEADER_BYTES and data[126:128] in (b"IM", b"MI"):
        return data
    return None


def _v5_matrices(data: bytes, want: str | None):
    """Yield (name, dims, array or None) for each numeric or logical matrix of a v5 file's bytes;
    the array (in MATLAB's order) only for the matrix named ``want``. MeshError for a damaged file."""
    try:
        yield from _v5_walk(data, want)
    except (ValueError, struct.error, IndexError, TypeError, OverflowError) as error:
        raise MeshError(f"cannot read .mat: a damaged element ({error_line(error)})") from None


def _v5_walk(data: bytes, want: str | None):
    order = "<" if data[126:128] == b"IM" else ">"
    for kind, payload in _elements(data, _HEADER_BYTES, order):
        if kind == _MI_COMPRESSED:
            payload = _inflate(payload)
            inner = list(_elements(payload, 0, order))
            if not inner:
                raise MeshError("cannot read .mat: an empty compressed element")
            kind, payload = inner[0]
        if kind != _MI_MATRIX:
            continue
        parts = list(_elements(payload, 0, order))
        if len(parts) < 3 or parts[0][0] != _MI_UINT32 or len(parts[0][1]) < 8:
            raise MeshError("cannot read .mat: a matrix without flags, dimensions and name")
        flags = struct.unpack_from(order + "I", parts[0][1])[0]
        if flags & 0xFF not in _NUMERIC_CLASSES:
            continue  # a cell, struct, object, text or sparse array: never a volume
        if parts[1][0] != _MI_INT32 or parts[2][0] not in (_MI_INT8, 2) or len(parts) < 4:
            raise MeshError("cannot read .mat: a numeric matrix without dimensions, name or data")
        dims = tuple(int(n) for n in np.frombuffer(parts[1][1], order + "i4"))
        name = parts[2][1].decode("latin-1")
        if len(dims) < 2 or min(dims) < 0:
            raise MeshError(f"cannot read .mat: array {name[:40]} has dimensions {dims[:8]}")
        array = _real_part(parts[3], dims, order, bool(flags & 0x200), name)  # a view: nothing copied
        yield name, dims, array if name == want else None


def _real_part(part: tuple[int, bytes], dims: tuple[int, ...], order: str, logical: bool, name: str):
    """A matrix's real part as an array of ``dims`` in MATLAB's (column-major) order."""
    kind, payload = part
    if kind not in _V5_TYPES:
        raise MeshError(f"cannot read .mat array {name[:40]}: data of unknown type {kind}")
    dtype = np.dtype(order + _V5_TYPES[kind])
    count = int(np.prod(dims, dtype=object))
    if count * dtype.itemsize != len(payload):
        raise MeshError(
            f"cannot read .mat array {name[:40]}: dimensions {dims[:8]} need {count:,} values, "
            f"the file holds {len(payload) // dtype.itemsize:,}"
        )
    values = np.frombuffer(payload, dtype).reshape(dims, order="F")
    return values.astype(bool) if logical else values


def _elements(data: bytes, position: int, order: str):
    """Yield (type, payload) of the tagged elements from ``position`` to the end of ``data``."""
    while position + 8 <= len(data):
        kind, size = struct.unpack_from(order + "2I", data, position)
        if kind >> 16:  # a small element: size and type in one word, at most 4 bytes of data in the tag
            size, kind = kind >> 16, kind & 0xFFFF
            if size > 4:
                raise MeshError("cannot read .mat: a small element claims more than 4 bytes")
            yield kind, data[position + 4 : position + 4 + size]
            position += 8
            continue
        if position + 8 + size > len(data):
            raise MeshError(
                f"cannot read .mat: an element claims {size:,} bytes, more than follow (truncated?)"
            )
        yield kind, data[position + 8 : position + 8 + size]
        position += 8 + size + (0 if kind == _MI_COMPRESSED else -size % 8)


def _inflate(payload: bytes) -> bytes:
    """A compressed element's bytes, never more than MAX_WHOLE_BYTES."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(payload, MAX_WHOLE_BYTES)
    except zlib.error as error:
        raise MeshError(f"cannot read .mat: a damaged compressed element: {error_line(error)}") from None
    if inflater.unconsumed_tail:
        raise MeshError(f"cannot read .mat: a compressed element inflates past {MAX_WHOLE_BYTES:,} bytes")
    return out


def _v4_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    from scipy.io import whosmat

    try:
        return {name: tuple(shape) for name, shape, kind in whosmat(path) if kind not in ("struct", "cell")}
    except Exception as error:  # scipy raises many kinds on a broken file; each is this file's error
        raise MeshError(f"cannot read .mat: {error_line(error)}") from None


def _load_v4(path: str, name: str) -> np.ndarray:
    from scipy.io import loadmat

    try:
        return np.asarray(loadmat(path, variable_names=[name])[name])
    except Exception as error:  # as above
        raise MeshError(f"cannot read .mat array {name}: {error_line(error)}") from None
