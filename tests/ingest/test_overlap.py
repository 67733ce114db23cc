"""voxgan.ingest.overlap: the compiled and the numpy surface tests mark the same voxels."""

import numpy as np
import pytest

from tests.accuracy_set import accuracy_set, to_grid
from voxgan.ingest.kernels import compiled_kernels
from voxgan.ingest.overlap import overlap_masks, overlap_masks_numpy

ACCURACY_SET = accuracy_set()


def test_the_compiled_and_the_numpy_overlap_tests_agree():
    if compiled_kernels() is None:
        pytest.skip("numba is not installed: only the numpy path exists")
    for name in ["sphere", "box_aligned", "thin_legs_table", "duplicate_faces", "mug"]:
        vertices, faces = ACCURACY_SET[name]
        triangles = to_grid(vertices, 32)[faces]
        compiled = overlap_masks(triangles, 32)
        vectorised = overlap_masks_numpy(triangles, 32)
        assert all(np.array_equal(a, b) for a, b in zip(compiled, vectorised, strict=True)), name


def test_large_slanted_and_grid_aligned_triangles_mark_the_same_voxels_in_both_tests():
    """Beyond the small triangles of real meshes: triangles spanning the whole grid at a slant, corners on
    grid planes and lines, a triangle lying in a grid plane and zero-area ones mark the same voxels in the
    compiled test (its one-axis shortcut, its strict and non-strict bounds) as in the numpy one."""
    if compiled_kernels() is None:
        pytest.skip("numba is not installed: only the numpy path exists")
    rng = np.random.default_rng(7)
    slanted = rng.uniform(-2, 34, (40, 3, 3))  # many span most of the grid, some leave it
    on_planes = rng.integers(0, 33, (40, 3, 3)).astype(float)  # corners on grid planes and lines
    flat = rng.uniform(0, 32, (20, 3, 3))
    flat[:, :, 2] = 12.0  # in a grid plane: touches voxels on both sides, passes through none
    collinear = np.stack([flat[:, 0], flat[:, 1], 2 * flat[:, 1] - flat[:, 0]], axis=1)  # zero area
    for triangles in (slanted, on_planes, flat, collinear):
        compiled = overlap_masks(triangles, 32)
        vectorised = overlap_masks_numpy(triangles, 32)
        assert compiled[1].any()
        assert all(np.array_equal(a, b) for a, b in zip(compiled, vectorised, strict=True))
