"""The surface test: which voxels a triangle passes through (open boxes) or touches (closed boxes).

Everything here works in grid coordinates: voxel (i, j, k) spans [i, i+1) × [j, j+1) × [k, k+1), and
masks are (R, R, R) bool indexed ``[x, y, z]``. The test is the separating-axis test with strict
inequalities, so a triangle that only touches a box's boundary (a face lying exactly on a grid plane, an
edge along a grid line) marks nothing. Triangles whose bounding box spans more than one voxel along at
most one axis overlap every voxel of that range, which settles most triangles of a detailed mesh without
running the full test. The compiled loop (:func:`voxgan.ingest.kernels.compiled_kernels`) and the
vectorised numpy code here give the same masks.
"""

from __future__ import annotations

import numpy as np

from voxgan.ingest.kernels import compiled_kernels

PAIR_CHUNK = 1 << 17  # triangle/voxel pairs per block of the separating-axis test


def overlap_masks(triangles: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Voxels a triangle passes through (open boxes) and voxels a triangle touches (closed boxes).

    triangles : (F, 3, 3) float in grid coordinates  ->  (surface, touched), each (R, R, R) bool.
    Runs the compiled loop when numba is installed, else :func:`overlap_masks_numpy` (same result).
    """
    kernels = compiled_kernels()
    if kernels is None:
        return overlap_masks_numpy(triangles, resolution)
    surface = np.zeros((resolution,) * 3, dtype=bool)
    touched = np.zeros((resolution,) * 3, dtype=bool)
    kernels.overlap(np.ascontiguousarray(triangles, dtype=np.float64), resolution, surface, touched)
    return surface, touched


def overlap_masks_numpy(triangles: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`overlap_masks` in vectorised numpy: (F, 3, 3)  ->  (surface, touched), (R, R, R) bool each."""
    r = resolution
    surface = np.zeros((r, r, r), dtype=bool)
    touched = np.zeros((r, r, r), dtype=bool)
    if len(triangles) == 0:
        return surface, touched
    low, high = corner_min(triangles), corner_max(triangles)  # (F, 3)
    first = np.ceil(low) - 1  # closed box [i, i+1] meets [low, high] for i in [first, last]
    last = np.floor(high)
    lo = np.clip(first, 0, r - 1).astype(np.int64)
    hi = np.clip(last, 0, r - 1).astype(np.int64)
    keep = all_axes((last >= 0) & (first <= r - 1) & (lo <= hi))
    # Off-grid-plane triangles (no bounding-box coordinate on an integer) have the same open and
    # closed ranges; when they span several voxels along at most one axis they overlap all of them.
    generic = all_axes((np.ceil(low) != low) & (np.floor(high) != high))
    many = (last - first) > 0
    spans_many = many[:, 0].astype(np.int8) + many[:, 1] + many[:, 2]
    simple = keep & generic & (spans_many <= 1)
    single = simple & (spans_many == 0)
    i, j, k = lo[single].T
    surface[i, j, k] = True
    touched[i, j, k] = True
    line = np.flatnonzero(simple & (spans_many == 1))
    cells = range_cells(lo[line], hi[line])[1]
    surface[tuple(cells.T)] = True
    touched[tuple(cells.T)] = True
    rest = np.flatnonzero(keep & ~simple)
    if len(rest):
        separating_axis_marks(triangles[rest], lo[rest], hi[rest], surface, touched)
    return surface, touched


def corner_min(triangles: np.ndarray) -> np.ndarray:
    """Smallest coordinate over the three corners: (F, 3, 3)  ->  (F, 3)."""
    return np.minimum(np.minimum(triangles[:, 0], triangles[:, 1]), triangles[:, 2])


def corner_max(triangles: np.ndarray) -> np.ndarray:
    """Largest coordinate over the three corners: (F, 3, 3)  ->  (F, 3)."""
    return np.maximum(np.maximum(triangles[:, 0], triangles[:, 1]), triangles[:, 2])


def all_axes(flags: np.ndarray) -> np.ndarray:
    """(N, 3) bool  ->  (N,) bool, True where all three are."""
    return flags[:, 0] & flags[:, 1] & flags[:, 2]


def any_axis(flags: np.ndarray) -> np.ndarray:
    """(N, 3) bool  ->  (N,) bool, True where any of the three is."""
    return flags[:, 0] | flags[:, 1] | flags[:, 2]


def range_cells(lo: np.ndarray, hi: np.ndarray, offset: int = 0, count: int | None = None):
    """Every voxel of each triangle's index box, flattened.

    lo, hi : (T, 3) int inclusive ranges  ->  (owner : (N,) int, cells : (N, 3) int), where owner is
    the row of lo/hi each cell came from. ``offset``/``count`` select a slice of the N cells.
    """
    sizes = hi - lo + 1  # (T, 3)
    counts = sizes.prod(axis=1)
    ends = np.cumsum(counts)
    total = int(ends[-1]) if len(ends) else 0
    count = total - offset if count is None else min(count, total - offset)
    flat = np.arange(offset, offset + count)
    owner = np.searchsorted(ends, flat, side="right")
    local = flat - (ends[owner] - counts[owner])
    sy, sz = sizes[owner, 1], sizes[owner, 2]
    cells = lo[owner] + np.stack([local // (sy * sz), (local // sz) % sy, local % sz], axis=1)
    return owner, cells


def plane_boxes(triangles: np.ndarray, normals: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """Split each triangle's index box into columns that hold only voxels its plane touches.

    triangles : (T, 3, 3); normals : (T, 3); lo, hi : (T, 3) inclusive ranges  ->  (owner : (B,) int,
    box_lo : (B, 3), box_hi : (B, 3)): boxes one voxel wide across the normal's dominant axis, each
    limited along that axis to the voxels whose closed box the plane meets (a superset of those the
    triangle touches), so a large slanted triangle is tested on O(area) voxels instead of O(volume).
    """
    dominant = np.abs(normals).argmax(axis=1)  # (T,)
    rows = np.arange(len(triangles))
    column_hi = hi.copy()
    column_hi[rows, dominant] = lo[rows, dominant]
    column, cells = range_cells(lo, column_hi)  # one cell per column, at the bottom of the range
    normal, d = normals[column], dominant[column]
    along = normal[np.arange(len(column)), d]  # (N,) the dominant component, zero when degenerate
    offset = (normal * triangles[column, 0]).sum(axis=1)  # plane: normal · x = offset
    across = (cells + 0.5) * normal
    across[np.arange(len(column)), d] = 0
    safe = np.where(along == 0, 1.0, along)
    middle = (offset - across.sum(axis=1)) / safe
    spread = 0.5 * (np.abs(normal).sum(axis=1) - np.abs(along)) / np.abs(safe) + 1e-9
    first = np.where(along == 0, lo[column, d], np.maximum(np.ceil(middle - spread) - 1, lo[column, d]))
    last = np.where(along == 0, hi[column, d], np.minimum(np.floor(middle + spread), hi[column, d]))
    keep = first <= last
    box_lo, box_hi = cells.copy(), cells.copy()
    box_lo[np.arange(len(column)), d] = first
    box_hi[np.arange(len(column)), d] = last
    return column[keep], box_lo[keep], box_hi[keep]


def separating_axis_marks(
    triangles: np.ndarray, lo: np.ndarray, hi: np.ndarray, surface: np.ndarray, touched: np.ndarray
) -> None:
    """Run the separating-axis test on every (triangle, voxel) pair of the index boxes; mark in place.

    triangles : (T, 3, 3); lo, hi : (T, 3) inclusive voxel ranges; surface, touched : (R, R, R) bool.
    Open boxes use strict inequalities (touching is not overlapping), closed boxes non-strict ones.
    """
    edges = triangles[:, [1, 2, 0]] - triangles  # (T, 3, 3): edge m from corner m to m+1
    normals = np.cross(edges[:, 0], edges[:, 1])  # (T, 3)
    normal_radius = 0.5 * np.abs(normals).sum(axis=1)  # (T,)
    # 9 axes: edge m × unit axis u, as (T, 9, 3)
    axes = np.cross(edges[:, :, None, :], np.eye(3)[None, None, :, :]).reshape(-1, 9, 3)
    axis_radius = 0.5 * np.abs(axes).sum(axis=2)  # (T, 9)
    box_owner, box_lo, box_hi = plane_boxes(triangles, normals, lo, hi)
    total = int((box_hi - box_lo + 1).prod(axis=1).sum())
    for offset in range(0, total, PAIR_CHUNK):
        box, cells = range_cells(box_lo, box_hi, offset, PAIR_CHUNK)
        owner = box_owner[box]
        rel = triangles[owner] - (cells + 0.5)[:, None, :]  # (P, 3, 3) corners around the centre
        # box axes: the closed ranges already overlap; open boxes also need a strict overlap
        open_apart = any_axis((corner_min(rel) >= 0.5) | (corner_max(rel) <= -0.5))
        # triangle normal
        normal = normals[owner]
        offset_along = rel[:, 0, 0] * normal[:, 0] + rel[:, 0, 1] * normal[:, 1] + rel[:, 0, 2] * normal[:, 2]
        radius = normal_radius[owner]
        open_apart |= (np.abs(offset_along) >= radius) & (radius > 0)
        closed_apart = np.abs(offset_along) > radius
        # edge m × unit axis u projects a point v to (v × edge m)_u; the edge's two ends agree
        radii = axis_radius[owner]  # (P, 9)
        for m in range(3):
            edge = edges[owner, m]
            at_edge = np.cross(rel[:, m], edge)  # (P, 3): one value per unit axis
            at_other = np.cross(rel[:, (m + 2) % 3], edge)
            low, high = np.minimum(at_edge, at_other), np.maximum(at_edge, at_other)
            radius = radii[:, 3 * m : 3 * m + 3]
            open_apart |= any_axis(((low >= radius) | (high <= -radius)) & (radius > 0))
            closed_apart |= any_axis((low > radius) | (high < -radius))
        hit = cells[~open_apart]
        surface[hit[:, 0], hit[:, 1], hit[:, 2]] = True
        hit = cells[~closed_apart]
        touched[hit[:, 0], hit[:, 1], hit[:, 2]] = True
