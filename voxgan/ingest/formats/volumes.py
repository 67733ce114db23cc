"""Voxel arrays as sources (.npy, .npz, .mat): the rules every array format shares.

An array holds one volume ``(R, R, R)`` or a stack ``(N, R, R, R)`` or ``(N, 1, R, R, R)``, indexed
``[x, y, z]``. Each volume is one sample; a stack's volume ``n`` is the source ``file.npy#n``. A voxel is
occupied where its value is above 0.5 (True, 1 and 255 are; 0 is not). Containers of several arrays
(.npz, .mat) give the array named by ``--mat-key``, else ``instance`` (3D ShapeNets), else their only
array of rank 3 to 5.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable

import numpy as np

from voxgan.binvox import MAX_BINVOX_DIM
from voxgan.ingest.mesh import MeshError

DEFAULT_KEY = "instance"
MAX_WHOLE_BYTES = 2**30  # an array that must be read whole (compressed) is refused beyond this many bytes
_INDEXED = re.compile(r"^(?P<path>.+)#(?P<index>\d+)$")


def split_source(source: str) -> tuple[str, int | None]:
    """``"a/b.npy#7"`` -> ``("a/b.npy", 7)``; a source without ``#index`` -> ``(source, None)``."""
    match = _INDEXED.match(source)
    if match is None:
        return source, None
    return match["path"], int(match["index"])


def stack_length(shape: tuple[int, ...]) -> int | None:
    """None for one volume (R, R, R); N for a stack (N, R, R, R) or (N, 1, R, R, R); MeshError otherwise."""
    shape = tuple(int(n) for n in shape)
    volume = shape[-3:]
    if len(shape) not in (3, 4, 5) or (len(shape) == 5 and shape[1] != 1):
        raise MeshError(
            f"array of shape {shape} is not a volume (R, R, R) or a stack (N, R, R, R) or (N, 1, R, R, R)"
        )
    if len(set(volume)) != 1 or not 1 <= volume[0] <= MAX_BINVOX_DIM:
        raise MeshError(f"volumes of shape {volume} are not cubic with a side of 1 to {MAX_BINVOX_DIM}")
    if len(shape) > 3 and shape[0] == 0:
        raise MeshError(f"empty stack: shape {shape} holds no volume")
    return None if len(shape) == 3 else shape[0]


def volume_index(shape: tuple[int, ...], index: int | None) -> tuple[int, ...]:
    """The index that takes volume ``index`` (None: the only one) out of an array of ``shape``.

    Returns ``()`` for one volume, ``(n,)`` for (N, R, R, R), ``(n, 0)`` for (N, 1, R, R, R).
    """
    length = stack_length(shape)
    if length is None:
        if index is not None:
            raise MeshError(f"volume #{index} asked of an array holding one volume")
        return ()
    if index is None:
        raise MeshError(f"the array holds a stack of {length} volumes; name one as file#index")
    if not 0 <= index < length:
        raise MeshError(f"volume #{index} is past the end of a stack of {length}")
    return (index,) if len(shape) == 4 else (index, 0)


def occupancy_of(values: np.ndarray) -> np.ndarray:
    """One volume's values -> occupancy; MeshError for NaN, non-numbers or no occupied voxel.

    values : (R, R, R) bool, integers or floats  ->  (R, R, R) bool, True where the value is above 0.5
    """
    values = np.asarray(values)
    assert values.ndim == 3, values.shape
    if values.dtype.kind not in "biuf":
        raise MeshError(f"volume of dtype {values.dtype} does not hold numbers")
    if values.dtype.kind == "f" and np.isnan(values).any():
        raise MeshError("volume holds NaN values")
    occupancy = np.ascontiguousarray(values > 0.5)
    if not occupancy.any():
        raise MeshError("empty volume: no value above 0.5")
    return occupancy


def choose_key(shapes: dict[str, tuple[int, ...]], key: str | None) -> str:
    """The array to read from a container of named arrays (.npz, .mat).

    shapes : {name: shape}; key : ``--mat-key`` (None: ``instance``, else the only array of rank 3-5).
    """
    names = ", ".join(sorted(shapes)) or "none"
    if key:
        if key not in shapes:
            raise MeshError(f"no array named {key!r} (--mat-key); the file holds: {names}")
        return key
    if DEFAULT_KEY in shapes:
        return DEFAULT_KEY
    candidates = [name for name, shape in shapes.items() if len(shape) in (3, 4, 5)]
    if len(candidates) != 1:
        raise MeshError(f"cannot tell which array is the volume (holds: {names}); name it with --mat-key")
    return candidates[0]


def whole_array(load: Callable[[str, str], np.ndarray], path, key: str) -> np.ndarray:
    """``load(path, key)``, kept for the next call on the same unchanged file.

    For formats that cannot be read in part (a compressed .npz member, MATLAB v5): a stack read volume by
    volume is loaded once per process, not once per volume. One array is kept at a time.
    """
    status = os.stat(path)
    return _cached(load, str(path), key, (status.st_mtime_ns, status.st_size))


@functools.lru_cache(maxsize=1)
def _cached(load, path: str, key: str, stamp: tuple[int, int]) -> np.ndarray:
    return load(path, key)
