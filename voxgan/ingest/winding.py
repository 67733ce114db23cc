"""Generalized winding numbers of a triangle soup (Jacobson et al. 2013): exact, by columns, and clustered.

``w(p)`` sums each triangle's signed solid angle over 4π: 1 inside a closed outward mesh, 0 outside,
and a smooth field across the holes of an open one. A closed mesh's field is an integer that only
changes across the surface, so the signed crossings of a +z ray give it, for every voxel centre in one
pass (:func:`column_winding`). An open mesh's field is summed with far groups of triangles counted by
their far field (after Barill et al. 2018: dipole, and with numba the next term too; dense meshes use
two levels of groups), near ones exactly; the error is about 0.02 at most.
"""

from __future__ import annotations

import numpy as np

from voxgan.ingest.kernels import compiled_kernels, edge_side, half_solid_angle
from voxgan.ingest.overlap import range_cells

WINDING_CHUNK = 1 << 14  # point/triangle pairs per block of the winding-number sum
CLUSTER_CELL = 2.0  # smallest side, in voxels, of the groups of triangles an open mesh's winding sum uses
CLUSTER_BETA = 2.0  # a group counts as far beyond this many times its radius
EXACT_PAIRS = 1 << 18  # without numba, below this many point/triangle pairs the plain exact sum is used
SUBGROUP_TRIANGLES = 8  # triangles a small group of an open mesh's winding sum aims at
POINT_CELL = 6.0  # side, in voxels, of the cubes of points that share which groups count as far
POINT_SPACINGS = 3.0  # and at least this many spacings of a lattice of points, so that its cubes hold many


def winding_numbers(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Exact generalized winding number of a triangle soup at each point.

    points : (P, 3) float; triangles : (F, 3, 3) float  ->  (P,) float64. Each triangle contributes
    its signed solid angle (Van Oosterom and Strackee 1983) over 4π.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    total = np.zeros(len(points))
    if len(triangles) == 0 or len(points) == 0:
        return total
    corners = [triangles[:, m, axis] for m in range(3) for axis in range(3)]  # 9 arrays (F,)
    step = max(1, WINDING_CHUNK // len(triangles))
    for start in range(0, len(points), step):
        p = points[start : start + step]
        ax, ay, az, bx, by, bz, cx, cy, cz = (
            corner[None, :] - p[:, n % 3, None] for n, corner in enumerate(corners)
        )  # each (p, F): corners relative to the point
        halves = half_solid_angle(ax, ay, az, bx, by, bz, cx, cy, cz)  # (p, F)
        total[start : start + step] = halves.sum(axis=1) / (2 * np.pi)
    return total


def column_winding(triangles: np.ndarray, resolution: int) -> np.ndarray:
    """Signed crossings of a +z ray from every voxel centre with the triangles.

    triangles : (F, 3, 3) in grid coordinates  ->  (R, R, R) int32. For a closed mesh (or a mesh with
    its :func:`hole_caps`) this is the winding number at each centre, exactly: each column of centres
    is crossed once per triangle (:func:`voxgan.ingest.kernels.column_crossing_loop`), ties on shared
    edges and corners broken consistently. A centre lying exactly on the surface counts as just above it.
    """
    counts = column_crossings(triangles, resolution)
    downward = counts[:, :, ::-1]
    np.cumsum(downward, axis=2, out=downward)  # in place, from the top down: one grid, not three
    return counts


def column_inside(triangles: np.ndarray, resolution: int, skip: np.ndarray) -> np.ndarray:
    """Where :func:`column_winding` is not 0, outside ``skip``: the inside of a closed mesh.

    triangles : (F, 3, 3) in grid coordinates; skip : (R, R, R) bool, voxels reported False  ->  (R, R, R)
    bool. One compiled pass over the crossings (:func:`voxgan.ingest.kernels.column_inside_loop`).
    """
    kernels = compiled_kernels()
    if kernels is None:
        return (column_winding(triangles, resolution) != 0) & ~skip
    inside = np.empty((resolution,) * 3, dtype=bool)
    kernels.column_inside(column_crossings(triangles, resolution), np.ascontiguousarray(skip), inside)
    return inside


def column_crossings(triangles: np.ndarray, resolution: int) -> np.ndarray:
    """Each triangle's signed crossing with each column, at the highest voxel centre below it.

    triangles : (F, 3, 3)  ->  (R, R, R) int32 (summed from the top down they give :func:`column_winding`).
    """
    counts = np.zeros((resolution,) * 3, dtype=np.int32)
    kernels = compiled_kernels()
    if kernels is not None:
        kernels.columns(np.ascontiguousarray(triangles, dtype=np.float64), resolution, counts)
    else:
        column_crossings_numpy(triangles, resolution, counts)
    return counts


def column_crossings_numpy(triangles: np.ndarray, resolution: int, counts: np.ndarray) -> None:
    """:func:`voxgan.ingest.kernels.column_crossing_loop` in vectorised numpy (same counts, in place)."""
    x, y, z = triangles[:, :, 0], triangles[:, :, 1], triangles[:, :, 2]  # (F, 3) each
    first = np.maximum(np.ceil(np.stack([x.min(1), y.min(1)], 1) - 0.5), 0).astype(np.int64)
    last = np.minimum(np.floor(np.stack([x.max(1), y.max(1)], 1) - 0.5), resolution - 1).astype(np.int64)
    keep = (last >= first).all(axis=1)
    lo = np.concatenate([first[keep], np.zeros((keep.sum(), 1), np.int64)], axis=1)
    hi = np.concatenate([last[keep], np.zeros((keep.sum(), 1), np.int64)], axis=1)
    owner, cells = range_cells(lo, hi)
    owner = np.flatnonzero(keep)[owner]
    px, py = cells[:, 0] + 0.5, cells[:, 1] + 0.5
    cx, cy, cz = x[owner], y[owner], z[owner]  # (N, 3) each
    sides = [edge_side(cx[:, m], cy[:, m], cx[:, n], cy[:, n], px, py) for m, n in ((0, 1), (1, 2), (2, 0))]
    hit = (sides[0] != 0) & (sides[1] == sides[0]) & (sides[2] == sides[0])
    d = [
        (cx[:, n] - cx[:, m]) * (py - cy[:, m]) - (cy[:, n] - cy[:, m]) * (px - cx[:, m])
        for m, n in ((0, 1), (1, 2), (2, 0))
    ]
    area = d[0] + d[1] + d[2]
    hit &= area != 0
    height = (d[0] * cz[:, 2] + d[1] * cz[:, 0] + d[2] * cz[:, 1])[hit] / area[hit]
    below = np.clip(np.ceil(height - 0.5), 0, resolution).astype(np.int64)
    up = below > 0
    i, j = cells[hit, 0][up], cells[hit, 1][up]
    np.add.at(counts, (i, j, below[up] - 1), sides[0][hit][up].astype(np.int32))


def clustered_winding_numbers(
    points: np.ndarray, triangles: np.ndarray, cell: float = CLUSTER_CELL, beta: float = CLUSTER_BETA
) -> np.ndarray:
    """Winding numbers with far groups of triangles replaced by their far field (after Barill et al. 2018).

    points : (P, 3); triangles : (F, 3, 3)  ->  (P,) float64. Triangles are grouped by the cube of
    side ``cell`` holding their centroid. A group farther than ``beta`` times its radius from a
    point contributes its dipole ``N · (c - p) / (4π |c - p|³)`` (N its vector area, c its
    area-weighted centroid), compiled with the next term of the expansion
    (:func:`voxgan.ingest.kernels.far_field_sum`); nearer groups are summed exactly.
    """
    result = np.zeros(len(points))
    if len(triangles) == 0 or len(points) == 0:
        return result
    kernels = compiled_kernels()
    if kernels is None and len(triangles) * len(points) <= EXACT_PAIRS:
        return winding_numbers(points, triangles)
    centroids = (triangles[:, 0] + triangles[:, 1] + triangles[:, 2]) / 3
    order, starts, _ = cell_groups(centroids, cell)
    triangles, centroids = triangles[order], centroids[order]
    ends = np.append(starts[1:], len(triangles))
    if kernels is not None:  # one level: the two-level sum whose large groups are the groups themselves
        moments, radii = group_moments(
            kernels, np.ascontiguousarray(triangles, dtype=np.float64), starts, ends
        )
        groups, far = np.arange(len(starts)), beta * radii
        large, small = (groups, groups + 1, moments, far), (starts, ends, moments, far)
        return compiled_sum(points, corner_rows(triangles), large, small)
    vector_area = 0.5 * np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    area = np.sqrt((vector_area**2).sum(axis=1)) + 1e-300
    group_normal = np.add.reduceat(vector_area, starts, axis=0)  # (G, 3)
    group_centre = (
        np.add.reduceat(centroids * area[:, None], starts, axis=0) / np.add.reduceat(area, starts)[:, None]
    )
    group_of = np.repeat(np.arange(len(starts)), ends - starts)
    corner_distance = np.sqrt(((triangles - group_centre[group_of][:, None, :]) ** 2).sum(axis=2)).max(axis=1)
    group_radius = np.maximum.reduceat(corner_distance, starts)
    step = max(1, EXACT_PAIRS // len(starts))
    near = np.zeros((len(points), len(starts)), dtype=bool)
    for first in range(0, len(points), step):
        block = slice(first, first + step)
        offset = group_centre[None, :, :] - points[block, None, :]  # (p, G, 3)
        distance = np.sqrt((offset**2).sum(axis=2))
        far = distance > beta * group_radius[None, :]
        near[block] = ~far
        dipole = (offset * group_normal[None]).sum(axis=2) / np.maximum(distance, 1e-12) ** 3
        result[block] = np.where(far, dipole, 0.0).sum(axis=1) / (4 * np.pi)
    for group, (start, end) in enumerate(zip(starts, ends, strict=True)):
        close = np.flatnonzero(near[:, group])
        if len(close):
            result[close] += winding_numbers(points[close], triangles[start:end])
    return result


def corner_rows(triangles: np.ndarray) -> np.ndarray:
    """(F, 3, 3) triangles as the compiled sum takes them: (9, F) float64, row 3m + axis = corner m's axis."""
    return np.ascontiguousarray(triangles.reshape(-1, 9).T, dtype=np.float64)


def cell_keys(points: np.ndarray, cell: float) -> np.ndarray:
    """Which cube of side ``cell`` holds each point, as one int each: (P, 3)  ->  (P,) int64."""
    x, y, z = (np.floor(points[:, axis] / cell).astype(np.int64) for axis in range(3))  # by column: faster
    x, y, z = x - x.min(), y - y.min(), z - z.min()
    return (x * (y.max() + 1) + y) * (z.max() + 1) + z


def cell_groups(
    centroids: np.ndarray, cell: float, split: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triangles grouped by the cube of side ``cell`` holding their centroid, and within it by the cube of
    side ``cell / split``.

    centroids : (F, 3)  ->  (order : (F,), starts : (G,), large_starts : (H,)): ``order`` sorts the
    triangles (stably) so that each small cube's lie together, small group g from ``starts[g]``, and
    each large cube's small groups lie together, large group h from small group ``large_starts[h]``.
    """
    large, small = cell_keys(centroids, cell), cell_keys(centroids, cell / split)
    order = np.lexsort((small, large))
    large, small = large[order], small[order]
    starts = np.flatnonzero(np.concatenate([[True], (small[1:] != small[:-1]) | (large[1:] != large[:-1])]))
    large_starts = np.flatnonzero(np.concatenate([[True], large[starts[1:]] != large[starts[:-1]]]))
    return order, starts, large_starts


def open_winding_function(triangles: np.ndarray, cell: float):
    """A function from points (P, 3), and optionally their spacing (a lattice's, in voxels; 1 by default),
    to winding numbers (P,) of the triangles (F, 3, 3).

    With numba, triangles are grouped once on two levels (cubes of side ``cell``, and cubes of side
    ``cell / s`` within them, s chosen so that a small group holds about ``SUBGROUP_TRIANGLES``):
    a group farther than ``CLUSTER_BETA`` radii counts by its far field (dipole and second-order
    term), a near large group by its small groups, a near small group triangle by triangle. Without
    numba, :func:`clustered_winding_numbers`.
    """
    kernels = compiled_kernels()
    if kernels is None or len(triangles) == 0:
        return lambda points, spacing=1.0: clustered_winding_numbers(points, triangles, cell=cell)
    centroids = (triangles[:, 0] + triangles[:, 1] + triangles[:, 2]) / 3
    large_count = len(np.unique(cell_keys(centroids, cell)))
    split = 1
    while len(triangles) / large_count / (split * split) > SUBGROUP_TRIANGLES and split < 8:
        split *= 2
    order, starts, large_starts = cell_groups(centroids, cell, split)
    triangles = np.ascontiguousarray(triangles[order])
    ends = np.append(starts[1:], len(triangles))  # small group h: triangles starts[h]:ends[h]
    large_ends = np.append(large_starts[1:], len(starts))  # large group g: small groups in that range
    small_moments, small_radius = group_moments(kernels, triangles, starts, ends)
    large_first = starts[large_starts]
    large_moments, large_radius = group_moments(
        kernels, triangles, large_first, np.append(large_first[1:], len(triangles))
    )
    large_far, small_far = CLUSTER_BETA * large_radius, CLUSTER_BETA * small_radius

    corners = corner_rows(triangles)
    large = (large_starts, large_ends, large_moments, large_far)
    small = (starts, ends, small_moments, small_far)
    return lambda points, spacing=1.0: compiled_sum(points, corners, large, small, spacing)


def group_moments(kernels, triangles: np.ndarray, first: np.ndarray, last: np.ndarray):
    """Far-field moments (G, 15) and radii (G,) of the groups triangles[first[g]:last[g]] of (F, 3, 3)
    triangles (:func:`voxgan.ingest.kernels.group_moments_loop`)."""
    moments, radii = np.empty((len(first), 15)), np.empty(len(first))
    kernels.moments(triangles, first, last, moments, radii)
    return moments, radii


def compiled_sum(
    points: np.ndarray, corners: np.ndarray, large: tuple, small: tuple, spacing: float = 1.0
) -> np.ndarray:
    """The compiled two-level winding sum (:func:`voxgan.ingest.kernels.two_level_winding_loop`).

    points : (P, 3); corners : (9, F), the triangles sorted by group (:func:`corner_rows`); large, small :
    (starts, ends, moments, far distances) of the large groups (over small groups) and of the small groups
    (over triangles); spacing : the points' spacing  ->  (P,) float64. The points are taken in cubes of
    side ``POINT_CELL``, or ``POINT_SPACINGS`` spacings of a sparse lattice, that share their decisions of
    which groups count as far: a cube's decisions cost about as much as its points' sums, so a cube of
    one lattice point would cost twice its sum.
    """
    result = np.zeros(len(points))
    if len(points) == 0:
        return result
    points = np.asarray(points, dtype=np.float64)
    keys = cell_keys(points, max(POINT_CELL, POINT_SPACINGS * spacing))
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    cell_starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1], [True]]))
    sorted_result = np.empty(len(points))
    compiled_kernels().two_level(
        np.ascontiguousarray(points[order]), cell_starts, corners, *large, *small, sorted_result
    )
    result[order] = sorted_result
    return result
