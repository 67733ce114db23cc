"""voxgan.ingest.winding: ray crossings agree with the exact solid-angle sum."""

import numpy as np
import trimesh

from voxgan.ingest.winding import closed_winding_numbers, winding_numbers


def test_ray_crossings_match_the_solid_angle_sum_on_a_closed_mesh():
    sphere = trimesh.creation.icosphere(subdivisions=5)  # over RAY_MIN_FACES faces
    triangles = (sphere.vertices * 6.3 + 8.1)[sphere.faces]
    points = np.random.default_rng(0).uniform(0, 16, (200, 3))
    points[0] = [8.1, 8.1, 8.1]  # the ray runs through a vertex of the icosphere: the fallback
    assert np.allclose(
        closed_winding_numbers(points, triangles), winding_numbers(points, triangles), atol=1e-6
    )
