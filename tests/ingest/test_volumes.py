"""Voxel arrays as sources (.mat v5 and v7.3, .npy, .npz): one sample per volume, each checked voxel for
voxel through its stored affine; bad volumes become errors and the run goes on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests import meshfiles
from voxgan import shards
from voxgan.ingest import pipeline
from voxgan.ingest.formats import MeshError, read_source
from voxgan.ingest.frame import apply_transform


def blob(side: int, seed: int) -> np.ndarray:
    """(side, side, side) bool, a random asymmetric clump (no mirror or turn of it equals it)."""
    rng = np.random.default_rng(seed)
    volume = rng.random((side, side, side)) < 0.3
    volume[0, 0, :] = True  # an edge along z from the origin, longer than the one along x
    volume[:2, 0, 0] = True
    return volume


def toward_middle(points: np.ndarray, resolution: int) -> np.ndarray:
    """Grid points nudged toward the grid's middle: a point on a voxel boundary is taken on that side."""
    return points + 1e-9 * np.sign(resolution / 2 - points)


def looked_up(volume: np.ndarray, voxel_to_grid: np.ndarray, resolution: int) -> np.ndarray:
    """Each grid voxel's centre mapped back through ``voxel_to_grid`` into the source voxel (i, j, k),
    spanning [i, i+1)³, it lies in: is that voxel occupied? (R, R, R) bool."""
    centres = toward_middle(np.indices((resolution,) * 3).reshape(3, -1).T + 0.5, resolution)
    cells = np.floor(apply_transform(centres, np.linalg.inv(voxel_to_grid))).astype(np.int64)
    inside = ((cells >= 0) & (cells < volume.shape)).all(axis=1)
    found = np.zeros(len(cells), bool)
    found[inside] = volume[tuple(cells[inside].T)]
    return found.reshape((resolution,) * 3)


def resampled(volume: np.ndarray, voxel_to_grid: np.ndarray, resolution: int) -> np.ndarray:
    """The grid the resampling rule gives: a grid voxel is occupied when its centre lies in an occupied
    source voxel or the centre of an occupied source voxel lies in it. (R, R, R) bool."""
    grid = looked_up(volume, voxel_to_grid, resolution)
    landed = toward_middle(apply_transform(np.argwhere(volume) + 0.5, voxel_to_grid), resolution)
    cells = np.floor(landed).astype(np.int64)
    grid[tuple(cells[((cells >= 0) & (cells < resolution)).all(axis=1)].T)] = True
    return grid


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / (a | b).sum()


def write_volume_tree(root: Path) -> dict[str, np.ndarray]:
    """Every array format in class folders; returns {source: volume} for each good volume."""
    chairs = np.stack([blob(8, 1), blob(8, 2), blob(8, 3)]).astype(np.float32)
    chairs[1, 4, 4, 4] = np.nan  # one bad volume in the stack
    tables = np.stack([blob(6, 4), blob(6, 5)])[:, None].astype(np.uint8)  # (N, 1, R, R, R)
    good = {
        "chair/v5.mat": blob(10, 6),
        "chair/v73.mat": blob(12, 7),
        "chair/stack.npy#0": chairs[0] > 0.5,
        "chair/stack.npy#2": chairs[2] > 0.5,
        "table/one.npy": blob(9, 8),
        "table/five.npy#0": tables[0, 0] > 0,
        "table/five.npy#1": tables[1, 0] > 0,
        "table/plain.npz#0": blob(7, 9),
        "table/plain.npz#1": blob(7, 10),
        "table/packed.npz": blob(8, 11),
    }
    meshfiles.write_mat_v5(root / "chair" / "v5.mat", {"instance": good["chair/v5.mat"].astype(np.uint8)})
    meshfiles.write_mat_v73(root / "chair" / "v73.mat", {"instance": good["chair/v73.mat"]})
    np.save(root / "chair" / "stack.npy", chairs)
    np.save(root / "table" / "one.npy", good["table/one.npy"])
    np.save(root / "table" / "five.npy", tables)
    np.savez(
        root / "table" / "plain.npz", volumes=np.stack([good["table/plain.npz#0"], good["table/plain.npz#1"]])
    )
    np.savez_compressed(root / "table" / "packed.npz", good["table/packed.npz"].astype(np.float64))
    return good


def read_samples(folder: Path, manifest: dict) -> dict[str, tuple[int, np.ndarray, np.ndarray]]:
    """{source: (label, occupancy (R, R, R), mesh_to_grid (4, 4))} read back with plain h5py."""
    found = {}
    for info in manifest["splits"].values():
        for entry in info["shards"]:
            with h5py.File(folder / entry["file"], "r") as f:
                r = int(f.attrs["resolution"])
                grids = np.unpackbits(f["voxels"][:], axis=1).reshape(-1, r, r, r).astype(bool)
                for source, label, grid, matrix in zip(
                    f["sources"].asstr()[:], f["labels"][:], grids, f["mesh_to_grid"][:], strict=True
                ):
                    found[source] = (int(label), grid, matrix)
    return found


def test_every_volume_of_every_array_format_lands_voxel_for_voxel_through_its_affine(tmp_path: Path):
    (tmp_path / "in" / "chair").mkdir(parents=True)
    (tmp_path / "in" / "table").mkdir()
    good = write_volume_tree(tmp_path / "in")
    config = pipeline.make_config(tmp_path / "in", tmp_path / "two", resolution=16, workers=2, shard_size=4)
    manifest = pipeline.run_voxelize(config, progress=False)
    assert manifest["layout"] == "folder" and manifest["classes"] == ["chair", "table"]
    assert [(e["source"], e["reason"]) for e in manifest["errors"]] == [
        ("chair/stack.npy#1", "volume holds NaN values")
    ]
    samples = read_samples(tmp_path / "two", manifest)
    assert sorted(samples) == sorted(good)
    for source, volume in good.items():
        label, grid, matrix = samples[source]
        assert label == ["chair", "table"].index(source.split("/")[0])
        np.testing.assert_array_equal(grid, resampled(volume, matrix, 16), err_msg=source)
        filled = np.argwhere(volume)  # the occupied box is fitted to the grid less 0.5 voxel each side
        box = apply_transform(np.stack([filled.min(axis=0), filled.max(axis=0) + 1]).astype(float), matrix)
        assert np.ptp(box, axis=0).max() == pytest.approx(15.0) and box.min() > 0 and box.max() < 16
    one = pipeline.make_config(tmp_path / "in", tmp_path / "one", resolution=16, workers=1, shard_size=4)
    assert (
        pipeline.run_voxelize(one, progress=False)["splits"] == manifest["splits"]
    )  # same bytes, any workers


def test_bad_arrays_are_errors_with_reasons_and_the_good_ones_go_on(tmp_path: Path):
    root = tmp_path / "in"
    root.mkdir()
    np.save(root / "good.npy", blob(8, 1))
    stack = np.stack([blob(8, 2), np.zeros((8, 8, 8), bool), blob(8, 3)])
    np.save(root / "stack.npy", stack)
    np.save(root / "flat.npy", np.ones((4, 4)))  # wrong rank
    np.save(root / "box.npy", np.ones((4, 5, 6)))  # not cubic
    np.save(root / "objects.npy", np.array([{"pickle": 1}], dtype=object), allow_pickle=True)
    np.savez(root / "objects.npz", a=np.array([None, 1], dtype=object))
    (root / "text.npy").write_text("not numpy")
    np.save(tmp_path / "outside.npy", blob(8, 9))
    (root / "link.npy").symlink_to(tmp_path / "outside.npy")  # never read: it lies outside INPUT_DIR
    meshfiles.write_mat_v5(root / "two.mat", {"left": blob(6, 4).astype(np.uint8), "right": blob(6, 5)})
    meshfiles.write_mat_v5(root / "vector.mat", {"instance": np.arange(5.0)})
    done = subprocess.run(
        [sys.executable, "-m", "voxgan", "voxelize", root, tmp_path / "out", "--workers", "1", "--quiet"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    reasons = {e["source"]: e["reason"] for e in manifest["errors"]}
    assert sorted(reasons) == [
        "box.npy", "flat.npy", "link.npy", "objects.npy", "objects.npz", "stack.npy#1", "text.npy",
        "two.mat", "vector.mat",
    ]  # fmt: skip
    assert "is not a volume (R, R, R) or a stack" in reasons["flat.npy"]
    assert "not cubic" in reasons["box.npy"]
    assert "outside the input folder" in reasons["link.npy"]
    assert "Python objects (pickles)" in reasons["objects.npy"] and "pickles" in reasons["objects.npz"]
    assert reasons["stack.npy#1"] == "empty volume: no value above 0.5"
    assert "cannot read .npy" in reasons["text.npy"]
    assert "holds: left, right" in reasons["two.mat"] and "--mat-key" in reasons["two.mat"]
    assert "is not a volume" in reasons["vector.mat"]
    sources = [s for info in manifest["splits"].values() for e in info["shards"]
               for s in shards.read_shard(tmp_path / "out" / e["file"]).sources]  # fmt: skip
    assert sorted(sources) == ["good.npy", "stack.npy#0", "stack.npy#2"]
    chosen = read_source(root, "two.mat", key="right")  # --mat-key names the array
    np.testing.assert_array_equal(chosen.occupancy, blob(6, 5))
    with pytest.raises(MeshError, match="no array named 'middle'.*holds: left, right"):
        read_source(root, "two.mat", key="middle")


def test_units_count_files_so_a_stack_gives_its_volumes_to_its_units_the_same_bytes_any_part(tmp_path: Path):
    """A unit is a range of input files: a stack's volumes go with it (a unit may hold more samples than
    files, and a stack hash-split across train and test has a row per split); parts then the completion
    run write the same shards as one plain run, and only the completion run writes preview.png."""
    root = tmp_path / "in"
    root.mkdir()
    np.save(root / "a.npy", blob(8, 1))
    np.save(root / "b.npy", np.stack([blob(8, seed) for seed in range(2, 12)]))  # 10 volumes
    np.save(root / "c.npy", np.stack([blob(8, 12), blob(8, 13)]))
    options = {"resolution": 16, "shard_size": 1, "test_fraction": 0.5}
    plain = pipeline.run_voxelize(
        pipeline.make_config(root, tmp_path / "plain", workers=1, **options), progress=False
    )
    work = json.loads((tmp_path / "plain" / "plan.json").read_text())
    stacked = [row for row in work["files"] if row[0] == "b.npy"]
    assert sorted(row[2] for row in stacked) == ["test", "train"]  # its volumes fall in both splits
    assert sorted(i for row in stacked for i in row[4]) == list(range(10))
    assert plain["inputs"]["mesh_files"] == 3 and not plain["errors"]
    assert sum(info["count"] for info in plain["splits"].values()) == 13
    assert max(e["count"] for info in plain["splits"].values() for e in info["shards"]) > 1
    for part in ("0/2", "1/2"):
        assert (
            pipeline.run_voxelize(
                pipeline.make_config(root, tmp_path / "parts", workers=2, part=part, **options),
                progress=False,
            )
            is None
        )
        assert not (tmp_path / "parts" / "preview.png").exists()
    done = pipeline.run_voxelize(
        pipeline.make_config(root, tmp_path / "parts", workers=2, **options), progress=False
    )
    assert done["splits"] == plain["splits"] and done["up_axes"] == plain["up_axes"]
    assert (tmp_path / "parts" / "preview.png").is_file()
    for info in plain["splits"].values():
        for entry in info["shards"]:
            assert (tmp_path / "parts" / entry["file"]).read_bytes() == (
                tmp_path / "plain" / entry["file"]
            ).read_bytes()


def write_chairs(root: Path) -> np.ndarray:
    """:func:`thin_chair` as .npy, .binvox and .mat (v5) files in ``root``; returns the chair."""
    chair = meshfiles.thin_chair()
    root.mkdir(parents=True)
    np.save(root / "chair.npy", chair)
    meshfiles.write_binvox(root / "chair.binvox", chair, translate=(0.5, -1.0, 2.0), scale=3.0)
    meshfiles.write_mat_v5(root / "chair.mat", {"instance": chair.astype(np.uint8)})
    return chair


def fitted_chairs(root: Path, samples: dict) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """{source: (grid (R, R, R), source volume (D, D, D), voxel_to_grid (4, 4))} of the chair samples."""
    found = {}
    for source, (_, grid, mesh_to_grid) in samples.items():
        read = read_source(root, source)
        found[source] = (grid, read.occupancy, mesh_to_grid @ read.voxel_to_mesh)
    assert sorted(found) == ["chair.binvox", "chair.mat", "chair.npy"]
    return found


def test_a_volume_fitted_to_a_finer_grid_keeps_its_proportions_and_its_thin_parts_thin(tmp_path: Path):
    from scipy import ndimage

    chair = write_chairs(tmp_path / "in")
    done = subprocess.run(
        [sys.executable, "-m", "voxgan", "voxelize", str(tmp_path / "in"), str(tmp_path / "out"),
         "--resolution", "32", "--workers", "1"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "out" / shards.MANIFEST).read_text())
    chairs = fitted_chairs(tmp_path / "in", read_samples(tmp_path / "out", manifest))
    for source, (grid, volume, voxel_to_grid) in chairs.items():
        assert np.array_equal(volume, chair) and grid.shape == (32, 32, 32)
        assert iou(grid, looked_up(volume, voxel_to_grid, 32)) >= 0.95, source
        # a cut across the legs half-way up them: four legs, each one or two grid voxels thick
        up = np.abs(voxel_to_grid[:3, 2]).argmax()  # the grid axis the legs (source z) lie along
        middle = int(apply_transform(np.array([[6.5, 6.5, 8.0]]), voxel_to_grid)[0, up])
        labels, legs = ndimage.label(np.take(grid, middle, axis=up))
        assert legs == 4, source
        for piece in ndimage.find_objects(labels):
            assert all(1 <= cut.stop - cut.start <= 2 for cut in piece), (source, piece)


def test_a_volume_fitted_to_a_coarser_grid_keeps_every_part_and_stays_one_piece(tmp_path: Path):
    from scipy import ndimage

    write_chairs(tmp_path / "in")
    config = pipeline.make_config(tmp_path / "in", tmp_path / "out", resolution=16, workers=1)
    chairs = fitted_chairs(
        tmp_path / "in", read_samples(tmp_path / "out", pipeline.run_voxelize(config, progress=False))
    )
    for source, (grid, volume, voxel_to_grid) in chairs.items():
        assert abs(np.linalg.det(voxel_to_grid[:3, :3])) < 0.5  # several source voxels per grid voxel
        landed = np.floor(toward_middle(apply_transform(np.argwhere(volume) + 0.5, voxel_to_grid), 16))
        assert grid[tuple(landed.astype(np.int64).T)].all(), source  # no source voxel vanishes
        assert ndimage.label(grid)[1] == 1, source  # legs, seat and back hold together
        np.testing.assert_array_equal(grid, resampled(volume, voxel_to_grid, 16), err_msg=source)


def test_an_exact_two_to_one_volume_is_the_max_pool_of_its_blocks(tmp_path: Path):
    (tmp_path / "in").mkdir()
    volume = np.random.default_rng(12).random((64, 64, 64)) < 0.02  # max-pooled: about 15% occupied
    np.save(tmp_path / "in" / "big.npy", volume)
    config = pipeline.make_config(
        tmp_path / "in", tmp_path / "out", resolution=32, workers=1, grid_coords=True, scale=2.0
    )
    ((_, grid, mesh_to_grid),) = read_samples(
        tmp_path / "out", pipeline.run_voxelize(config, progress=False)
    ).values()
    np.testing.assert_array_equal(mesh_to_grid, np.diag([0.5, 0.5, 0.5, 1.0]))
    np.testing.assert_array_equal(grid, volume.reshape(32, 2, 32, 2, 32, 2).any(axis=(1, 3, 5)))


def test_a_run_of_volumes_alone_never_starts_numba(tmp_path: Path):
    """Volumes are only resampled: a job array's task over them does not pay numba's start-up; meshes do."""
    pytest.importorskip("numba")
    write_chairs(tmp_path / "volumes")
    meshfiles.write_off(tmp_path / "meshes" / "box.off", meshfiles.box_vertices(), meshfiles.box_triangles())
    env = {k: v for k, v in os.environ.items() if k != "VOXGAN_NO_NUMBA"}
    for kind, started in (("volumes", "False"), ("meshes", "True")):
        config = (
            f"pipeline.make_config({str(tmp_path / kind)!r}, {str(tmp_path / f'{kind}-out')!r}, workers=1)"
        )
        run = (
            "import sys; from voxgan.ingest import pipeline; "
            f"pipeline.run_voxelize({config}, progress=False); print('numba' in sys.modules)"
        )
        done = subprocess.run(
            [sys.executable, "-c", run], env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0 and done.stdout.strip() == started, (
            kind,
            done.stdout,
            done.stderr[-2000:],
        )
