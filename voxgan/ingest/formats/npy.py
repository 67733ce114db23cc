"""NumPy ``.npy`` and ``.npz`` voxel arrays: one volume or a stack, read memory-mapped.

A ``.npy`` file and an ``.npz`` member stored without compression (``np.savez``) are memory-mapped, so
a stack larger than RAM works and each volume costs only its own bytes. A compressed member
(``np.savez_compressed``) cannot be read in part: it is decompressed whole, once per process. Nothing is
ever unpickled (object arrays are refused). See :mod:`voxgan.ingest.formats.volumes` for the shapes.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from voxgan.ingest.formats.volumes import MAX_WHOLE_BYTES, choose_key, volume_index, whole_array
from voxgan.ingest.mesh import MeshError, error_line

_LOCAL_HEADER = 30  # bytes of a zip local file header before its name and extra field
# what zipfile and zlib raise on a damaged archive (NotImplementedError: a zip version or method it lacks;
# RuntimeError: an encrypted member)
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    OSError,
    ValueError,
    EOFError,
    NotImplementedError,
    RuntimeError,
    zlib.error,
)


def npy_shape(path: Path, key: str | None = None) -> tuple[int, ...]:
    """The shape of the array in a ``.npy`` file (``key`` is unused: a .npy holds one array)."""
    return _mapped(path, 0, ".npy").shape


def npy_volume(path: Path, key: str | None, index: int | None) -> np.ndarray:
    """Volume ``index`` (None: the only one) of a ``.npy`` file: (R, R, R), read from the mapping."""
    array = _mapped(path, 0, ".npy")
    return np.asarray(array[volume_index(array.shape, index)])


def npz_shape(path: Path, key: str | None) -> tuple[int, ...]:
    """The shape of the chosen array of a ``.npz`` file (see :func:`volumes.choose_key`)."""
    with _open_zip(path) as archive:
        members = _members(archive)
        return members[choose_key(members, key)]


def npz_volume(path: Path, key: str | None, index: int | None) -> np.ndarray:
    """Volume ``index`` of the chosen array of a ``.npz`` file: (R, R, R)."""
    with _open_zip(path) as archive:
        members = _members(archive)
        name = choose_key(members, key)
        take = volume_index(members[name], index)
        info = archive.getinfo(f"{name}.npy")
        if info.compress_type == zipfile.ZIP_STORED:
            return np.asarray(_mapped(path, _member_data_start(path, info), info.filename)[take])
    return np.asarray(whole_array(_load_member, path, name)[take])


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except _ZIP_ERRORS as error:
        raise MeshError(f"cannot read .npz: {error_line(error)}") from None


def _members(archive: zipfile.ZipFile) -> dict[str, tuple[int, ...]]:
    """{array name: shape} from each member's .npy header; MeshError for object (pickled) arrays."""
    shapes = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            continue
        try:
            with archive.open(info) as stream:
                shape, _, dtype = _read_header(stream)
        except _ZIP_ERRORS as error:
            raise MeshError(f"cannot read .npz member {info.filename}: {error_line(error)}") from None
        if dtype.hasobject:
            raise MeshError(f"{info.filename} holds Python objects (pickles), which voxgan never loads")
        if dtype.itemsize * int(np.prod(shape, dtype=object)) > info.file_size:
            raise MeshError(f".npz member {info.filename} claims more data than it holds (truncated?)")
        if info.compress_type != zipfile.ZIP_STORED and info.file_size > MAX_WHOLE_BYTES:
            raise MeshError(
                f".npz member {info.filename} inflates to {info.file_size:,} bytes "
                f"(over {MAX_WHOLE_BYTES:,}): save it with np.savez (read in part)"
            )
        shapes[info.filename[: -len(".npy")]] = shape
    return shapes


def _read_header(stream) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of a .npy stream, leaving it at the first data byte.

    ValueError for any header that cannot be read (numpy evaluates the header's text as a Python literal
    and raises SyntaxError, tokenize's TokenError and more on a hostile one; a zip member may raise
    zlib's errors)."""
    try:
        major, _ = np.lib.format.read_magic(stream)
        if major == 1:
            return np.lib.format.read_array_header_1_0(stream)
        return np.lib.format.read_array_header_2_0(stream)
    except Exception as error:  # numpy's literal evaluation (and a damaged zip member) raise many kinds
        raise ValueError(f"bad .npy header: {error_line(error)}") from None


def _mapped(path: Path, start: int, name: str) -> np.memmap:
    """The .npy array whose bytes begin at ``start`` in the file (0, or an .npz member's data), mapped.

    name : what to call it in an error (``.npy``, or the member's name).
    """
    try:
        with open(path, "rb") as handle:
            handle.seek(start)
            shape, fortran, dtype = _read_header(handle)
            offset = handle.tell()
    except (ValueError, OSError, EOFError) as error:
        raise MeshError(f"cannot read {name}: {error_line(error)}") from None
    if dtype.hasobject:
        raise MeshError(f"{name} holds Python objects (pickles), which voxgan never loads")
    order = "F" if fortran else "C"
    try:
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)
    except (ValueError, OSError, OverflowError) as error:
        raise MeshError(
            f"{name} claims more data than the file holds (truncated?): {error_line(error)}"
        ) from None


def _member_data_start(path: Path, info: zipfile.ZipInfo) -> int:
    """Where the bytes of an .npz member stored without compression begin in the archive."""
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        local = handle.read(_LOCAL_HEADER)
    if len(local) < _LOCAL_HEADER or local[:4] != b"PK\x03\x04":
        raise MeshError(f"cannot read .npz member {info.filename}: bad local header")
    name_length, extra_length = struct.unpack("<2H", local[26:30])
    return info.header_offset + _LOCAL_HEADER + name_length + extra_length


def _load_member(path: str, name: str) -> np.ndarray:
    """A compressed member, decompressed whole (never unpickled)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return archive[name]
    except _ZIP_ERRORS as error:
        raise MeshError(f"cannot read .npz member {name}.npy: {error_line(error)}") from None
