"""voxgan.results.export: every format from a shard folder or a run, class filters, warnings, and the
command line end to end."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from tests.results.sources import (
    CLASSES,
    assert_closed_outward,
    ball,
    make_run,
    make_shards,
    synthetic_shapes,
)
from voxgan.results.export import ExportConfig, binvox_bytes, export_volumes, read_binvox
from voxgan.results.meshing import blocks_mesh, volume_mesh
from voxgan.shards import ShardHeader, pack, write_json_atomic, write_shard


def test_binvox_reads_back_with_trimesh_and_our_parser(tmp_path):
    volume = ball(16, 6.0, (7, 8, 9))
    volume[0, 0, :] = True  # a long run, longer than one byte can count
    path = tmp_path / "ball.binvox"
    path.write_bytes(binvox_bytes(volume))
    assert np.array_equal(read_binvox(path.read_bytes()), volume)
    grid = trimesh.load(path)
    assert np.array_equal(np.asarray(grid.matrix, bool), volume)


@pytest.fixture(scope="module")
def shard_folder(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("shards"))


MESH_FORMATS = ["obj", "stl", "ply", "glb", "off"]


@pytest.mark.parametrize("fmt", MESH_FORMATS)
@pytest.mark.parametrize("kind", ["blocks", "smooth"])
def test_every_mesh_format_loads_back_with_expected_bounds(shard_folder, tmp_path, fmt, kind):
    config = ExportConfig(format=fmt, data=shard_folder, num=3, mesh=kind, out=tmp_path / "out")
    result = export_volumes(config)
    assert len(result.files) == 3 and "shard folder" in result.source
    volumes, _ = synthetic_shapes(24)  # the test split make_shards wrote
    for path in result.files:
        assert path.suffix == f".{fmt}"
        loaded = trimesh.load(path, force="mesh")
        assert loaded.is_watertight and loaded.volume > 0
        assert np.all(loaded.bounds[0] >= -1e-6) and np.all(loaded.bounds[1] <= 16 + 1e-6)
        matches = [v for v in volumes if np.allclose(volume_mesh(v, kind).bounds, loaded.bounds, atol=1e-4)]
        assert matches, f"{path.name}: bounds {loaded.bounds.tolist()} match no dataset volume"


def test_npy_binvox_png_gif_exports(shard_folder, tmp_path):
    out = tmp_path / "out"
    npy = export_volumes(ExportConfig(format="npy", data=shard_folder, num=5, out=out)).files
    array = np.load(npy[0])
    assert array.shape == (5, 16, 16, 16) and array.dtype == bool
    binvox = export_volumes(ExportConfig(format="binvox", data=shard_folder, num=5, out=out)).files
    assert all(np.array_equal(read_binvox(p.read_bytes()), v) for p, v in zip(binvox, array, strict=True))
    png = export_volumes(ExportConfig(format="png", data=shard_folder, num=5, out=out)).files[0]
    from matplotlib.image import imread

    assert imread(png).shape[2] in (3, 4)
    gif = export_volumes(ExportConfig(format="gif", data=shard_folder, num=1, out=out)).files[0]
    from PIL import Image

    with Image.open(gif) as image:
        assert image.n_frames > 10
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_class_filter_on_shards(shard_folder, tmp_path):
    config = ExportConfig(format="npy", data=shard_folder, num=50, class_name="box", out=tmp_path)
    result = export_volumes(config)
    volumes, labels = synthetic_shapes(24)
    assert np.load(result.files[0]).shape[0] == (labels == CLASSES.index("box")).sum()


def test_empty_volume_warns_instead_of_crashing(tmp_path):
    folder = tmp_path / "empty-shards"
    folder.mkdir()
    occupancy = np.zeros((3, 16, 16, 16), bool)
    occupancy[1, 4:8, 4:8, 4:8] = True
    occupancy[2] = True
    header = ShardHeader(resolution=16, split="test")
    transforms = np.tile(np.eye(4), (3, 1, 1))
    entry = write_shard(
        folder / "test-00000.h5", header, pack(occupancy), [-1] * 3, ["a", "b", "c"], transforms
    )
    manifest = {"schema_version": 1, "resolution": 16, "splits": {"test": {"count": 3, "shards": [entry]}}}
    write_json_atomic(folder / "manifest.json", manifest)
    for kind in ("smooth", "blocks"):
        result = export_volumes(
            ExportConfig(format="obj", data=folder, num=3, mesh=kind, out=tmp_path / kind)
        )
        assert len(result.files) == 2
        assert any("0000.obj: the volume is empty" in warning for warning in result.warnings)
        assert any("0002.obj: every voxel is filled" in warning for warning in result.warnings)
        assert trimesh.load(result.files[-1], force="mesh").is_watertight
    vertices, faces = blocks_mesh(np.zeros((8, 8, 8), bool))
    assert faces.shape == (0, 3)
    full = volume_mesh(np.ones((8, 8, 8), bool), "blocks")
    assert_closed_outward(full)
    assert full.volume == pytest.approx(512)


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "voxgan", *args], capture_output=True, text=True, cwd=cwd)


def test_export_without_source_takes_the_newest_run(tmp_path):
    make_run(tmp_path / "runs", "00000-old")
    newest = make_run(tmp_path / "runs", "00001-new", conditional=True)
    done = run_cli("export", "--format", "npy", "--num", "4", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "00001-new" in done.stderr and "newest run" in done.stderr
    array = np.load(tmp_path / "exports" / f"{newest.name}.npy")
    assert array.shape == (4, 16, 16, 16)
    done = run_cli(
        "export", "--format", "png", "--num", "4", "--class", "torus", "--out", "pics", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "pics" / f"{newest.name}-torus.png").is_file()
    done = run_cli("export", "--format", "gif", "--num", "3", "--run", str(newest), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    from PIL import Image

    with Image.open(tmp_path / "exports" / f"{newest.name}-walk.gif") as walk:
        assert walk.n_frames == 3 * 12  # a closed loop through 3 latents, 12 frames apart


def test_export_cli_errors_are_one_line(tmp_path):
    done = run_cli("export", "--format", "fbx", cwd=tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "fbx" in done.stderr
    done = run_cli("export", "--format", "obj", cwd=tmp_path)  # no ./runs
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1 and "runs" in done.stderr


@pytest.mark.parametrize("kind", ["blocks", "smooth"])
def test_cli_round_trip_through_voxelize_grid_coords(shard_folder, tmp_path, kind):
    from voxgan.shards import read_shard

    meshes, shards = tmp_path / "meshes", tmp_path / "again"
    done = run_cli(
        "export",
        "--data",
        str(shard_folder),
        "--format",
        "obj",
        "--mesh",
        kind,
        "--num",
        "6",
        "--out",
        str(meshes),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    done = run_cli(
        "voxelize",
        str(meshes),
        str(shards),
        "--grid-coords",
        "--resolution",
        "16",
        "--layout",
        "flat",
        "--workers",
        "1",
        "--quiet",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    originals = export_volumes(ExportConfig(format="npy", data=shard_folder, num=6, out=tmp_path / "npy"))
    originals = np.load(originals.files[0])
    again = [read_shard(path) for path in sorted(shards.glob("*.h5"))]
    pairs = [(s, o) for shard in again for s, o in zip(shard.sources, shard.occupancy, strict=True)]
    assert len(pairs) == 6
    for source, occupancy in pairs:
        original = originals[int(Path(source).stem.rsplit("-", 1)[1])]
        if kind == "blocks":
            assert np.array_equal(occupancy, original), source
        else:
            assert (occupancy & original).sum() / (occupancy | original).sum() >= 0.9, source
