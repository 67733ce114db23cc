"""Mesh to occupancy: exact surface overlap plus the generalized winding number inside test.

Everything here works in grid coordinates: voxel (i, j, k) spans [i, i+1) × [j, j+1) × [k, k+1), and
occupancy grids are (R, R, R) bool indexed ``[x, y, z]``. Geometry outside [0, R]³ is ignored.

* **Surface**: a voxel is marked when a triangle passes through its *open* box. The test is the
  separating-axis test with strict inequalities, so a triangle that only touches a box's boundary
  (a face lying exactly on a grid plane, an edge along a grid line) marks nothing. Triangles whose
  bounding box spans more than one voxel along at most one axis overlap every voxel of that range,
  which settles most triangles of a detailed mesh without running the full test.
* **Inside**: a voxel centre is inside when the generalized winding number (Jacobson et al. 2013)
  satisfies ``|w| >= 0.5``. The absolute value makes fully inverted meshes (``w = -1`` inside) fill
  like outward-facing ones. The field only jumps across the surface, so for a closed mesh (every
  directed edge matched by its reverse) it is constant on each connected region of voxels whose
  *closed* boxes no triangle touches: one centre per region is evaluated (by casting a ray), and a
  voxel touched but not crossed takes the value of an untouched neighbour. Closed parts with a
  negative signed volume are reversed first, so an inverted part overlapping another does not
  cancel it (1 + -1 = 0). For an open mesh (holes, mixed orientation) the field varies smoothly: it
  is sampled at every second centre, blocks of voxels no triangle touches whose samples all lie well
  on one side of 0.5 take their answer, and every other centre is evaluated. Groups of triangles far
  from a centre count by their dipole (after Barill et al. 2018; dense meshes use two levels of
  groups), near ones exactly; the error is about 0.02 at most, which only matters where ``|w|`` is
  within that of 0.5.

The inner loops run compiled by numba (cached on disk after the first call); without numba, or with
``VOXGAN_NO_NUMBA=1``, vectorised numpy code gives the same occupancy, 10-20 times slower.
"""

from __future__ import annotations

import functools
import math
import os
import types

import numpy as np

from voxgan.errors import VoxganError

MODES = ("solid", "surface")
PAIR_CHUNK = 1 << 17  # triangle/voxel pairs per block of the separating-axis test
WINDING_CHUNK = 1 << 14  # point/triangle pairs per block of the winding-number sum
CLUSTER_CELL = 2.0  # smallest side, in voxels, of the groups of triangles an open mesh's winding sum uses
CLUSTER_BETA = 2.0  # a group counts as far beyond this many times its radius
EXACT_PAIRS = 1 << 18  # without numba, below this many point/triangle pairs the plain exact sum is used
SUBGROUP_TRIANGLES = 8  # triangles a small group of an open mesh's winding sum aims at
LARGE_GROUP_BETA = 2.5  # with numba, a large group of an open mesh counts as far beyond this many radii
SUBGROUP_BETA = 3.0  # small groups count by their dipole beyond this many radii (their error adds up)
OPEN_MARGIN = 0.25  # lattice samples of an open mesh decide a block when this far from ±0.5
RAY_MIN_FACES = 1000  # below this many faces the vectorised solid-angle sum beats casting rays


def voxelize(vertices: np.ndarray, faces: np.ndarray, resolution: int, mode: str = "solid") -> np.ndarray:
    """Occupancy of a triangle mesh given in grid coordinates.

    Parameters
    ----------
    vertices : (V, 3) float
        Vertex positions already in grid coordinates.
    faces : (F, 3) int
        Vertex indices of each triangle, any orientation.
    resolution : int
        R, the grid's size along each axis.
    mode : {"solid", "surface"}
        ``solid`` is surface | inside; ``surface`` is the overlap test alone.

    Returns
    -------
    occupancy : (R, R, R) bool
        Indexed ``[x, y, z]``.

    Examples
    --------
    >>> import trimesh
    >>> box = trimesh.creation.box(extents=(8, 8, 8))
    >>> occupancy = voxelize(box.vertices + 8.0, box.faces, 16)  # the box spans voxels 4..11
    >>> int(occupancy.sum())
    512
    """
    if mode not in MODES:
        raise VoxganError(f"unknown voxelization mode {mode!r}; use one of {', '.join(MODES)}")
    triangles, faces = mesh_triangles(vertices, faces)
    surface, touched = overlap_masks(triangles, check_resolution(resolution))
    if mode == "surface":
        return surface
    return surface | inside_mask(triangles, faces, surface, touched, skip=surface)


def surface_voxels(vertices: np.ndarray, faces: np.ndarray, resolution: int) -> np.ndarray:
    """Voxels whose open box a triangle passes through.

    vertices : (V, 3) float in grid coordinates; faces : (F, 3) int  ->  (R, R, R) bool.
    A triangle touching only a box's boundary does not mark it.
    """
    surface, _ = overlap_masks(mesh_triangles(vertices, faces)[0], check_resolution(resolution))
    return surface


def touched_voxels(vertices: np.ndarray, faces: np.ndarray, resolution: int) -> np.ndarray:
    """Voxels whose closed box a triangle touches (a superset of :func:`surface_voxels`).

    vertices : (V, 3) float in grid coordinates; faces : (F, 3) int  ->  (R, R, R) bool.
    """
    _, touched = overlap_masks(mesh_triangles(vertices, faces)[0], check_resolution(resolution))
    return touched


def inside_voxels(
    vertices: np.ndarray, faces: np.ndarray, resolution: int, *, surface: np.ndarray | None = None
) -> np.ndarray:
    """Voxels whose centre has generalized winding number ``|w| >= 0.5``.

    Parameters
    ----------
    vertices : (V, 3) float
        Vertex positions in grid coordinates.
    faces : (F, 3) int
        Triangles, any orientation.
    resolution : int
        R.
    surface : (R, R, R) bool, optional
        Voxels whose answer is not needed, reported False (typically :func:`surface_voxels` of the
        same mesh, occupied anyway in solid mode); leaving them out saves time.

    Returns
    -------
    inside : (R, R, R) bool
    """
    resolution = check_resolution(resolution)
    triangles, faces = mesh_triangles(vertices, faces)
    surface_mask, touched = overlap_masks(triangles, resolution)
    return inside_mask(triangles, faces, surface_mask, touched, skip=surface)


def inside_mask(
    triangles: np.ndarray,
    faces: np.ndarray,
    surface: np.ndarray,
    touched: np.ndarray,
    skip: np.ndarray | None = None,
) -> np.ndarray:
    """The work of :func:`inside_voxels` once the overlap masks are known.

    triangles : (F, 3, 3) in grid coordinates; faces : (F0, 3) int, the mesh's faces (for
    :func:`is_closed`); surface, touched : (R, R, R) bool from :func:`overlap_masks`;
    skip : (R, R, R) bool, voxels not evaluated (reported False), or None  ->  inside : (R, R, R) bool.
    """
    shape = touched.shape
    assert len(shape) == 3 and shape[0] == shape[1] == shape[2] and surface.shape == shape, shape
    r = shape[0]
    wanted = np.ones(shape, dtype=bool) if skip is None else ~skip
    if len(triangles) == 0:
        return np.zeros(shape, dtype=bool)
    if not is_closed(faces):
        front = front_faces(faces)
        if not front.all():  # back faces cancel their fronts: w = 0 everywhere without this
            return inside_mask(triangles[front], faces[front], surface, touched, skip)
        return open_inside(triangles, touched, wanted)
    triangles = outward_parts(triangles, faces)
    from scipy import ndimage

    regions, count = ndimage.label(~touched)  # 6-connected regions of untouched voxels
    # A voxel no triangle passes through takes the value of an untouched 6-neighbour: the segment
    # between their centres runs through its open box and the neighbour's closed box, both empty.
    adopted = np.where(touched & ~surface, neighbour_label(regions), regions)
    flat = adopted.reshape(-1)
    region_winding = np.full(count + 1, np.nan)
    region_winding[np.unique(flat[outside_box_centres(triangles, r).reshape(-1)])] = 0.0
    representative = np.zeros(count + 1, dtype=np.int64)
    representative[flat] = np.arange(flat.size)
    unknown = np.flatnonzero(np.isnan(region_winding[1:])) + 1
    region_winding[unknown] = closed_winding_numbers(voxel_centres(representative[unknown], r), triangles)
    inside = np.abs(region_winding[flat]) >= 0.5
    singles = np.flatnonzero((flat == 0) & wanted.reshape(-1))
    inside[singles] = np.abs(closed_winding_numbers(voxel_centres(singles, r), triangles)) >= 0.5
    if not inside.any():  # a closed mesh with nothing inside may be double-sided
        front = front_faces(faces)
        if not front.all():
            return inside_mask(triangles[front], faces[front], surface, touched, skip)
    return inside.reshape(shape) & wanted


def open_inside(triangles: np.ndarray, touched: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Inside test of an open mesh: winding numbers on a coarse lattice, exact sums only where needed.

    triangles : (F, 3, 3); touched, wanted : (R, R, R) bool  ->  inside : (R, R, R) bool, False
    outside ``wanted``. The lattice takes every second centre along each axis (and the last one). A
    block of up to 3 × 3 × 3 voxels between eight lattice samples takes their answer when no triangle
    touches the block and the eight winding numbers lie on the same side of ±0.5 by at least
    ``OPEN_MARGIN``: the field is harmonic there and varies by less than that between samples. Every
    other wanted voxel is evaluated at its own centre.
    """
    r = touched.shape[0]
    winding = open_winding_function(triangles, cell=max(CLUSTER_CELL, r / 16))
    lattice = np.unique(np.append(np.arange(0, r, 2), r - 1))  # (L,) voxel indices of the samples
    inside = np.zeros(touched.shape, dtype=bool)
    decided = np.zeros(touched.shape, dtype=bool)
    if len(lattice) >= 3:
        # clean[a, b, c]: no touched voxel in the block from lattice sample (a, b, c) to (a+1, b+1, c+1)
        prefix = np.pad(touched.cumsum(0).cumsum(1).cumsum(2), ((1, 0), (1, 0), (1, 0)))
        lo, hi = lattice[:-1], lattice[1:] + 1  # block voxels lo..hi-1 along an axis
        x0, y0, z0 = np.ix_(lo, lo, lo)
        x1, y1, z1 = np.ix_(hi, hi, hi)
        count = (
            prefix[x1, y1, z1]
            - prefix[x0, y1, z1]
            - prefix[x1, y0, z1]
            - prefix[x1, y1, z0]
            + prefix[x0, y0, z1]
            + prefix[x0, y1, z0]
            + prefix[x1, y0, z0]
            - prefix[x0, y0, z0]
        )
        clean = count == 0  # (L-1, L-1, L-1)
        corner_needed = np.zeros((len(lattice),) * 3, dtype=bool)
        for dx in (0, 1):
            for dy in (0, 1):
                for dz in (0, 1):
                    corner_needed[
                        dx : dx + len(lattice) - 1, dy : dy + len(lattice) - 1, dz : dz + len(lattice) - 1
                    ] |= clean
        sample_index = np.flatnonzero(corner_needed)
        if len(sample_index):
            a, b, c = np.unravel_index(sample_index, corner_needed.shape)
            centres = np.stack([lattice[a], lattice[b], lattice[c]], axis=1) + 0.5
            sampled = np.zeros(corner_needed.shape)
            sampled[a, b, c] = winding(centres)
            side = np.where(
                sampled >= 0.5 + OPEN_MARGIN,
                1,
                np.where(
                    sampled <= -0.5 - OPEN_MARGIN, -1, np.where(np.abs(sampled) <= 0.5 - OPEN_MARGIN, 0, 9)
                ),
            )
            n = len(lattice) - 1
            first = side[:n, :n, :n]
            agree = clean & (first != 9)
            for dx in (0, 1):
                for dy in (0, 1):
                    for dz in (0, 1):
                        agree &= side[dx : dx + n, dy : dy + n, dz : dz + n] == first
            # voxel index i lies in block i // 2 and, on a shared face, also in block (i - 1) // 2
            upper, lower = np.minimum(np.arange(r) // 2, n - 1), np.maximum(np.arange(r) - 1, 0) // 2
            decided, inside = agree, agree & (first != 0)
            for axis in range(3):
                decided = decided.take(upper, axis) | decided.take(lower, axis)
                inside = inside.take(upper, axis) | inside.take(lower, axis)
    points = np.flatnonzero(wanted & ~decided)
    inside = np.ascontiguousarray(inside)
    flat = inside.reshape(-1)
    flat[points] = np.abs(winding(voxel_centres(points, r))) >= 0.5
    return inside & wanted


def front_faces(faces: np.ndarray) -> np.ndarray:
    """Which faces to keep so that no face is cancelled by a copy with its corners in reverse order.

    faces : (F, 3) int  ->  (F,) bool. Double-sided meshes hold each face twice, once per side; the
    two solid angles cancel and the winding number is 0 everywhere. Among faces with the same three
    corners in both orders only the first in file order is kept, which restores the orientation of
    meshes written front face first. Faces repeated in the same order are all kept.
    """
    count = len(faces)
    corners = np.sort(faces, axis=1)
    base = int(corners[:, 2].max()) + 1 if count else 1
    if base < 1 << 20:  # three corners in one int64: a quick answer when no two faces share all three
        keys = np.sort((corners[:, 0] * base + corners[:, 1]) * base + corners[:, 2])
        if not (keys[1:] == keys[:-1]).any():
            return np.ones(count, dtype=bool)
    forward = all_axes(faces == corners) | all_axes(faces == corners[:, [1, 2, 0]])
    forward |= all_axes(faces == corners[:, [2, 0, 1]])
    order = np.lexsort((np.arange(count), corners[:, 2], corners[:, 1], corners[:, 0]))
    sorted_corners = corners[order]
    starts = np.flatnonzero(np.concatenate([[True], any_axis(sorted_corners[1:] != sorted_corners[:-1])]))
    has_forward = np.logical_or.reduceat(forward[order], starts)
    has_backward = np.logical_or.reduceat(~forward[order], starts)
    group = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, count)))
    first_in_group = np.zeros(count, dtype=bool)
    first_in_group[starts] = True
    keep_sorted = ~(has_forward & has_backward)[group] | first_in_group
    keep = np.empty(count, dtype=bool)
    keep[order] = keep_sorted
    return keep


def neighbour_label(regions: np.ndarray) -> np.ndarray:
    """Largest label among each voxel's six face neighbours: (R, R, R) int  ->  (R, R, R) int."""
    padded = np.pad(regions, 1)
    r = regions.shape[0]
    best = np.zeros_like(regions)
    for axis in range(3):
        for step in (0, 2):
            index = [slice(1, r + 1)] * 3
            index[axis] = slice(step, step + r)
            np.maximum(best, padded[tuple(index)], out=best)
    return best


def outside_box_centres(triangles: np.ndarray, resolution: int) -> np.ndarray:
    """Voxel centres outside the triangles' bounding box, where the winding number is 0.

    triangles : (F, 3, 3) non-empty  ->  (R, R, R) bool.
    """
    centres = np.arange(resolution) + 0.5
    out = [(centres < triangles[:, :, a].min()) | (centres > triangles[:, :, a].max()) for a in range(3)]
    return out[0][:, None, None] | out[1][None, :, None] | out[2][None, None, :]


def closed_winding_numbers(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Winding number of a closed mesh by signed crossings of a ray along +z from each point.

    points : (P, 3); triangles : (F, 3, 3)  ->  (P,) float64. A ray that grazes an edge or a vertex,
    or a point on the surface, falls back to the exact solid-angle sum (:func:`winding_numbers`), which
    small meshes use throughout.
    """
    kernels = compiled_kernels()
    if kernels is not None:
        result = np.empty(len(points))
        kernels.crossings(
            np.ascontiguousarray(points, dtype=np.float64), np.ascontiguousarray(triangles), result
        )
        grazing = np.flatnonzero(np.isnan(result))
        result[grazing] = winding_numbers(points[grazing], triangles)
        return result
    if len(triangles) <= RAY_MIN_FACES:
        return winding_numbers(points, triangles)
    x, y, z = triangles[:, :, 0], triangles[:, :, 1], triangles[:, :, 2]  # (F, 3) each
    low, high = corner_min(triangles), corner_max(triangles)
    x_low, y_low = low[:, 0], low[:, 1]
    x_high, y_high, z_high = high[:, 0], high[:, 1], high[:, 2]
    result = np.zeros(len(points))
    for n, (px, py, pz) in enumerate(points):
        column = (x_low <= px) & (x_high >= px) & (y_low <= py) & (y_high >= py)
        near = np.flatnonzero(column & (z_high >= pz))
        tx, ty, tz = x[near], y[near], z[near]
        nx, ny = tx[:, [1, 2, 0]], ty[:, [1, 2, 0]]
        edge = (nx - tx) * (py - ty) - (ny - ty) * (px - tx)  # (n, 3): edge m, from corner m to m+1
        inside = (edge > 0).all(axis=1) | (edge < 0).all(axis=1)
        grazing = (((edge >= 0).all(axis=1) | (edge <= 0).all(axis=1)) & ~inside).any()
        area = edge.sum(axis=1)  # twice the signed projected area
        hit_z = (edge[inside] * tz[inside][:, [2, 0, 1]]).sum(axis=1) / area[inside]
        if grazing or (hit_z == pz).any():
            result[n] = winding_numbers(points[n : n + 1], triangles)[0]
        else:
            result[n] = np.sign(area[inside][hit_z > pz]).sum()
    return result


def voxel_centres(flat_indices: np.ndarray, resolution: int) -> np.ndarray:
    """Centres of voxels given by C-order flat index: (N,) int  ->  (N, 3) float64."""
    return np.stack(np.unravel_index(flat_indices, (resolution,) * 3), axis=1) + 0.5


def check_resolution(resolution: int) -> int:
    """The resolution as an int; VoxganError unless it is a positive integer."""
    if int(resolution) != resolution or resolution < 1:
        raise VoxganError(f"resolution must be a positive integer, got {resolution!r}")
    return int(resolution)


def mesh_triangles(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Corner positions of each finite triangle.

    vertices : (V, 3) float; faces : (F, 3) int  ->  (triangles : (F', 3, 3) float64, faces : (F', 3)
    int64), F' <= F, with triangles holding a NaN or infinite corner left out.
    """
    vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise VoxganError(f"face indices must lie in [0, {len(vertices)}); the mesh is corrupt")
    finite = all_axes(np.isfinite(vertices))
    if not finite.all():
        faces = faces[all_axes(finite[faces])]
    return np.take(vertices, faces, axis=0), faces  # take: several times faster than vertices[faces]


def outward_parts(triangles: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Reverse the closed parts of a closed mesh whose signed volume is negative.

    triangles : (F, 3, 3); faces : (F, 3) int, a mesh for which :func:`is_closed` holds  ->  (F, 3, 3).
    Parts are the sets of faces connected through shared vertices. An inverted part across another
    would otherwise cancel its winding number (1 + -1 = 0) where they overlap. An inverted part whose
    every sampled corner lies inside the other parts bounds a cavity (a hollow shape) and is kept.
    """
    parts, part_of_vertex = vertex_parts(faces)
    if parts == 1:  # |w| makes the orientation of a single part irrelevant
        return triangles
    a, b, c = triangles[:, 0], triangles[:, 1], triangles[:, 2]
    volume6 = (
        a[:, 0] * (b[:, 1] * c[:, 2] - b[:, 2] * c[:, 1])
        - a[:, 1] * (b[:, 0] * c[:, 2] - b[:, 2] * c[:, 0])
        + a[:, 2] * (b[:, 0] * c[:, 1] - b[:, 1] * c[:, 0])
    )
    part_of_face = part_of_vertex[faces[:, 0]]
    inverted = np.bincount(part_of_face, weights=volume6, minlength=parts) < 0
    for part in np.flatnonzero(inverted):  # an inverted part wholly inside another part is a cavity
        corners = np.unique(faces[part_of_face == part])
        points = triangles[part_of_face == part].reshape(-1, 3)[:: max(1, 3 * len(corners) // 32)]
        inverted[part] = not (np.abs(winding_numbers(points, triangles[part_of_face != part])) >= 0.5).all()
    flip = inverted[part_of_face]
    if not flip.any():
        return triangles
    triangles = triangles.copy()
    triangles[flip] = triangles[flip][:, [0, 2, 1]]
    return triangles


def vertex_parts(faces: np.ndarray) -> tuple[int, np.ndarray]:
    """Connected parts of the vertices 0..max(faces), linked by the faces' edges.

    faces : (F, 3) int, non-empty  ->  (parts, part_of_vertex : (V,) int in [0, parts)); a vertex no
    face uses is a part of its own.
    """
    count = int(faces.max()) + 1
    kernels = compiled_kernels()
    if kernels is not None:
        part_of_vertex = np.empty(count, dtype=np.int64)
        parts = kernels.parts(np.ascontiguousarray(faces, dtype=np.int64), part_of_vertex)
        return int(parts), part_of_vertex
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    links = coo_matrix(
        (np.ones(2 * len(faces)), (faces[:, [0, 0]].T.reshape(-1), faces[:, 1:].T.reshape(-1))),
        shape=(count, count),
    )
    return connected_components(links.tocsr(), directed=False)


def is_closed(faces: np.ndarray) -> bool:
    """Whether every directed edge (a, b) appears as often as its reverse (b, a).

    faces : (F, 3) int. Such a mesh bounds its volume: its winding number is an integer that only
    changes across the surface. Holes, open edges and mixed orientation make this False.
    """
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    tails = faces.reshape(-1)
    heads = faces[:, [1, 2, 0]].reshape(-1)
    base = int(faces.max()) + 1 if len(faces) else 1
    forward = np.sort(tails * base + heads)
    backward = np.sort(heads * base + tails)
    return bool(np.array_equal(forward, backward))


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
        la = np.sqrt(ax * ax + ay * ay + az * az)
        lb = np.sqrt(bx * bx + by * by + bz * bz)
        lc = np.sqrt(cx * cx + cy * cy + cz * cz)
        det = ax * (by * cz - bz * cy) + ay * (bz * cx - bx * cz) + az * (bx * cy - by * cx)
        dots = (
            la * lb * lc
            + (ax * bx + ay * by + az * bz) * lc
            + (bx * cx + by * cy + bz * cz) * la
            + (cx * ax + cy * ay + cz * az) * lb
        )
        total[start : start + step] = np.arctan2(det, dots).sum(axis=1) / (2 * np.pi)
    return total


def clustered_winding_numbers(
    points: np.ndarray, triangles: np.ndarray, cell: float = CLUSTER_CELL, beta: float = CLUSTER_BETA
) -> np.ndarray:
    """Winding numbers with far groups of triangles replaced by their dipole (after Barill et al. 2018).

    points : (P, 3); triangles : (F, 3, 3)  ->  (P,) float64. Triangles are grouped by the cube of
    side ``cell`` holding their centroid. A group farther than ``beta`` times its radius from a
    point contributes ``N · (c - p) / (4π |c - p|³)`` (N its area-weighted normal, c its
    area-weighted centroid); nearer groups are summed exactly.
    """
    result = np.zeros(len(points))
    if len(triangles) == 0 or len(points) == 0:
        return result
    kernels = compiled_kernels()
    if kernels is None and len(triangles) * len(points) <= EXACT_PAIRS:
        return winding_numbers(points, triangles)
    centroids = (triangles[:, 0] + triangles[:, 1] + triangles[:, 2]) / 3
    cells = np.floor(centroids / cell).astype(np.int64)
    cells -= cells.min(axis=0)
    span = cells.max(axis=0) + 1
    keys = (cells[:, 0] * span[1] + cells[:, 1]) * span[2] + cells[:, 2]
    order = np.argsort(keys, kind="stable")
    triangles, centroids, keys = triangles[order], centroids[order], keys[order]
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    ends = np.append(starts[1:], len(keys))
    vector_area = 0.5 * np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    area = np.sqrt((vector_area**2).sum(axis=1)) + 1e-300
    group_normal = np.add.reduceat(vector_area, starts, axis=0)  # (G, 3)
    group_centre = (
        np.add.reduceat(centroids * area[:, None], starts, axis=0) / np.add.reduceat(area, starts)[:, None]
    )
    group_of = np.repeat(np.arange(len(starts)), ends - starts)
    corner_distance = np.sqrt(((triangles - group_centre[group_of][:, None, :]) ** 2).sum(axis=2)).max(axis=1)
    group_radius = np.maximum.reduceat(corner_distance, starts)
    if kernels is not None:
        kernels.clustered(
            np.ascontiguousarray(points, dtype=np.float64),
            np.ascontiguousarray(triangles),
            starts,
            ends,
            group_centre,
            group_normal,
            beta * group_radius,
            result,
        )
        return result
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


def open_winding_function(triangles: np.ndarray, cell: float):
    """A function from points (P, 3) to winding numbers (P,) of the triangles (F, 3, 3).

    With numba, triangles are grouped once on two levels (cubes of side ``cell``, and cubes of side
    ``cell / s`` within them, s chosen so that a small group holds about ``SUBGROUP_TRIANGLES``):
    a far group counts by its dipole, a near large group by its small groups, a near small group
    triangle by triangle. Without numba, :func:`clustered_winding_numbers`.
    """
    kernels = compiled_kernels()
    if kernels is None or len(triangles) == 0:
        return lambda points: clustered_winding_numbers(points, triangles, cell=cell)
    centroids = (triangles[:, 0] + triangles[:, 1] + triangles[:, 2]) / 3
    large = np.floor(centroids / cell).astype(np.int64)
    large -= large.min(axis=0)
    span = large.max(axis=0) + 1
    large_count = len(np.unique((large[:, 0] * span[1] + large[:, 1]) * span[2] + large[:, 2]))
    split = 1
    while len(triangles) / large_count / (split * split) > SUBGROUP_TRIANGLES and split < 8:
        split *= 2
    small = np.floor(centroids * (split / cell)).astype(np.int64)
    small -= small.min(axis=0) // split * split
    large = small // split
    span = large.max(axis=0) + 1
    local = small % split
    keys = ((large[:, 0] * span[1] + large[:, 1]) * span[2] + large[:, 2]) * split**3 + (
        (local[:, 0] * split + local[:, 1]) * split + local[:, 2]
    )
    order = np.argsort(keys, kind="stable")
    triangles, keys = np.ascontiguousarray(triangles[order]), keys[order]
    large_keys = keys // split**3
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))  # small groups
    ends = np.append(starts[1:], len(keys))
    large_starts = np.flatnonzero(np.concatenate([[True], large_keys[starts[1:]] != large_keys[starts[:-1]]]))
    large_ends = np.append(large_starts[1:], len(starts))  # large group g: small groups in that range
    small_centre, small_normal, small_radius = (
        np.empty((len(starts), 3)),
        np.empty((len(starts), 3)),
        np.empty(len(starts)),
    )
    kernels.moments(triangles, starts, ends, small_centre, small_normal, small_radius)
    large_first = starts[large_starts]
    large_last = np.append(large_first[1:], len(triangles))
    large_centre, large_normal = np.empty((len(large_first), 3)), np.empty((len(large_first), 3))
    large_radius = np.empty(len(large_first))
    kernels.moments(triangles, large_first, large_last, large_centre, large_normal, large_radius)
    # one level (split 1) is the plain clustered sum; two levels add up more dipoles, so they count
    # only farther groups by theirs, which keeps the error below the one-level sum's
    large_far = (CLUSTER_BETA if split == 1 else LARGE_GROUP_BETA) * large_radius
    small_far = (CLUSTER_BETA if split == 1 else SUBGROUP_BETA) * small_radius

    def winding(points: np.ndarray) -> np.ndarray:
        result = np.zeros(len(points))
        if len(points):
            kernels.two_level(
                np.ascontiguousarray(points, dtype=np.float64),
                triangles,
                large_starts,
                large_ends,
                large_centre,
                large_normal,
                large_far,
                starts,
                ends,
                small_centre,
                small_normal,
                small_far,
                result,
            )
        return result

    return winding


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


@functools.cache
def compiled_kernels():
    """The numba-compiled loops (compiled once, cached on disk), or None without numba."""
    if os.environ.get("VOXGAN_NO_NUMBA") == "1":
        return None
    try:
        import numba
    except ImportError:
        return None
    jit = numba.njit(cache=True, nogil=True)
    return types.SimpleNamespace(
        overlap=jit(overlap_loop),
        crossings=jit(crossing_loop),
        clustered=jit(clustered_winding_loop),
        two_level=jit(two_level_winding_loop),
        moments=jit(group_moments_loop),
        parts=jit(vertex_parts_loop),
    )


def overlap_loop(triangles, resolution, surface, touched):  # compiled by numba: scalar code on purpose
    """Mark surface (open-box overlap) and touched (closed-box contact) voxels of each triangle in place.

    triangles : (F, 3, 3) float64; surface, touched : (R, R, R) bool. The same rules as
    :func:`overlap_masks_numpy`: the closed index range, the one-axis shortcut for triangles off the
    grid planes, then the separating-axis test with strict (open) and non-strict (closed) bounds.
    """
    r = resolution
    lo = np.empty(3, np.int64)
    hi = np.empty(3, np.int64)
    rel = np.empty((3, 3))
    edge = np.empty((3, 3))
    for t in range(triangles.shape[0]):
        inside_grid, generic, many = True, True, 0
        for a in range(3):
            low = min(triangles[t, 0, a], triangles[t, 1, a], triangles[t, 2, a])
            high = max(triangles[t, 0, a], triangles[t, 1, a], triangles[t, 2, a])
            first, last = math.ceil(low) - 1.0, math.floor(high)
            if last < 0 or first > r - 1:
                inside_grid = False
                break
            if math.ceil(low) == low or math.floor(high) == high:
                generic = False
            if last > first:
                many += 1
            lo[a], hi[a] = int(max(first, 0.0)), int(min(last, r - 1.0))
        if not inside_grid:
            continue
        if generic and many <= 1:
            for i in range(lo[0], hi[0] + 1):
                for j in range(lo[1], hi[1] + 1):
                    for k in range(lo[2], hi[2] + 1):
                        surface[i, j, k] = True
                        touched[i, j, k] = True
            continue
        for m in range(3):
            for a in range(3):
                edge[m, a] = triangles[t, (m + 1) % 3, a] - triangles[t, m, a]
        nx = edge[0, 1] * edge[1, 2] - edge[0, 2] * edge[1, 1]
        ny = edge[0, 2] * edge[1, 0] - edge[0, 0] * edge[1, 2]
        nz = edge[0, 0] * edge[1, 1] - edge[0, 1] * edge[1, 0]
        normal_radius = 0.5 * (abs(nx) + abs(ny) + abs(nz))
        for i in range(lo[0], hi[0] + 1):
            for j in range(lo[1], hi[1] + 1):
                for k in range(lo[2], hi[2] + 1):
                    for m in range(3):
                        rel[m, 0] = triangles[t, m, 0] - (i + 0.5)
                        rel[m, 1] = triangles[t, m, 1] - (j + 0.5)
                        rel[m, 2] = triangles[t, m, 2] - (k + 0.5)
                    open_apart = closed_apart = False
                    for a in range(3):
                        low = min(rel[0, a], rel[1, a], rel[2, a])
                        high = max(rel[0, a], rel[1, a], rel[2, a])
                        open_apart |= low >= 0.5 or high <= -0.5
                        closed_apart |= low > 0.5 or high < -0.5
                    along = rel[0, 0] * nx + rel[0, 1] * ny + rel[0, 2] * nz
                    closed_apart |= abs(along) > normal_radius
                    open_apart |= normal_radius > 0 and abs(along) >= normal_radius
                    for m in range(3):  # edge m × unit axis u: a point v projects to (v × edge)_u
                        if closed_apart:
                            break
                        ex, ey, ez = edge[m, 0], edge[m, 1], edge[m, 2]
                        o = (m + 2) % 3
                        for u in range(3):
                            if u == 0:
                                p1 = rel[m, 1] * ez - rel[m, 2] * ey
                                p2 = rel[o, 1] * ez - rel[o, 2] * ey
                                radius = 0.5 * (abs(ey) + abs(ez))
                            elif u == 1:
                                p1 = rel[m, 2] * ex - rel[m, 0] * ez
                                p2 = rel[o, 2] * ex - rel[o, 0] * ez
                                radius = 0.5 * (abs(ex) + abs(ez))
                            else:
                                p1 = rel[m, 0] * ey - rel[m, 1] * ex
                                p2 = rel[o, 0] * ey - rel[o, 1] * ex
                                radius = 0.5 * (abs(ex) + abs(ey))
                            low, high = min(p1, p2), max(p1, p2)
                            closed_apart |= low > radius or high < -radius
                            open_apart |= radius > 0 and (low >= radius or high <= -radius)
                    if not closed_apart:
                        touched[i, j, k] = True
                        if not open_apart:
                            surface[i, j, k] = True


def crossing_loop(points, triangles, result):  # compiled by numba
    """Signed crossings of a +z ray from each point with the triangles, written to result in place.

    points : (P, 3); triangles : (F, 3, 3); result : (P,) float64, set to NaN where the ray grazes
    an edge or a vertex or the point lies on the surface (the caller then sums solid angles).
    """
    for n in range(points.shape[0]):
        px, py, pz = points[n, 0], points[n, 1], points[n, 2]
        total = 0.0
        for t in range(triangles.shape[0]):
            x0, y0 = triangles[t, 0, 0], triangles[t, 0, 1]
            x1, y1 = triangles[t, 1, 0], triangles[t, 1, 1]
            x2, y2 = triangles[t, 2, 0], triangles[t, 2, 1]
            if px < min(x0, x1, x2) or px > max(x0, x1, x2) or py < min(y0, y1, y2) or py > max(y0, y1, y2):
                continue
            if max(triangles[t, 0, 2], triangles[t, 1, 2], triangles[t, 2, 2]) < pz:
                continue
            d0 = (x1 - x0) * (py - y0) - (y1 - y0) * (px - x0)
            d1 = (x2 - x1) * (py - y1) - (y2 - y1) * (px - x1)
            d2 = (x0 - x2) * (py - y2) - (y0 - y2) * (px - x2)
            if (d0 > 0 and d1 > 0 and d2 > 0) or (d0 < 0 and d1 < 0 and d2 < 0):
                area = d0 + d1 + d2
                z = (d0 * triangles[t, 2, 2] + d1 * triangles[t, 0, 2] + d2 * triangles[t, 1, 2]) / area
                if z == pz:
                    total = np.nan
                    break
                if z > pz:
                    total += 1.0 if area > 0 else -1.0
            elif (d0 >= 0 and d1 >= 0 and d2 >= 0) or (d0 <= 0 and d1 <= 0 and d2 <= 0):
                total = np.nan
                break
        result[n] = total


def clustered_winding_loop(points, triangles, starts, ends, centres, normals, far_beyond, result):  # numba
    """:func:`clustered_winding_numbers` once the groups are built; writes (P,) winding numbers to result.

    triangles : (F, 3, 3) sorted by group; group g is triangles[starts[g]:ends[g]], with area-weighted
    centre centres[g], area-weighted normal normals[g] and dipole distance far_beyond[g].
    """
    for n in range(points.shape[0]):
        px, py, pz = points[n, 0], points[n, 1], points[n, 2]
        solid = 0.0
        for g in range(starts.shape[0]):
            dx, dy, dz = centres[g, 0] - px, centres[g, 1] - py, centres[g, 2] - pz
            distance = math.sqrt(dx * dx + dy * dy + dz * dz)
            if distance > far_beyond[g]:
                solid += (dx * normals[g, 0] + dy * normals[g, 1] + dz * normals[g, 2]) / distance**3
                continue
            for t in range(starts[g], ends[g]):
                ax, ay, az = triangles[t, 0, 0] - px, triangles[t, 0, 1] - py, triangles[t, 0, 2] - pz
                bx, by, bz = triangles[t, 1, 0] - px, triangles[t, 1, 1] - py, triangles[t, 1, 2] - pz
                cx, cy, cz = triangles[t, 2, 0] - px, triangles[t, 2, 1] - py, triangles[t, 2, 2] - pz
                la = math.sqrt(ax * ax + ay * ay + az * az)
                lb = math.sqrt(bx * bx + by * by + bz * bz)
                lc = math.sqrt(cx * cx + cy * cy + cz * cz)
                det = ax * (by * cz - bz * cy) + ay * (bz * cx - bx * cz) + az * (bx * cy - by * cx)
                dots = (
                    la * lb * lc
                    + (ax * bx + ay * by + az * bz) * lc
                    + (bx * cx + by * cy + bz * cz) * la
                    + (cx * ax + cy * ay + cz * az) * lb
                )
                solid += 2.0 * math.atan2(det, dots)
        result[n] = solid / (4.0 * math.pi)


def vertex_parts_loop(faces, part_of_vertex):  # compiled by numba
    """Union-find over the faces' edges; writes compact part labels to part_of_vertex, returns the count.

    faces : (F, 3) int64; part_of_vertex : (V,) int64 with V > faces.max().
    """
    parent = np.arange(part_of_vertex.shape[0])
    for f in range(faces.shape[0]):
        for m in (1, 2):
            a, b = faces[f, 0], faces[f, m]
            while parent[a] != a:
                parent[a] = parent[parent[a]]
                a = parent[a]
            while parent[b] != b:
                parent[b] = parent[parent[b]]
                b = parent[b]
            if a != b:
                parent[max(a, b)] = min(a, b)
    parts = 0
    for v in range(parent.shape[0]):  # a root is its own lowest vertex, met before its other vertices
        root = v
        while parent[root] != root:
            root = parent[root]
        if root == v:
            part_of_vertex[v] = parts
            parts += 1
        else:
            part_of_vertex[v] = part_of_vertex[root]
    return parts


def group_moments_loop(triangles, starts, ends, centres, normals, radii):  # compiled by numba
    """Area-weighted centre, area-weighted normal and radius of each group of triangles, in place.

    triangles : (F, 3, 3); group g is triangles[starts[g]:ends[g]]; centres, normals : (G, 3) and
    radii : (G,) are written (radius: largest distance from the centre to a corner).
    """
    for g in range(starts.shape[0]):
        sx = sy = sz = nx = ny = nz = total = 0.0
        for t in range(starts[g], ends[g]):
            ux = triangles[t, 1, 0] - triangles[t, 0, 0]
            uy = triangles[t, 1, 1] - triangles[t, 0, 1]
            uz = triangles[t, 1, 2] - triangles[t, 0, 2]
            vx = triangles[t, 2, 0] - triangles[t, 0, 0]
            vy = triangles[t, 2, 1] - triangles[t, 0, 1]
            vz = triangles[t, 2, 2] - triangles[t, 0, 2]
            ax, ay, az = 0.5 * (uy * vz - uz * vy), 0.5 * (uz * vx - ux * vz), 0.5 * (ux * vy - uy * vx)
            area = math.sqrt(ax * ax + ay * ay + az * az) + 1e-300
            nx += ax
            ny += ay
            nz += az
            total += area
            sx += area * (triangles[t, 0, 0] + triangles[t, 1, 0] + triangles[t, 2, 0]) / 3.0
            sy += area * (triangles[t, 0, 1] + triangles[t, 1, 1] + triangles[t, 2, 1]) / 3.0
            sz += area * (triangles[t, 0, 2] + triangles[t, 1, 2] + triangles[t, 2, 2]) / 3.0
        cx, cy, cz = sx / total, sy / total, sz / total
        radius = 0.0
        for t in range(starts[g], ends[g]):
            for m in range(3):
                dx, dy, dz = triangles[t, m, 0] - cx, triangles[t, m, 1] - cy, triangles[t, m, 2] - cz
                radius = max(radius, math.sqrt(dx * dx + dy * dy + dz * dz))
        centres[g, 0], centres[g, 1], centres[g, 2] = cx, cy, cz
        normals[g, 0], normals[g, 1], normals[g, 2] = nx, ny, nz
        radii[g] = radius


def two_level_winding_loop(
    points,
    triangles,
    large_starts,
    large_ends,
    large_centres,
    large_normals,
    large_far,
    starts,
    ends,
    centres,
    normals,
    far_beyond,
    result,
):  # compiled by numba
    """:func:`open_winding_function`'s sum; writes (P,) winding numbers to result.

    Large group g holds small groups large_starts[g]:large_ends[g]; small group h holds triangles
    starts[h]:ends[h]. Each group has an area-weighted centre, normal and dipole distance.
    """
    for n in range(points.shape[0]):
        px, py, pz = points[n, 0], points[n, 1], points[n, 2]
        solid = 0.0
        for g in range(large_starts.shape[0]):
            dx, dy, dz = large_centres[g, 0] - px, large_centres[g, 1] - py, large_centres[g, 2] - pz
            distance = math.sqrt(dx * dx + dy * dy + dz * dz)
            if distance > large_far[g]:
                solid += (dx * large_normals[g, 0] + dy * large_normals[g, 1] + dz * large_normals[g, 2]) / (
                    distance * distance * distance
                )
                continue
            for h in range(large_starts[g], large_ends[g]):
                dx, dy, dz = centres[h, 0] - px, centres[h, 1] - py, centres[h, 2] - pz
                distance = math.sqrt(dx * dx + dy * dy + dz * dz)
                if distance > far_beyond[h]:
                    solid += (dx * normals[h, 0] + dy * normals[h, 1] + dz * normals[h, 2]) / (
                        distance * distance * distance
                    )
                    continue
                for t in range(starts[h], ends[h]):
                    ax, ay, az = triangles[t, 0, 0] - px, triangles[t, 0, 1] - py, triangles[t, 0, 2] - pz
                    bx, by, bz = triangles[t, 1, 0] - px, triangles[t, 1, 1] - py, triangles[t, 1, 2] - pz
                    cx, cy, cz = triangles[t, 2, 0] - px, triangles[t, 2, 1] - py, triangles[t, 2, 2] - pz
                    la = math.sqrt(ax * ax + ay * ay + az * az)
                    lb = math.sqrt(bx * bx + by * by + bz * bz)
                    lc = math.sqrt(cx * cx + cy * cy + cz * cz)
                    det = ax * (by * cz - bz * cy) + ay * (bz * cx - bx * cz) + az * (bx * cy - by * cx)
                    dots = (
                        la * lb * lc
                        + (ax * bx + ay * by + az * bz) * lc
                        + (bx * cx + by * cy + bz * cz) * la
                        + (cx * ax + cy * ay + cz * az) * lb
                    )
                    solid += 2.0 * math.atan2(det, dots)
        result[n] = solid / (4.0 * math.pi)


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


def resample_occupancy(occupancy: np.ndarray, voxel_to_grid: np.ndarray, resolution: int) -> np.ndarray:
    """Resample a voxel grid (for example a binvox file) onto our grid.

    Parameters
    ----------
    occupancy : (D, D, D) bool
        Source voxels; source voxel (a, b, c) spans [a, a+1] × [b, b+1] × [c, c+1] in its index
        coordinates.
    voxel_to_grid : (4, 4) float
        Affine from source index coordinates to our grid coordinates.
    resolution : int
        R.

    Returns
    -------
    occupancy : (R, R, R) bool
        A target voxel is occupied when the interior of an occupied source voxel overlaps its open
        box, so thin parts survive downsampling and a grid mapped onto itself is unchanged. Exact
        for affines that scale, translate, permute and flip axes (what binvox files hold); for
        other affines each source voxel is replaced by the bounding box of its image.
    """
    resolution = check_resolution(resolution)
    occupancy = np.asarray(occupancy, dtype=bool)
    assert occupancy.ndim == 3, occupancy.shape
    affine = np.asarray(voxel_to_grid, dtype=np.float64)
    assert affine.shape == (4, 4), affine.shape
    linear, shift = affine[:3, :3], affine[:3, 3]
    if not np.isfinite(affine).all() or abs(np.linalg.det(linear)) == 0:
        raise VoxganError("voxel-to-grid affine must be finite and invertible")
    if ((linear != 0).sum(axis=0) == 1).all() and ((linear != 0).sum(axis=1) == 1).all():
        return resample_axis_aligned(occupancy, linear, shift, resolution)
    return resample_by_boxes(occupancy, linear, shift, resolution)


def interval_cover(scale: float, shift: float, size: int, resolution: int) -> np.ndarray:
    """Which source cells along one axis overlap which target cells.

    Source cell a spans [a, a+1] and maps to scale * x + shift  ->  (R, size) bool, True where the
    image's interior meets the open target interval (i, i+1).
    """
    ends = scale * np.stack([np.arange(size), np.arange(1, size + 1)]) + shift  # (2, size)
    low, high = ends.min(axis=0), ends.max(axis=0)
    target = np.arange(resolution)[:, None]
    return (target < high[None, :]) & (target + 1 > low[None, :])


def resample_axis_aligned(
    occupancy: np.ndarray, linear: np.ndarray, shift: np.ndarray, resolution: int
) -> np.ndarray:
    """:func:`resample_occupancy` for a linear part that is a scaled permutation: one axis at a time.

    occupancy : (D0, D1, D2) bool; linear : (3, 3); shift : (3,)  ->  (R, R, R) bool.
    """
    source_axis = np.abs(linear).argmax(axis=1)  # target axis g reads source axis source_axis[g]
    grid = np.transpose(occupancy, source_axis).astype(np.float32)
    for g in range(3):
        cover = interval_cover(linear[g, source_axis[g]], shift[g], grid.shape[g], resolution)
        moved = np.moveaxis(grid, g, 0)
        reduced = cover.astype(np.float32) @ moved.reshape(moved.shape[0], -1)
        grid = np.moveaxis((reduced > 0).astype(np.float32).reshape((resolution,) + moved.shape[1:]), 0, g)
    return grid > 0


def resample_by_boxes(
    occupancy: np.ndarray, linear: np.ndarray, shift: np.ndarray, resolution: int
) -> np.ndarray:
    """:func:`resample_occupancy` for any affine: each occupied source voxel marks its image's box.

    occupancy : (D0, D1, D2) bool; linear : (3, 3); shift : (3,)  ->  (R, R, R) bool.
    """
    result = np.zeros((resolution,) * 3, dtype=bool)
    corners = np.indices((2, 2, 2)).reshape(3, -1).T.astype(np.float64)  # (8, 3)
    cells = np.argwhere(occupancy).astype(np.float64)
    for start in range(0, len(cells), 1 << 16):
        block = (cells[start : start + (1 << 16), None, :] + corners[None]) @ linear.T + shift  # (n, 8, 3)
        low, high = block.min(axis=1), block.max(axis=1)
        lo = np.clip(np.floor(low), 0, resolution - 1).astype(np.int64)
        hi = np.clip(np.ceil(high) - 1, 0, resolution - 1).astype(np.int64)
        keep = ((high > 0) & (low < resolution) & (lo <= hi)).all(axis=1)
        marked = range_cells(lo[keep], hi[keep])[1]
        result[tuple(marked.T)] = True
    return result
