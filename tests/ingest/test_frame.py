"""voxgan.ingest.frame: the grid transform normalises as specified (up axis, scale, centre, off the
grid planes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests import meshfiles
from voxgan import shards
from voxgan.errors import VoxganError
from voxgan.ingest import pipeline
from voxgan.ingest.formats import MeshError, load_mesh
from voxgan.ingest.frame import (
    apply_transform,
    grid_coords_transform,
    grid_transform,
    snap_to_planes,
    up_to_z,
)


def grid_bounds(vertices, matrix):
    mapped = apply_transform(vertices, matrix)
    return mapped.min(axis=0), mapped.max(axis=0)


def off_planes(values: np.ndarray) -> bool:
    return bool((np.abs(values - np.round(values)) > 1e-6).all())


@pytest.mark.parametrize("resolution", [16, 32, 64])
@pytest.mark.parametrize("padding", [0.5, 1.0, 2.0, 0.0])
def test_grid_transform_centres_scales_and_keeps_extremes_off_planes(resolution: int, padding: float):
    rng = np.random.default_rng(resolution)
    vertices = rng.normal(size=(50, 3)) * [3.0, 1.0, 0.5] + [10.0, -4.0, 2.0]
    matrix = grid_transform(vertices, resolution, padding=padding)
    low, high = grid_bounds(vertices, matrix)
    assert (high - low).max() == pytest.approx(resolution - 2 * max(padding, 1 / 64))
    np.testing.assert_allclose((low + high) / 2, resolution / 2, atol=1 / 32 + 1e-9)
    assert (low > 0).all() and (high < resolution).all()
    assert off_planes(low) and off_planes(high)
    linear = matrix[:3, :3]
    np.testing.assert_allclose(linear, np.eye(3) * linear[0, 0])  # uniform, no rotation for z up


def test_grid_transform_shifts_a_box_whose_faces_would_lie_on_grid_planes():
    cube = meshfiles.box_vertices((-1, -1, -1), (1, 1, 1))
    matrix = grid_transform(cube, 16, padding=1.0)  # unshifted the faces would lie on planes 1 and 15
    low, high = grid_bounds(cube, matrix)
    np.testing.assert_allclose(high - low, 14.0)
    assert off_planes(low) and off_planes(high)
    np.testing.assert_allclose(low, 1 + 1 / 64)


def test_grid_transform_zero_extent_raises(tmp_path: Path):
    with pytest.raises(MeshError, match="zero extent"):
        grid_transform(np.ones((4, 3)), 16)
    path = meshfiles.write_off_zero_extent(tmp_path / "point.off")
    with pytest.raises(MeshError, match="zero extent"):
        grid_transform(load_mesh(path, tmp_path)[0], 16)


@pytest.mark.parametrize("up", ["x", "y", "z", "-x", "-y", "-z"])
def test_up_to_z_is_a_proper_rotation_taking_up_to_plus_z(up: str):
    rotation = up_to_z(up)
    assert rotation.shape == (4, 4)
    np.testing.assert_allclose(rotation[:3, :3] @ rotation[:3, :3].T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation[:3, :3]) == pytest.approx(1.0)
    axis = np.zeros(3)
    axis["xyz".index(up[-1])] = -1.0 if up.startswith("-") else 1.0
    np.testing.assert_allclose(rotation[:3, :3] @ axis, [0, 0, 1], atol=1e-12)


def test_up_to_z_for_y_up_data_like_shapenet():
    rotation = up_to_z("y")[:3, :3]
    np.testing.assert_allclose(rotation @ [0, 1, 0], [0, 0, 1], atol=1e-12)  # y -> z
    np.testing.assert_allclose(rotation @ [0, 0, 1], [0, -1, 0], atol=1e-12)  # z -> -y
    np.testing.assert_allclose(rotation @ [1, 0, 0], [1, 0, 0], atol=1e-12)  # x stays
    with pytest.raises(VoxganError, match="unknown up axis"):
        up_to_z("w")


def test_grid_transform_turns_a_y_up_chair_upright():
    # a "chair": tall back along +y (up in the file) at the -z side, seat facing +z
    seat = meshfiles.box_vertices((0, 0.4, 0), (1, 0.5, 1))
    back = meshfiles.box_vertices((0, 0.5, 0), (1, 2.0, 0.1))
    vertices = np.concatenate([seat, back])
    matrix = grid_transform(vertices, 32, up_axis="y")
    mapped = apply_transform(vertices, matrix)
    seat_grid, back_grid = mapped[:8], mapped[8:]
    assert back_grid[:, 2].max() > seat_grid[:, 2].max()  # the back rises above the seat along +z
    assert back_grid[:, 1].min() > seat_grid[:, 1].min()  # file -z (the back) becomes +y
    assert (mapped[:, 2].max() - mapped[:, 2].min()) == pytest.approx(31.0)  # the tall axis is z now


def test_apply_transform_shapes_and_values():
    matrix = np.eye(4)
    matrix[:3, 3] = [1, 2, 3]
    out = apply_transform(np.zeros((5, 3)), matrix)
    assert out.shape == (5, 3) and out.dtype == np.float64
    np.testing.assert_allclose(out, np.tile([1, 2, 3], (5, 1)))


def y_up_wardrobe() -> tuple[np.ndarray, np.ndarray]:
    """A wardrobe 1.8 m tall along +y (up in glTF and most OBJ exports), 0.8 m wide along x, 0.5 m
    deep, with a drawer sticking out 0.3 m at its front (+z) near the floor: vertices (16, 3), faces
    (24, 3)."""
    body = meshfiles.box_vertices((0.0, 0.0, 0.0), (0.8, 1.8, 0.5))
    drawer = meshfiles.box_vertices((0.1, 0.1, 0.4), (0.7, 0.4, 0.8))
    triangles = meshfiles.box_triangles()
    return np.concatenate([body, drawer]), np.concatenate([triangles, triangles + 8])


def voxelized(folder: Path, out: Path, **options) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Voxelize ``folder`` (flat layout, 16³) and return {source: (occupancy (16, 16, 16), mesh_to_grid)}."""
    config = pipeline.make_config(folder, out, layout="flat", workers=1, test_fraction=0.0, **options)
    manifest = pipeline.run_voxelize(config, progress=False)
    shard = shards.read_shard(out / manifest["splits"]["train"]["shards"][0]["file"])
    return dict(zip(shard.sources, zip(shard.occupancy, shard.mesh_to_grid, strict=True), strict=True))


def extents(occupancy: np.ndarray) -> list[int]:
    """Occupied voxels spanned along x, y and z."""
    filled = np.argwhere(occupancy)
    return (filled.max(axis=0) - filled.min(axis=0) + 1).tolist()


def test_a_y_tall_glb_stands_along_z_and_the_same_obj_stands_with_up_axis_y(tmp_path: Path):
    vertices, faces = y_up_wardrobe()
    meshfiles.write_glb_mesh(tmp_path / "in" / "wardrobe.glb", vertices, faces)
    meshfiles.write_obj_triangles(tmp_path / "in" / "wardrobe.obj", vertices, faces)
    default = voxelized(tmp_path / "in", tmp_path / "z")
    glb, glb_matrix = default["wardrobe.glb"]
    assert extents(glb)[2] == 16 and max(extents(glb)[:2]) <= 9  # standing tall along +z
    near_floor, high_up = np.argwhere(glb[:, :, 2:5]), np.argwhere(glb[:, :, 10:])
    assert near_floor[:, 1].min() < high_up[:, 1].min()  # the drawer (glTF's front, +z) sticks out to -y
    lying, _ = default["wardrobe.obj"]
    assert extents(lying)[1] == 16 and extents(lying)[2] <= 9  # OBJ is read +z up by default: it lies
    upright = voxelized(tmp_path / "in", tmp_path / "y", up_axis="y")
    np.testing.assert_array_equal(upright["wardrobe.obj"][0], glb)  # voxel for voxel the GLB
    np.testing.assert_allclose(upright["wardrobe.obj"][1], glb_matrix, atol=1e-5)  # float32 in the GLB
    np.testing.assert_array_equal(upright["wardrobe.glb"][0], glb)  # --up-axis never turns glTF
    corners = apply_transform(vertices, glb_matrix)  # the affine maps the file's metres to the grid
    assert np.ptp(corners, axis=0).argmax() == 2 and corners.min() > 0 and corners.max() < 16


def test_grid_coords_transform_turns_the_up_axis_to_z_and_divides_by_the_scale():
    file_points = np.array([[1.0, 3.0, -2.0], [0.5, 8.0, -16.0]]) * 0.05  # +y up, 0.05 units per voxel
    grid = apply_transform(file_points, grid_coords_transform("y", 0.05))
    np.testing.assert_allclose(grid, [[1.0, 2.0, 3.0], [0.5, 16.0, 8.0]], rtol=1e-12)
    np.testing.assert_array_equal(grid_coords_transform(), np.eye(4))  # z up, 1 unit per voxel
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(MeshError, match="scale"):
            grid_coords_transform("z", bad)


def test_scale_needs_grid_coords(tmp_path: Path):
    (tmp_path / "in").mkdir()
    for options, message in (({"scale": 0.05}, "--grid-coords only"), ({"scale": 0.0}, "positive")):
        config = pipeline.make_config(tmp_path / "in", tmp_path / "out", **options)
        with pytest.raises(pipeline.ConfigError, match=message) as raised:
            pipeline.check_config(config)
        assert raised.value.option == "--scale"
    pipeline.check_config(
        pipeline.make_config(tmp_path / "in", tmp_path / "out", scale=0.05, grid_coords=True)
    )


def test_snap_to_planes_undoes_float32_rounding_only():
    stored = (np.array([[3.0, 16.0, 0.0], [7.0, 255.0, 1.0]]) * 0.05).astype(np.float32)  # a GLB's floats
    grid = apply_transform(stored, grid_coords_transform("z", 0.05))
    assert not (grid == np.round(grid)).all()  # rounding moved some off their planes
    np.testing.assert_array_equal(snap_to_planes(grid), [[3, 16, 0], [7, 255, 1]])
    placed = np.array([[3.001, 15.99999, 0.5]])  # a foreign mesh's own coordinates stay
    np.testing.assert_array_equal(snap_to_planes(placed), placed)
