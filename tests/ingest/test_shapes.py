"""The built-in shapes dataset: determinism, layout, formats, z-up geometry and thin parts at 16³."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import trimesh
from scipy import ndimage

from voxgan.errors import VoxganError
from voxgan.ingest import shapes
from voxgan.ingest.formats import load_mesh
from voxgan.ingest.frame import apply_transform, grid_transform
from voxgan.ingest.voxelize import inside_voxels, voxelize

SMALL = dict(train_per_class=3, test_per_class=1)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "voxgan", *args], capture_output=True, text=True, timeout=120
    )


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shapes") / "shapes"
    shapes.generate_shapes(out, seed=0, **SMALL)
    return out


def occupancy_16(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(R, R, R) bool at 16³, as the voxelize pipeline does it (largest extent over 15 voxels, z up)."""
    matrix = grid_transform(vertices, 16)
    return voxelize(apply_transform(vertices, matrix), faces, 16, mode="solid")


def components(mask: np.ndarray) -> int:
    return ndimage.label(mask, structure=np.ones((3,) * mask.ndim))[1]


# --- determinism, counts, layout ---------------------------------------------------------------------


def test_same_seed_gives_byte_identical_files_and_another_seed_differs(tmp_path, small_set):
    done = run_cli("shapes", str(tmp_path / "again"), "--train-per-class", "3", "--test-per-class", "1")
    assert done.returncode == 0, done.stderr
    first, again = files_of(small_set), files_of(tmp_path / "again")
    assert first == again
    shapes.generate_shapes(tmp_path / "other", seed=1, **SMALL)
    other = files_of(tmp_path / "other")
    assert other.keys() == first.keys()
    assert all(other[name] != first[name] for name in first)


def test_class_balance_and_modelnet_layout(small_set):
    assert len(shapes.CLASSES) >= 8 and len(set(shapes.CLASSES)) == len(shapes.CLASSES)
    assert sorted(p.name for p in small_set.iterdir()) == sorted(shapes.CLASSES)
    for name in shapes.CLASSES:
        train = sorted(p.name for p in (small_set / name / "train").iterdir())
        test = sorted(p.name for p in (small_set / name / "test").iterdir())
        assert [n.rsplit(".", 1)[0] for n in train] == [f"{name}_{i:04d}" for i in (1, 2, 3)]
        assert [n.rsplit(".", 1)[0] for n in test] == [f"{name}_0004"]  # test numbers follow train's
    assert not [p for p in small_set.parent.iterdir() if p.name.startswith(".")]  # no staging left


def test_returned_counts_and_expected_counts_constant(tmp_path):
    counts = shapes.generate_shapes(tmp_path / "s", train_per_class=2, test_per_class=0)
    assert counts == {name: {"train": 2, "test": 0} for name in shapes.CLASSES}
    assert not any(list((tmp_path / "s" / name / "test").iterdir()) for name in shapes.CLASSES)
    expected = {name: {"train": 100, "test": 20} for name in shapes.CLASSES}
    assert expected == shapes.EXPECTED_COUNTS


def test_a_smaller_set_is_a_prefix_of_a_larger_one(tmp_path, small_set):
    shapes.generate_shapes(tmp_path / "s", seed=0, train_per_class=1, test_per_class=1)
    smaller = files_of(tmp_path / "s")
    larger = files_of(small_set)
    for name, data in smaller.items():
        if "/train/" in name:
            assert larger[name] == data
    # the test meshes keep their content even though their numbers move with the train count
    for cls in shapes.CLASSES:
        small_test = next((tmp_path / "s" / cls / "test").iterdir())
        large_test = next((small_set / cls / "test").iterdir())
        a, b = trimesh.load(small_test, force="mesh"), trimesh.load(large_test, force="mesh")
        assert np.allclose(np.sort(a.vertices, axis=0), np.sort(b.vertices, axis=0), atol=1e-5)


# --- formats ------------------------------------------------------------------------------------------


def test_formats_rotate_and_the_modelnet_off_quirk_is_present(small_set):
    files = files_of(small_set)
    extensions = {name.rsplit(".", 1)[1] for name in files}
    assert extensions == {"obj", "off", "stl", "ply"}
    offs = [data for name, data in files.items() if name.endswith(".off")]
    fused = [data for data in offs if data[3:4].isdigit()]
    assert fused and len(fused) < len(offs)  # some "OFF490 518 0", some "OFF\n490 518 0"
    assert all(data.split(b"\n", 1)[0].split()[2] == b"0" for data in fused)
    for name, data in files.items():
        if name.endswith(".stl"):
            count = int(np.frombuffer(data[80:84], "<u4")[0])
            assert len(data) == 84 + 50 * count  # binary STL
        if name.endswith(".ply"):
            assert data.startswith(b"ply\nformat binary_little_endian 1.0\n")


def test_every_file_loads_with_trimesh_and_voxgan_as_the_mesh_that_was_built(small_set):
    for cls in shapes.CLASSES:
        for split, count, first in (("train", 3, 1), ("test", 1, 4)):
            for index in range(count):
                vertices, faces = shapes.build_shape(cls, shapes.shape_rng(0, cls, split, index))
                fmt, _ = shapes.file_format(cls, first + index)
                path = small_set / cls / split / f"{cls}_{first + index:04d}.{fmt}"
                mesh = trimesh.load(path, force="mesh")
                assert len(mesh.faces) == len(faces), path
                assert np.allclose(mesh.bounds, [vertices.min(0), vertices.max(0)], atol=1e-5), path
                assert mesh.volume > 0, path  # every shell faces outward
                loaded_vertices, loaded_faces = load_mesh(path, small_set)
                assert len(loaded_faces) == len(faces), path


def test_every_part_is_a_closed_outward_shell():
    for cls in shapes.CLASSES:
        for index in range(5):
            vertices, faces = shapes.build_shape(cls, shapes.shape_rng(7, cls, "train", index))
            assert vertices.dtype == np.float64 and faces.dtype == np.int64
            assert vertices.shape[1] == 3 and faces.shape[1] == 3
            for shell in trimesh.Trimesh(vertices, faces, process=False).split(only_watertight=False):
                assert shell.is_watertight and shell.volume > 0, (cls, index)


# --- geometry: z up, standing on the floor, thin parts at 16³ ------------------------------------------


def test_every_shape_stands_on_z0_centred_and_within_bounds():
    for cls in shapes.CLASSES:
        for index in range(8):
            vertices, _ = shapes.build_shape(cls, shapes.shape_rng(0, cls, "train", index))
            low, high = vertices.min(0), vertices.max(0)
            assert low[2] == pytest.approx(0.0, abs=1e-12), cls
            assert np.allclose((low[:2] + high[:2]) / 2, 0.0, atol=1e-12), cls
            assert 0.05 < (high - low).max() < 2.6, cls


def test_chair_legs_reach_the_floor_and_the_back_rises_at_minus_y():
    for index in range(6):
        vertices, faces = shapes.build_shape("chair", shapes.shape_rng(0, "chair", "train", index))
        seat_top = np.percentile(vertices[:, 2], 50)
        top = vertices[:, 2] > vertices[:, 2].max() - 0.05
        assert vertices[top, 1].mean() < -0.1  # the top of the chair is its backrest, at -y
        occupancy = occupancy_16(vertices, faces)
        floor = occupancy[:, :, 0]
        assert 2 <= components(floor) <= 4  # legs (joined in pairs where stretchers run low)
        assert floor.sum() < 0.6 * occupancy.any(axis=2).sum()  # legs, not a slab
        assert seat_top > 0.3


def test_stool_has_three_or_four_separate_feet():
    for index in range(6):
        vertices, faces = shapes.build_shape("stool", shapes.shape_rng(0, "stool", "train", index))
        occupancy = occupancy_16(vertices, faces)
        assert components(occupancy[:, :, 0]) in (3, 4)


def test_mug_is_open_at_the_top_closed_below_with_a_handle_on_plus_x():
    for index in range(6):
        vertices, faces = shapes.build_shape("mug", shapes.shape_rng(0, "mug", "train", index))
        occupancy = occupancy_16(vertices, faces)
        zs = np.flatnonzero(occupancy.any(axis=(0, 1)))
        top = occupancy[:, :, zs[-1]]
        opening = ndimage.binary_fill_holes(top) & ~top
        assert opening.sum() >= 4, index  # the rim encloses an opening
        assert occupancy[:, :, zs[0]][opening].all()  # the floor under it is closed
        assert np.argwhere(opening)[:, 0].mean() < 7.5  # the cup sits at -x ...
        xs, ys = np.flatnonzero(occupancy.any(axis=(1, 2))), np.flatnonzero(occupancy.any(axis=(0, 2)))
        assert xs[-1] - xs[0] > ys[-1] - ys[0]  # ... and the handle widens it along +x


def test_classes_differ_in_structure_and_shapes_vary_inside_a_class():
    grids, labels = [], []
    for label, cls in enumerate(shapes.CLASSES):
        for index in range(6):
            vertices, faces = shapes.build_shape(cls, shapes.shape_rng(5, cls, "train", index))
            grids.append(occupancy_16(vertices, faces).reshape(-1))
            labels.append(label)
    grids, labels = np.array(grids, dtype=np.int32), np.array(labels)
    both = grids @ grids.T
    sizes = grids.sum(axis=1)
    iou = both / (sizes[:, None] + sizes[None, :] - both)
    np.fill_diagonal(iou, -1.0)
    nearest = labels[iou.argmax(axis=1)]
    assert (nearest == labels).mean() >= 0.8  # the nearest other shape is nearly always of the same class
    same_class = labels[:, None] == labels[None, :]
    assert iou[same_class & (iou >= 0)].max() < 0.97  # no two shapes of a class are (nearly) the same
    assert iou[same_class & (iou >= 0)].mean() < 0.8


@pytest.mark.parametrize("cls", shapes.CLASSES)
def test_thin_parts_survive_at_16_every_shape_is_one_piece(cls):
    for index in range(4):
        vertices, faces = shapes.build_shape(cls, shapes.shape_rng(3, cls, "test", index))
        occupancy = occupancy_16(vertices, faces)
        assert components(occupancy) == 1, (cls, index)
        # stricter than the pipeline: voxel centres inside the shape alone are connected too
        matrix = grid_transform(vertices, 16)
        inside = inside_voxels(apply_transform(vertices, matrix), faces, 16)
        assert components(inside) == 1, (cls, index)


# --- refusing, replacing, surviving a kill ------------------------------------------------------------


def test_an_existing_folder_is_refused_unless_overwrite_replaces_an_earlier_set(tmp_path):
    out = tmp_path / "shapes"
    shapes.generate_shapes(out, train_per_class=2, test_per_class=1)
    before = files_of(out)
    with pytest.raises(VoxganError, match="--overwrite"):
        shapes.generate_shapes(out, train_per_class=1, test_per_class=1)
    assert files_of(out) == before
    shapes.generate_shapes(out, overwrite=True, train_per_class=1, test_per_class=1)
    assert len(files_of(out)) == 2 * len(shapes.CLASSES)
    assert [p.name for p in tmp_path.iterdir()] == ["shapes"]  # no staging or old copy left


def test_overwrite_never_deletes_a_folder_that_is_not_a_shapes_set(tmp_path):
    mine = tmp_path / "mine"
    (mine / "chair").mkdir(parents=True)
    (mine / "chair" / "a.obj").write_text("v 0 0 0\n")
    (mine / "notes.txt").write_text("keep")
    before = files_of(mine)
    with pytest.raises(VoxganError, match="notes.txt"):
        shapes.generate_shapes(mine, overwrite=True, train_per_class=1, test_per_class=1)
    assert files_of(mine) == before
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]


def test_an_empty_existing_folder_is_filled(tmp_path):
    (tmp_path / "shapes").mkdir()
    shapes.generate_shapes(tmp_path / "shapes", train_per_class=1, test_per_class=0)
    assert len(files_of(tmp_path / "shapes")) == len(shapes.CLASSES)


def test_cli_errors_are_one_line_with_the_right_exit_code(tmp_path):
    out = tmp_path / "shapes"
    assert run_cli("shapes", str(out), "--train-per-class", "1", "--test-per-class", "0").returncode == 0
    again = run_cli("shapes", str(out), "--train-per-class", "1")
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        f"voxgan: error: {out} already exists and is not empty; pass --overwrite to replace it"
    ]
    nothing = ["--train-per-class", "0", "--test-per-class", "0"]
    for bad in (["--seed", "-1"], ["--train-per-class", "-2"], nothing):
        done = run_cli("shapes", str(tmp_path / "new"), *bad)
        assert done.returncode == 2, bad
        assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("voxgan: error: ")
    assert not (tmp_path / "new").exists()


def test_a_killed_run_leaves_no_half_filled_folder_and_the_next_run_cleans_up(tmp_path):
    out = tmp_path / "shapes"
    process = subprocess.Popen(
        [sys.executable, "-m", "voxgan", "shapes", str(out), "--train-per-class", "5000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            staging = list(tmp_path.glob(".shapes.partial-*"))
            if staging and sum(1 for _ in staging[0].rglob("*.*")) > 20:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the generator never started writing")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    assert not out.exists()
    assert list(tmp_path.glob(".shapes.partial-*"))  # the killed run's staging folder
    shapes.generate_shapes(out, train_per_class=1, test_per_class=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shapes"]
