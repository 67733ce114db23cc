"""voxgan.ingest.winding: column crossings and hole caps agree with the exact solid-angle sum."""

import numpy as np
import pytest
import trimesh

from voxgan.ingest.topology import hole_caps, hole_loops, is_closed, spanning_corners, unmatched_edges
from voxgan.ingest.winding import column_crossings_numpy, column_winding, winding_numbers


def centres(resolution: int) -> np.ndarray:
    """(R³, 3) voxel centres in C order."""
    return np.stack(np.indices((resolution,) * 3), axis=-1).reshape(-1, 3) + 0.5


def closed_meshes():
    sphere = trimesh.creation.icosphere(subdivisions=3)
    yield "sphere", (sphere.vertices * 6.3 + 8.1)[sphere.faces]
    # corners and edges exactly on the column lines x, y = i + 0.5: every tie the ε rule must break
    box = trimesh.creation.box(extents=(7, 5, 9))
    yield "box on the column lines", (box.vertices + 8)[box.faces]
    octahedron = trimesh.creation.icosphere(subdivisions=0)
    octahedron = trimesh.Trimesh(*trimesh.remesh.subdivide(octahedron.vertices, octahedron.faces))
    yield "subdivided solid", (np.round(octahedron.vertices * 6) + 8.5)[octahedron.faces]
    inverted = trimesh.creation.box(extents=(6, 6, 6))
    yield "inverted box", (inverted.vertices + 8)[inverted.faces][:, ::-1]


@pytest.mark.parametrize(
    "name, triangles", list(closed_meshes()), ids=lambda v: v if isinstance(v, str) else ""
)
def test_column_crossings_are_the_winding_number_of_a_closed_mesh(name, triangles):
    # a centre on the surface counts as just above it, then nudged by (ε, ε²): the exact sum at such a
    # nudged point is well defined
    exact = winding_numbers(centres(16) + [1e-6, 1e-9, 1e-3], triangles).reshape(16, 16, 16)
    assert np.allclose(exact, np.round(exact), atol=1e-4)
    counted = column_winding(triangles, 16)
    assert np.array_equal(counted, np.round(exact)), name
    numpy_counts = np.zeros((16,) * 3, np.int32)
    column_crossings_numpy(triangles, 16, numpy_counts)
    assert np.array_equal(np.flip(np.flip(numpy_counts, 2).cumsum(2), 2), counted)


def test_hole_caps_close_an_open_mesh_and_keep_its_winding_number():
    sphere = trimesh.creation.icosphere(subdivisions=3)
    keep = sphere.triangles_center[:, 2] < 0.6  # a cap cut off the top: one round hole
    keep[::7] = False  # and many small ones
    faces = sphere.faces[keep]
    triangles = (sphere.vertices * 6.3 + 8.1)[faces]
    caps = hole_caps(triangles, faces)
    assert not is_closed(faces) and len(caps) > 0
    points = centres(16)
    exact = winding_numbers(points, triangles)
    closed = column_winding(np.concatenate([triangles, caps]), 16).reshape(-1)
    recovered = closed - winding_numbers(points, caps)
    assert (np.abs(exact - np.round(exact)) > 0.05).any()  # not an integer field: the caps matter
    assert np.allclose(recovered, exact, atol=1e-6)


def test_hole_caps_over_a_wide_hole_are_mostly_short():
    # a tube's open end is one loop of 64 edges: a fan from one corner would make every cap about as long
    # as the hole is wide; spanned by halves, most caps lie along the rim
    tube = trimesh.creation.cylinder(radius=8.0, height=10.0, sections=64)
    faces = tube.faces[tube.triangles_center[:, 2] < 4.9]  # the top disc left out
    triangles = tube.vertices[faces] + [8.3, 8.4, 8.2]  # no voxel centre on the surface
    caps = hole_caps(triangles, faces)
    assert len(caps) == 62  # one loop of 64 corners: 64 - 2 triangles
    assert np.allclose(caps[:, :, 2], 13.2)  # in the hole's plane
    longest = np.linalg.norm(caps - caps[:, [1, 2, 0]], axis=2).max(axis=1)
    assert np.median(longest) < 16.0 / 4 and (longest > 16.0 / 2).sum() <= 8  # a fan: all 62
    area = 0.5 * np.cross(caps[:, 1] - caps[:, 0], caps[:, 2] - caps[:, 0])[:, 2]
    assert np.isclose(np.abs(area).sum(), 32 * 64 * np.sin(2 * np.pi / 64))  # they cover the disc once
    points = centres(17)
    closed = column_winding(np.concatenate([triangles, caps]), 17).reshape(-1)
    assert np.allclose(closed - winding_numbers(points, caps), winding_numbers(points, triangles), atol=1e-6)


def test_the_caps_of_any_faces_close_them():
    # random faces over a few vertices: repeated corners, doubled and reversed faces, fans, non-manifold
    # edges; whatever they are, the unmatched edges join into loops and the caps match every one of them
    rng = np.random.default_rng(11)
    for _ in range(200):
        count = int(rng.integers(3, 12))
        faces = rng.integers(0, count, (int(rng.integers(1, 40)), 3))
        unmatched = unmatched_edges(faces)
        corners, starts = hole_loops(unmatched)
        assert len(corners) == len(unmatched) and starts[-1] == len(unmatched)
        caps = spanning_corners(corners, starts)
        assert is_closed(np.concatenate([faces, caps])), faces
