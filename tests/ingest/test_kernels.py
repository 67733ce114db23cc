"""voxgan.ingest.kernels: the one compiled solid angle sums to the exact winding number."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from voxgan.ingest.kernels import (
    COMPILE_NOTE,
    LOCAL_RATIO,
    angle_sum,
    compiled_kernels,
    far_field_sum,
    local_quadratic,
    quadratic_at,
)
from voxgan.ingest.winding import clustered_winding_numbers, open_winding_function, winding_numbers

REPO = Path(__file__).resolve().parents[2]


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
    lattice = np.stack(np.meshgrid(*[np.arange(0.5, 16, 3.0)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    sparse = open_winding_function(triangles, cell=2.0)(lattice, 3.0)  # a lattice's points in wider cubes
    assert np.abs(sparse - winding_numbers(lattice, triangles)).max() < 0.05


def test_eight_angles_added_by_one_product_equal_their_atan2_sum():
    """angle_sum multiplies eight x + iy at a time into one running product and counts the turns: the same
    sum as atan2 one by one, for angles near ±π (both signs of zero on the negative axis), for magnitudes
    far apart and beyond float range."""
    rng = np.random.default_rng(2)
    angles = np.concatenate(
        [rng.uniform(-np.pi, np.pi, 45), np.full(6, np.pi - 1e-12), np.full(6, -np.pi + 1e-12)]
    )
    sizes = np.exp(rng.uniform(-30, 30, len(angles)))
    xs, ys = sizes * np.cos(angles), sizes * np.sin(angles)
    xs = np.concatenate([xs, [-1.0, -1.0, -2.0, 1e200, 1e200, 1e200, 1e200, 1e200, 1e200, 1e200, 1e200, 3.0]])
    ys = np.concatenate(
        [ys, [0.0, -0.0, -0.0, 1e200, 1e200, -1e200, 1e200, 1e200, 1e200, -1e200, 1e200, 0.0]]
    )
    for order in (np.arange(len(xs)), rng.permutation(len(xs))):
        x, y = xs[order], ys[order]
        for count in (0, 7, 8, 40, len(x)):
            expected = math.fsum(math.atan2(b, a) for a, b in zip(x[:count], y[:count], strict=True))
            with np.errstate(over="ignore", invalid="ignore"):  # the products beyond range, as compiled
                total = angle_sum(x, y, count)
            assert total == pytest.approx(expected, abs=1e-9)


def test_compiled_exact_sum_at_corners_on_edges_and_far_away_equals_numpy():
    """Points on a triangle's corner or edge (terms 0, 0) and points so far that eight terms multiply
    beyond float range give numpy's exact winding numbers."""
    if compiled_kernels() is None:
        pytest.skip("numba is not installed: only the numpy path exists")
    torus = trimesh.creation.torus(5.0, 2.0, major_sections=24, minor_sections=12)
    triangles = (torus.vertices + 8.0)[torus.faces]
    corners = triangles[::7, 0]
    edges = (triangles[::5, 0] + triangles[::5, 1]) / 2
    far = np.array([[1e11, 2e11, -3e11], [-5e10, 8.0, 8.0], [8.0, 8.0, 1e12]])
    points = np.concatenate([corners, edges, far])
    exact = winding_numbers(points, triangles)
    compiled = clustered_winding_numbers(points, triangles, beta=np.inf)  # every group summed exactly
    np.testing.assert_allclose(compiled, exact, atol=1e-9)


def test_far_field_with_its_second_order_term_beats_the_dipole_alone():
    """A group counted as far adds the next term of the expansion to its dipole: at 2.5-4 radii from a
    curved patch it is several times closer to the exact winding number than the dipole alone."""
    if compiled_kernels() is None:
        pytest.skip("numba is not installed: only the numpy path exists")
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    patch = sphere.vertices[sphere.faces][sphere.triangles_center[:, 2] > 0.3] + 50.0  # a cap, one group
    rng = np.random.default_rng(3)
    directions = rng.normal(size=(200, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    centre_guess = patch.reshape(-1, 3).mean(axis=0)
    points = centre_guess + directions * rng.uniform(2.5, 4.0, (200, 1))
    exact = winding_numbers(points, patch)
    far = clustered_winding_numbers(points, patch, cell=8.0, beta=2.0)  # 1 group, far from every point
    vector_area = 0.5 * np.cross(patch[:, 1] - patch[:, 0], patch[:, 2] - patch[:, 0])
    area = np.linalg.norm(vector_area, axis=1)
    centre = (patch.mean(axis=1) * area[:, None]).sum(axis=0) / area.sum()
    offset = centre - points
    dipole = offset @ vector_area.sum(axis=0) / (4 * np.pi * np.linalg.norm(offset, axis=1) ** 3)
    assert np.abs(far - exact).max() < np.abs(dipole - exact).max() / 3
    assert not np.allclose(far, dipole)


def test_the_quadratic_of_distant_groups_matches_their_far_field_across_a_cell():
    """A cell of points counts the groups beyond LOCAL_RATIO of its radius by one quadratic: within the cell
    it stays within a few hundredths of the groups' own far field, point by point (solid angles)."""
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(40, 3))
    centres *= rng.uniform(LOCAL_RATIO * 2.6, 120, (40, 1)) / np.linalg.norm(centres, axis=1, keepdims=True)
    rows = np.zeros((15, 40))
    rows[:3] = centres.T
    rows[3:6] = rng.normal(scale=30.0, size=(3, 40))  # vector areas of groups of side 8
    rows[6:] = rng.normal(scale=30.0, size=(9, 40))  # their second moments
    quadratic = local_quadratic(rows, 40, 0.0, 0.0, 0.0, 2.6)  # a cell of 4³ voxel centres: radius 2.6
    offsets = rng.uniform(-1.5, 1.5, (100, 3))
    direct = np.array([far_field_sum(rows, 40, *offset) for offset in offsets])
    fitted = np.array([quadratic_at(quadratic, *offset) for offset in offsets])
    assert np.abs(fitted - direct).max() < 0.03 * np.abs(direct).max()
    assert np.ptp(direct) > 0.05 * np.abs(direct).max()  # the field does vary across the cell


def test_a_large_open_mesh_summed_by_cells_of_many_points_matches_the_exact_sum():
    # an open sphere of radius 60 (as at 128³) and a dense block of points by its surface: the cells there
    # count the far side of the sphere by its quadratic, the near side by groups and triangles
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=60.0)
    keep = sphere.triangles_center[:, 2] < 45.0
    triangles = (sphere.vertices + 64.0)[sphere.faces[keep]]
    block = np.stack(np.meshgrid(*[np.arange(12) + 0.5] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    points = block + [58.0, 58.0, 2.0]  # across the bottom of the sphere
    exact = winding_numbers(points, triangles)
    summed = open_winding_function(triangles, cell=8.0)(points)
    assert np.abs(summed - exact).max() < 0.01
    assert (exact > 0.5).any() and (exact < 0.5).any()


def test_each_loop_runs_on_its_one_declared_signature():
    """Closed, open and soup meshes and a text file reach the loops only with the declared argument types,
    so nothing compiles file by file after the announced compile."""
    kernels = compiled_kernels()
    if kernels is None:
        pytest.skip("numba is not installed: only the numpy path exists")
    from voxgan.ingest.formats.text import parse_numbers
    from voxgan.ingest.voxelize import voxelize

    box = trimesh.creation.box(extents=(8, 8, 8))
    torus = trimesh.creation.torus(5.0, 2.0, major_sections=24, minor_sections=12)
    rng = np.random.default_rng(0)
    soup = rng.uniform(2, 14, (60, 3, 3))
    for vertices, faces in [
        (box.vertices + 8.0, box.faces),  # closed
        (box.vertices + 8.0, box.faces[:-2]),  # open: caps over the hole
        (torus.vertices + 8.0, torus.faces[::2]),  # open, many holes
        (soup.reshape(-1, 3), np.arange(180).reshape(-1, 3)),  # a soup: its own winding field
    ]:
        for resolution in (16, 32):
            voxelize(vertices, faces, resolution)
    assert parse_numbers(b"1.5 -2 3e2\n4 5 6\n").tolist() == [1.5, -2.0, 300.0, 4.0, 5.0, 6.0]
    for name, dispatcher in vars(kernels).items():
        assert len(dispatcher.signatures) == 1, (name, dispatcher.signatures)


@pytest.mark.slow
def test_processes_that_find_the_cache_empty_at_once_compile_the_kernels_once(tmp_path):
    """A job array's tasks start together on a fresh install: one compiles, the others load what it wrote."""
    pytest.importorskip("numba")
    env = {k: v for k, v in os.environ.items() if k not in ("VOXGAN_NO_NUMBA", "PYTHONPATH")}
    env |= {"NUMBA_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    load = [sys.executable, "-c", "from voxgan.ingest.kernels import compiled_kernels; compiled_kernels()"]
    tasks = [subprocess.Popen(load, env=env, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    said = [task.communicate(timeout=300)[1] for task in tasks]
    assert [task.returncode for task in tasks] == [0, 0, 0], said
    assert sum(text.startswith(f"voxgan: {COMPILE_NOTE}") for text in said) == 1, said
    assert list((tmp_path / "cache").rglob("kernels.*.nbi"))
    later = subprocess.run(load, env=env, capture_output=True, text=True, timeout=300)
    assert later.returncode == 0 and later.stderr == ""  # loaded from the cache, nothing to say
