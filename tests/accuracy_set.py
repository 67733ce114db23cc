"""The accuracy set: meshes built in code with the quirks real datasets hold.

Watertight (sphere, torus, box, capsule), open (box missing a side, hemisphere shell, a sphere with
a hole), inverted and mixed orientation, overlapping parts (a chair of overlapping boxes, duplicate
faces) and thin shapes (a plate and table legs thinner than a voxel, a mug handle). Each entry is
``(vertices (V, 3) float64, faces (F, 3) int64)`` in its own units; :func:`to_grid` places a mesh in
the grid frame the way the pipeline does (centred, largest extent filling the grid less a padding).
"""

from __future__ import annotations

import numpy as np
import trimesh


def rotated(mesh: trimesh.Trimesh, angles=(0.3, 0.5, 0.2)) -> trimesh.Trimesh:
    """A copy turned by Euler angles (radians) so that faces are not aligned with the grid."""
    mesh = mesh.copy()
    mesh.apply_transform(trimesh.transformations.euler_matrix(*angles))
    return mesh


def box(extents, centre=(0.0, 0.0, 0.0)) -> trimesh.Trimesh:
    """An axis-aligned box with outward faces."""
    return trimesh.creation.box(extents=extents, transform=trimesh.transformations.translation_matrix(centre))


def join(*parts: trimesh.Trimesh) -> trimesh.Trimesh:
    """Several parts as one mesh, overlapping where they overlap (no boolean union)."""
    return trimesh.util.concatenate(list(parts))


def without_faces(mesh: trimesh.Trimesh, drop: np.ndarray) -> trimesh.Trimesh:
    """The mesh with the faces where ``drop`` is True removed (a hole)."""
    return trimesh.Trimesh(mesh.vertices, mesh.faces[~drop], process=False)


def chair() -> trimesh.Trimesh:
    """Seat, back and four legs as overlapping boxes."""
    legs = [box((0.1, 0.1, 0.5), (x, y, 0.25)) for x in (-0.25, 0.25) for y in (-0.25, 0.25)]
    return join(box((0.6, 0.6, 0.1), (0, 0, 0.5)), box((0.6, 0.1, 0.6), (0, 0.25, 0.8)), *legs)


def table_with_thin_legs() -> trimesh.Trimesh:
    """A table whose legs (1/100 of its size) are far thinner than a voxel at 16³ to 64³."""
    legs = [box((0.01, 0.01, 0.6), (x, y, 0.3)) for x in (-0.45, 0.45) for y in (-0.3, 0.3)]
    return join(box((1.0, 0.7, 0.04), (0, 0, 0.62)), *legs)


def mug() -> trimesh.Trimesh:
    """A closed cylinder with a thin ring handle that overlaps its side."""
    body = trimesh.creation.cylinder(radius=0.4, height=1.0, sections=32)
    handle = trimesh.creation.torus(major_radius=0.25, minor_radius=0.03, major_sections=24, minor_sections=8)
    handle.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, (1, 0, 0)))
    handle.apply_translation((0.5, 0, 0))
    return join(body, handle)


def mixed_orientation(mesh: trimesh.Trimesh, fraction: float, seed: int = 0) -> trimesh.Trimesh:
    """The mesh with a random ``fraction`` of its faces reversed."""
    faces = mesh.faces.copy()
    flip = np.random.default_rng(seed).random(len(faces)) < fraction
    faces[flip] = faces[flip][:, ::-1]
    return trimesh.Trimesh(mesh.vertices, faces, process=False)


def inverted(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """The mesh with every face reversed (winding number -1 inside)."""
    return trimesh.Trimesh(mesh.vertices, mesh.faces[:, ::-1], process=False)


def accuracy_set() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Name -> (vertices (V, 3) float64, faces (F, 3) int64), about 2k faces at most per mesh."""
    sphere = trimesh.creation.icosphere(subdivisions=3)
    cube = rotated(box((1.0, 0.8, 0.6)))
    meshes = {
        "sphere": sphere,
        "torus": rotated(trimesh.creation.torus(1.0, 0.35, major_sections=32, minor_sections=16)),
        "box": cube,
        "box_aligned": box((1.0, 0.8, 0.6)),
        "capsule": rotated(trimesh.creation.capsule(height=1.0, radius=0.35, count=(16, 16))),
        "open_box": without_faces(cube, np.isin(np.arange(12), [0, 1])),
        "hemisphere_shell": without_faces(sphere, sphere.triangles_center[:, 2] > 0),
        "sphere_with_hole": without_faces(sphere, sphere.triangles_center[:, 0] > 0.9),
        "inverted_box": inverted(cube),
        "inverted_sphere": inverted(sphere),
        "mixed_parts": join(box((0.5, 0.5, 0.5), (-0.3, 0, 0)), inverted(box((0.5, 0.5, 0.5), (0.4, 0, 0)))),
        "mixed_orientation": mixed_orientation(sphere, 0.05),
        "chair": rotated(chair(), (0.0, 0.0, 0.4)),
        "duplicate_faces": trimesh.Trimesh(
            cube.vertices, np.concatenate([cube.faces, cube.faces, cube.faces[:4]]), process=False
        ),
        "thin_plate": rotated(box((1.0, 0.8, 0.004)), (0.2, 0.1, 0.0)),
        "thin_legs_table": table_with_thin_legs(),
        "mug": mug(),
    }
    return {
        name: (np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64))
        for name, mesh in meshes.items()
    }


def to_grid(vertices: np.ndarray, resolution: int, padding: float = 1.25) -> np.ndarray:
    """Centre the mesh and scale it uniformly so its largest extent is ``resolution - 2 * padding``.

    A padding that is not a whole number keeps the extreme faces off the grid planes, so that the
    surface shell is closed (a face lying exactly on a grid plane marks no voxel).

    vertices : (V, 3)  ->  (V, 3) in grid coordinates.
    """
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    scale = (resolution - 2 * padding) / (high - low).max()
    return (vertices - (low + high) / 2) * scale + resolution / 2
