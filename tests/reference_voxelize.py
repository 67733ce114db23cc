"""The slow exact reference occupancy that voxgan.ingest.voxelize is measured against (test-only).

Written independently of :mod:`voxgan.ingest.voxelize` and without its shortcuts:

* surface: the full separating-axis test (3 box normals, the triangle normal, 9 edge × box-axis
  cross products) of every triangle against every voxel of its bounding range plus a margin, with
  strict inequalities, so a triangle only touching a voxel's boundary does not mark it;
* inside: the exact generalized winding number (sum of signed solid angles over 4π) at *every*
  voxel centre, with ``|w| >= 0.5`` meaning inside; when the mesh is closed, its inverted parts
  (negative signed volume) are reversed first, so that overlapping parts do not cancel, except a part
  wholly inside the others, which bounds a cavity.
"""

from __future__ import annotations

from collections import Counter

import numpy as np


def reference_surface(vertices: np.ndarray, faces: np.ndarray, resolution: int) -> np.ndarray:
    """Voxels whose open box a triangle overlaps: (V, 3), (F, 3) in grid coordinates -> (R, R, R) bool."""
    r = resolution
    occupancy = np.zeros((r, r, r), dtype=bool)
    triangles = np.asarray(vertices, dtype=np.float64)[np.asarray(faces, dtype=np.int64)]
    for triangle in triangles:
        if not np.isfinite(triangle).all():
            continue
        lo = np.clip(np.floor(triangle.min(axis=0)).astype(int) - 1, 0, r - 1)
        hi = np.clip(np.ceil(triangle.max(axis=0)).astype(int) + 1, 0, r - 1)
        if (triangle.max(axis=0) < 0).any() or (triangle.min(axis=0) > r).any():
            continue
        grid = np.stack(
            np.meshgrid(*[np.arange(lo[a], hi[a] + 1) for a in range(3)], indexing="ij"), axis=-1
        ).reshape(-1, 3)
        overlap = triangle_overlaps_open_boxes(triangle, grid + 0.5, 0.5)
        hit = grid[overlap]
        occupancy[hit[:, 0], hit[:, 1], hit[:, 2]] = True
    return occupancy


def triangle_overlaps_open_boxes(triangle: np.ndarray, centres: np.ndarray, half: float) -> np.ndarray:
    """Separating-axis test of one triangle against open cubes.

    triangle : (3, 3); centres : (N, 3) cube centres; half : half the side  ->  (N,) bool.
    The cube is open: projections that only touch count as separated.
    """
    corners = triangle[None, :, :] - centres[:, None, :]  # (N, 3, 3)
    edges = [triangle[1] - triangle[0], triangle[2] - triangle[1], triangle[0] - triangle[2]]
    axes = [np.eye(3)[a] for a in range(3)]
    axes.append(np.cross(edges[0], edges[1]))
    axes += [np.cross(edge, np.eye(3)[a]) for edge in edges for a in range(3)]
    separated = np.zeros(len(centres), dtype=bool)
    for axis in axes:
        radius = half * np.abs(axis).sum()
        if radius == 0:  # a degenerate axis separates nothing
            continue
        projection = corners @ axis  # (N, 3)
        separated |= (projection.min(axis=1) >= radius) | (projection.max(axis=1) <= -radius)
    return ~separated


def reference_winding(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Generalized winding number at each point: (P, 3), (V, 3), (F, 3) -> (P,) float."""
    triangles = np.asarray(vertices, dtype=np.float64)[np.asarray(faces, dtype=np.int64)]
    triangles = triangles[np.isfinite(triangles).all(axis=(1, 2))]
    result = np.zeros(len(points))
    step = max(1, 400_000 // max(len(triangles), 1))
    for start in range(0, len(points), step):
        p = points[start : start + step]
        a = triangles[None, :, 0] - p[:, None]
        b = triangles[None, :, 1] - p[:, None]
        c = triangles[None, :, 2] - p[:, None]
        la, lb, lc = (np.linalg.norm(x, axis=2) for x in (a, b, c))
        numerator = (a * np.cross(b, c)).sum(axis=2)
        denominator = la * lb * lc + (a * b).sum(2) * lc + (b * c).sum(2) * la + (c * a).sum(2) * lb
        result[start : start + step] = 2 * np.arctan2(numerator, denominator).sum(axis=1) / (4 * np.pi)
    return result


def reference_outward_faces(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Faces with each inverted part reversed, when every directed edge has its reverse (closed).

    Parts are connected through shared vertices; a part is inverted when its signed volume is
    negative. Open meshes are returned unchanged. (V, 3), (F, 3) -> (F, 3).
    """
    faces = np.asarray(faces, dtype=np.int64)
    edges = Counter((int(f[m]), int(f[(m + 1) % 3])) for f in faces for m in range(3))
    if any(edges[(b, a)] != n for (a, b), n in edges.items()):
        return faces
    parent = list(range(len(vertices)))

    def root(v):
        while parent[v] != v:
            v = parent[v]
        return v

    for a, b, c in faces:
        for u in (b, c):
            parent[root(int(u))] = root(int(a))
    volume = Counter()
    for face in faces:
        volume[root(int(face[0]))] += float(np.linalg.det(np.asarray(vertices)[face]))
    owner = np.array([root(int(face[0])) for face in faces])
    for part in [part for part, v in volume.items() if v < 0]:
        corners = np.unique(faces[owner == part])
        others = faces[owner != part]
        winding = reference_winding(np.asarray(vertices)[corners], vertices, others)
        if len(others) and (np.abs(winding) >= 0.5).all():
            volume[part] = 0.0  # wholly inside the other parts: the wall of a cavity, kept as it is
    flip = np.array([volume[part] < 0 for part in owner], dtype=bool)
    faces = faces.copy()
    faces[flip] = faces[flip][:, ::-1]
    return faces


def reference_inside(vertices: np.ndarray, faces: np.ndarray, resolution: int) -> np.ndarray:
    """Voxel centres with ``|w| >= 0.5``: (V, 3), (F, 3) in grid coordinates -> (R, R, R) bool.

    w is the winding number of the mesh with its inverted closed parts reversed.
    """
    r = resolution
    centres = np.indices((r, r, r)).reshape(3, -1).T + 0.5
    faces = reference_outward_faces(vertices, faces)
    return (np.abs(reference_winding(centres, vertices, faces)) >= 0.5).reshape(r, r, r)


def reference_voxelize(
    vertices: np.ndarray, faces: np.ndarray, resolution: int, mode: str = "solid"
) -> np.ndarray:
    """The reference occupancy: surface, or surface | inside for ``solid`` -> (R, R, R) bool."""
    surface = reference_surface(vertices, faces, resolution)
    if mode == "surface":
        return surface
    return surface | reference_inside(vertices, faces, resolution)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two occupancy grids (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)
