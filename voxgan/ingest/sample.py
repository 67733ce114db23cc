"""One mesh file or one volume -> one shard sample: read, turn into the grid frame, voxelize, pack.

:func:`voxelize_source` is what a worker process of :mod:`voxgan.ingest.pool_engine` runs for each file; it
never raises: a file that cannot become a sample gets a one-line reason for the manifest instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voxgan.errors import VoxganError
from voxgan.ingest import formats
from voxgan.ingest.frame import (
    apply_transform,
    grid_coords_transform,
    grid_transform,
    occupied_box_corners,
    snap_to_planes,
    up_axis_for,
)
from voxgan.ingest.voxelize import resample_occupancy, voxelize


@dataclass(frozen=True)
class Settings:
    """What a worker needs to turn one file into one sample."""

    root: str
    resolution: int
    mode: str
    padding: float
    up_axis: str  # for formats without a convention (see frame.up_axis_for)
    max_faces: int
    grid_coords: bool
    scale: float = 1.0  # with grid_coords: file units per voxel (what ``voxgan export --scale`` wrote)
    mat_key: str | None = None  # the array read from .mat and .npz files (see formats.volumes)


@dataclass
class Outcome:
    """One file's result: ``packed`` (R³/8,) uint8 and ``mesh_to_grid`` (4, 4), or a one-line ``reason``."""

    source: str
    packed: np.ndarray | None = None
    mesh_to_grid: np.ndarray | None = None
    reason: str | None = None


def occupancy_of(settings: Settings, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Read and voxelize one source (a mesh file or one volume, ``file.npy#7``); returns (occupancy
    (R, R, R) bool, mesh_to_grid (4, 4) float64: from the file's coordinates, a volume's voxel indices)."""
    r = settings.resolution
    up_axis = up_axis_for(formats.extension_of(source), settings.up_axis)
    read = formats.read_source(settings.root, source, max_faces=settings.max_faces, key=settings.mat_key)
    if isinstance(read, formats.Volume):
        if settings.grid_coords:
            mesh_to_grid = grid_coords_transform(up_axis, settings.scale)
        else:
            corners = occupied_box_corners(read.occupancy)
            mesh_to_grid = grid_transform(
                apply_transform(corners, read.voxel_to_mesh),
                r,
                padding=settings.padding,
                up_axis=up_axis,
            )
        occupancy = resample_occupancy(read.occupancy, mesh_to_grid @ read.voxel_to_mesh, r)
    else:
        vertices, faces = read
        if settings.grid_coords:
            mesh_to_grid = grid_coords_transform(up_axis, settings.scale)
            grid_vertices = snap_to_planes(apply_transform(vertices, mesh_to_grid))
        else:
            mesh_to_grid = grid_transform(vertices, r, padding=settings.padding, up_axis=up_axis)
            grid_vertices = apply_transform(vertices, mesh_to_grid)
        occupancy = voxelize(grid_vertices, faces, r, mode=settings.mode)
    assert occupancy.shape == (r, r, r) and occupancy.dtype == bool, occupancy.shape
    return occupancy, np.asarray(mesh_to_grid, np.float64)


def one_line(error: BaseException) -> str:
    """An exception as one short line."""
    text = " ".join(str(error).split())
    if not isinstance(error, VoxganError):
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text[:300]


def voxelize_source(settings: Settings, source: str) -> Outcome:
    """One file to one :class:`Outcome`; any failure becomes that file's reason, never an exception."""
    try:
        occupancy, mesh_to_grid = occupancy_of(settings, source)
    except (Exception, MemoryError, RecursionError) as error:
        return Outcome(source, reason=one_line(error))
    if not occupancy.any():
        return Outcome(source, reason="no voxel occupied (the shape lies outside the grid or has no volume)")
    return Outcome(source, packed=np.packbits(occupancy.reshape(-1)), mesh_to_grid=mesh_to_grid)
