"""The grid frame: a dataset's up axis turned to +z, shapes scaled and centred into the grid.

Which axis is up: a format with a convention keeps it whatever the options say (glTF 2.0 is +y up by
its specification, :data:`FORMAT_UP_AXES`); every other format (OBJ, OFF, STL, PLY, binvox and the
voxel arrays) is read with the up axis chosen by ``--up-axis`` or the recipe (:func:`up_axis_for`).

:func:`grid_transform` gives the 4×4 affine from mesh coordinates to grid coordinates, where voxel
``(i, j, k)`` spans ``[i, i+1) × [j, j+1) × [k, k+1)``: the dataset's up axis turned to +z, the largest
extent scaled to ``resolution - 2 * padding``, the box centred in ``[0, R]³``. A triangle lying exactly
on a grid plane overlaps neither voxel beside it, so the extreme faces of a shape are kept off the integer
planes: an axis whose minimum or maximum lands within 1e-6 of an integer is shifted by 1/64 voxel.
With ``--grid-coords`` there is no normalisation: :func:`grid_coords_transform` only turns the up axis to
+z and divides by ``--scale``, the inverse of what ``voxgan export`` does, and :func:`snap_to_planes` puts
back on its grid plane a face that a float32 file (GLB, STL, binary PLY) moved off it by rounding, so an
export comes back as the volume it was.
"""

from __future__ import annotations

import numpy as np

from voxgan.axes import FORMAT_UP_AXES, signed, up_to_z  # noqa: F401  (the frame's names, kept here)
from voxgan.errors import VoxganError
from voxgan.ingest.mesh import MeshError

PLANE_TOLERANCE = 1e-6
PLANE_SHIFT = 1.0 / 64.0
FLOAT32_ROUNDING = 2.0**-22  # relative: 4 float32 ulps, what a GLB, STL or binary PLY keeps of a coordinate


def up_axis_for(extension: str, chosen: str) -> str:
    """The up axis a file is read with: its format's convention (glTF: ``"y"``), else ``chosen``.

    extension : the file's suffix with the dot, any case (``".glb"``); chosen : ``--up-axis``.
    """
    return FORMAT_UP_AXES.get(extension.lower(), chosen)


def assumed_up_axes(extensions, chosen: str) -> dict[str, str]:
    """``{extension: up axis}`` for each extension given, sorted (the manifest's ``up_axes``)."""
    return {extension: up_axis_for(extension, chosen) for extension in sorted(set(extensions))}


def up_axis_line(up_axes: dict[str, str]) -> str:
    """One line naming the up axis assumed for each format of a run, so that a wrong guess is seen.

    up_axes : ``{".obj": "z", ".glb": "y"}`` as :func:`assumed_up_axes` gives.
    """
    chosen = [extension for extension in up_axes if extension not in FORMAT_UP_AXES]
    fixed = [extension for extension in up_axes if extension in FORMAT_UP_AXES]
    parts = []
    if chosen:
        axis = up_axes[chosen[0]]
        hint = "; Y-up meshes need --up-axis y" if axis == "z" else ""
        parts.append(f"{signed(axis)} assumed for {', '.join(chosen)} (--up-axis or the recipe{hint})")
    if fixed:
        parts.append(f"+y for {', '.join(fixed)} (glTF specification)")
    return f"up axis: {'; '.join(parts)}; shards are +z up"


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
    # column by column, not matmul: no BLAS threads fighting the worker processes, and the zeros of a
    # scaling or an axis turn skipped
    transformed = np.empty((len(points), 3))
    for row in range(3):
        column = transformed[:, row]
        column[:] = matrix[row, 3]
        for axis in np.flatnonzero(matrix[row, :3]):
            column += points[:, axis] * matrix[row, axis]
    return transformed


def column_bounds(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(low, high), each (3,): the least and the greatest of each column of points (N, 3), N >= 1.

    Column by column: numpy reduces an (N, 3) array along its first axis about ten times slower.
    """
    low = np.array([points[:, axis].min() for axis in range(3)])
    return low, np.array([points[:, axis].max() for axis in range(3)])


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
    low, high = column_bounds(rotated)
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


def grid_coords_transform(up_axis: str = "z", scale: float = 1.0) -> np.ndarray:
    """The affine (4, 4) of ``--grid-coords``: file coordinates are grid coordinates turned to
    ``up_axis`` and scaled to ``scale`` units per voxel; it turns them back (no centring, no fitting).

    The inverse of :func:`voxgan.results.export.export_transform` with the same up axis and scale.
    """
    if not (np.isfinite(scale) and scale > 0):
        raise MeshError(f"scale must be a positive number of units per voxel, got {scale}")
    return up_to_z(up_axis) @ np.diag([1.0 / scale] * 3 + [1.0])


def snap_to_planes(points: np.ndarray) -> np.ndarray:
    """Grid points (N, 3) with each coordinate that lies within float32 rounding of an integer (4 ulps,
    relative) moved onto it.

    A blocks mesh exported at ``--scale 0.05`` has its faces on grid planes; stored as float32 and
    divided by 0.05 they land a few 1e-7 voxel off, enough for the overlap test to fill the empty voxel
    beyond. Returns (N, 3) float64.
    """
    points = np.asarray(points, dtype=np.float64)
    nearest = np.round(points)
    close = np.abs(points - nearest) <= FLOAT32_ROUNDING * np.maximum(np.abs(points), 1.0)
    return np.where(close, nearest, points)


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


def occupied_box_corners(grid: np.ndarray) -> np.ndarray:
    """The 8 corners (8, 3) of the box around a voxel grid's occupied cells, in voxel coordinates."""
    filled = np.argwhere(grid)
    if len(filled) == 0:
        raise VoxganError("binvox holds no occupied voxel")
    low, high = filled.min(axis=0).astype(float), filled.max(axis=0).astype(float) + 1
    return np.array([[(low, high)[bit >> axis & 1][axis] for axis in range(3)] for bit in range(8)])
