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
