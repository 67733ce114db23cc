"""Closed triangle meshes of simple solids, and the transforms that assemble them into shapes.

Each primitive returns ``(vertices (V, 3) float64, faces (F, 3) int64)``, a closed mesh with outward-facing
triangles, so that a union of overlapping parts still voxelizes solid. The built-in ``shapes`` dataset
(:mod:`voxgan.ingest.shapes`) builds every class from these.
"""

from __future__ import annotations

import numpy as np

Mesh = tuple[np.ndarray, np.ndarray]  # vertices (V, 3) float64, faces (F, 3) int64, outward-facing
ROUND_SEGMENTS = 20  # segments around the axis of big round parts
ROD_SEGMENTS = 10  # segments around legs, poles and handles


def box(size, center=(0.0, 0.0, 0.0)) -> Mesh:
    """An axis-aligned box.

    size : (3,) edge lengths; center : (3,)  ->  vertices (8, 3), faces (12, 3).
    """
    half = np.asarray(size, dtype=np.float64) / 2
    signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
    vertices = signs * half + np.asarray(center, dtype=np.float64)
    faces = np.array(
        [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
         [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]],
        dtype=np.int64,
    )  # fmt: skip
    return vertices, faces


def revolve(profile, segments: int = ROUND_SEGMENTS, closed: bool = False) -> Mesh:
    """A surface of revolution about the z axis.

    profile : (K, 2) points (r, z). Open profiles must start and end on the axis (r = 0, a pole) and are
    off the axis elsewhere; a closed profile (``closed=True``) is a loop off the axis (a torus-like ring).
    Returns a closed mesh, faces flipped if needed so that they face outward.
    """
    profile = np.asarray(profile, dtype=np.float64)
    assert profile.ndim == 2 and profile.shape[1] == 2, profile.shape
    theta = 2 * np.pi * np.arange(segments) / segments
    on_axis = profile[:, 0] <= 1e-12
    sizes = np.where(on_axis, 1, segments)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    around = np.arange(segments)
    rings = np.where(on_axis[:, None], starts[:, None], starts[:, None] + around)  # (K, S) vertex indices
    vertices = [
        np.array([[0.0, 0.0, z]])
        if pole
        else np.stack([r * np.cos(theta), r * np.sin(theta), np.full(segments, z)], 1)
        for (r, z), pole in zip(profile, on_axis, strict=True)
    ]
    following = np.roll(around, -1)
    lower = np.arange(len(profile)) if closed else np.arange(len(profile) - 1)
    faces = []
    for i in lower:
        j = (i + 1) % len(profile)
        a, b, c, d = rings[i], rings[i, following], rings[j, following], rings[j]
        if not on_axis[i]:
            faces.append(np.stack([a, b, c], axis=1))
        if not on_axis[j]:
            faces.append(np.stack([a, c, d], axis=1))
    vertices = np.concatenate(vertices)
    faces = np.concatenate(faces).astype(np.int64)
    if signed_volume((vertices, faces)) < 0:
        faces = faces[:, ::-1].copy()
    return vertices, faces


def cylinder(radius: float, height: float, segments: int = ROUND_SEGMENTS) -> Mesh:
    """A cylinder standing on z = 0 around the z axis."""
    return revolve([(0, 0), (radius, 0), (radius, height), (0, height)], segments)


def frustum(bottom_radius: float, top_radius: float, height: float, segments: int = ROUND_SEGMENTS) -> Mesh:
    """A cone or truncated cone standing on z = 0 around the z axis (a radius of 0 gives a point)."""
    return revolve([(0, 0), (bottom_radius, 0), (top_radius, height), (0, height)], segments)


def sphere(radius: float, rings: int = 8, segments: int = ROUND_SEGMENTS) -> Mesh:
    """A UV sphere centred on the origin."""
    angle = np.linspace(-np.pi / 2, np.pi / 2, rings + 1)
    profile = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    profile[[0, -1], 0] = 0.0
    return revolve(profile, segments)


def torus(major_radius: float, minor_radius: float, segments: int = ROUND_SEGMENTS) -> Mesh:
    """A ring around the z axis in the plane z = 0."""
    angle = 2 * np.pi * np.arange(8) / 8
    profile = np.stack([major_radius + minor_radius * np.cos(angle), minor_radius * np.sin(angle)], axis=1)
    return revolve(profile, segments, closed=True)


def rotation(axis: str, degrees: float) -> np.ndarray:
    """(3, 3) rotation by ``degrees`` about the x, y or z axis (right-handed)."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    matrix = np.eye(3)
    matrix[i, i], matrix[i, j], matrix[j, i], matrix[j, j] = c, -s, s, c
    return matrix


def align_z(direction) -> np.ndarray:
    """(3, 3) rotation taking +z onto the unit vector along ``direction`` (3,)."""
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    v = np.cross([0.0, 0.0, 1.0], d)
    c = d[2]
    if np.linalg.norm(v) < 1e-12:
        return np.eye(3) if c > 0 else rotation("x", 180.0)
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + k + k @ k / (1 + c)


def transform(mesh: Mesh, matrix=None, offset=(0.0, 0.0, 0.0), pivot=(0.0, 0.0, 0.0)) -> Mesh:
    """Rotate (or scale by positive factors) ``mesh`` about ``pivot`` by ``matrix`` (3, 3), then move it."""
    vertices, faces = mesh
    pivot = np.asarray(pivot, dtype=np.float64)
    if matrix is not None:
        assert np.linalg.det(matrix) > 0, "a mirroring transform would turn the faces inward"
        vertices = (vertices - pivot) @ np.asarray(matrix).T + pivot
    return vertices + np.asarray(offset, dtype=np.float64), faces


def moved(mesh: Mesh, offset) -> Mesh:
    """``mesh`` translated by ``offset`` (3,)."""
    return transform(mesh, offset=offset)


def combine(parts: list[Mesh]) -> Mesh:
    """One mesh holding every part (overlapping parts stay separate closed shells)."""
    offsets = np.cumsum([0] + [len(v) for v, _ in parts[:-1]])
    vertices = np.concatenate([v for v, _ in parts])
    faces = np.concatenate([f + o for (_, f), o in zip(parts, offsets, strict=True)])
    return vertices, faces


def signed_volume(mesh: Mesh) -> float:
    """Enclosed volume, positive when the triangles face outward."""
    vertices, faces = mesh
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    return float(np.einsum("ij,ij->", a, np.cross(b, c)) / 6)
