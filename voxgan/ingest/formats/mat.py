"""MATLAB ``.mat`` voxel arrays: v4/v5/v7 through scipy.io, v7.3 (HDF5) through h5py.

The 3D ShapeNets volumes (the original 3D-GAN's training set) are v5 files holding one 30³ ``uint8``
array named ``instance``. Arrays keep MATLAB's index order: ``A(i, j, k)`` is voxel ``[i, j, k]`` =
``[x, y, z]``; v7.3 stores arrays with their axes reversed, so they are turned back on reading. A v7.3
stack is read one volume at a time (HDF5 reads in part); a v5 file is loaded once per process. The
array is chosen as :func:`voxgan.ingest.formats.volumes.choose_key` says (``--mat-key``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from voxgan.ingest.formats.volumes import choose_key, volume_index, whole_array
from voxgan.ingest.mesh import MeshError, error_line


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
        except (OSError, ValueError, TypeError) as error:
            raise MeshError(f"cannot read .mat (v7.3) array {name}: {error_line(error)}") from None


def _is_hdf5(path: Path) -> bool:
    import h5py

    return h5py.is_hdf5(path)


def _open_hdf5(path: Path):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise MeshError(f"cannot read .mat (v7.3): {error_line(error)}") from None


def _hdf5_shapes(f) -> dict[str, tuple[int, ...]]:
    """{name: shape in MATLAB's order} of the file's top-level numeric arrays."""
    return {
        name: tuple(reversed(item.shape))
        for name, item in f.items()
        if hasattr(item, "shape") and item.dtype.kind in "biuf"
    }


def _v5_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    from scipy.io import whosmat

    try:
        return {name: tuple(shape) for name, shape, kind in whosmat(path) if kind not in ("struct", "cell")}
    except Exception as error:  # scipy raises many kinds on a broken file; each is this file's error
        raise MeshError(f"cannot read .mat: {error_line(error)}") from None


def _load_v5(path: str, name: str) -> np.ndarray:
    from scipy.io import loadmat

    try:
        return np.asarray(loadmat(path, variable_names=[name])[name])
    except Exception as error:  # as above
        raise MeshError(f"cannot read .mat array {name}: {error_line(error)}") from None
