"""voxgan.ingest.kernels: the one compiled solid angle sums to the exact winding number."""

import numpy as np
import pytest
import trimesh

from voxgan.ingest.kernels import compiled_kernels
from voxgan.ingest.winding import clustered_winding_numbers, open_winding_function, winding_numbers


def test_compiled_sums_with_every_group_near_equal_the_exact_numpy_sum():
    if compiled_kernels() is None:
        pytest.skip("numba is not installed: only the numpy path exists")
    torus = trimesh.creation.torus(5.0, 2.0, major_sections=24, minor_sections=12)
    triangles = (torus.vertices + 8.0)[torus.faces]
    points = np.random.default_rng(1).uniform(0, 16, (300, 3))
    exact = winding_numbers(points, triangles)
    one_level = clustered_winding_numbers(points, triangles, beta=np.inf)  # no group counts as far
    np.testing.assert_allclose(one_level, exact, atol=1e-9)
    two_level = open_winding_function(triangles, cell=2.0)(points)  # dipoles far away: close, not equal
    assert np.abs(two_level - exact).max() < 0.05
