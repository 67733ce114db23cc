import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from tests.results.sources import CLASSES, make_run, make_shards, synthetic_shapes
from voxgan.export import (
    ExportConfig,
    binvox_bytes,
    blocks_mesh,
    export_volumes,
    read_binvox,
    smooth_mesh,
    volume_mesh,
)
from voxgan.ingest.voxelize import surface_voxels, voxelize
from voxgan.shards import ShardHeader, pack, write_json_atomic, write_shard


def ball(resolution=16, radius=5.0, centre=(8, 8, 8)):
    points = np.indices((resolution,) * 3).transpose(1, 2, 3, 0) + 0.5
    return np.linalg.norm(points - np.array(centre), axis=-1) < radius


def pinched():
    """Two voxels touching along an edge, one touching the first at a corner, and a solid block."""
    volume = np.zeros((8, 8, 8), bool)
    volume[2, 2, 2] = volume[3, 3, 2] = volume[4, 4, 3] = True
    volume[1:4, 5:7, 4:7] = True
    return volume


def assert_closed_outward(mesh):
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume > 0
    assert len(np.unique(mesh.vertices, axis=0)) == len(mesh.vertices)  # no duplicate vertices


VOLUMES = {
    "ball": ball(),
    "pinched": pinched(),
    "shapes": synthetic_shapes(8)[0],
}


@pytest.mark.parametrize("kind", ["blocks", "smooth"])
@pytest.mark.parametrize("name", ["ball", "pinched", "shapes"])
def test_meshes_are_watertight_with_outward_normals(kind, name):
    volumes = VOLUMES[name] if name == "shapes" else [VOLUMES[name]]
    for volume in volumes:
        if volume.any():
            assert_closed_outward(volume_mesh(volume, kind))


@pytest.mark.parametrize("name", ["ball", "pinched", "shapes"])
def test_blocks_round_trip_is_exact(name):
    volumes = VOLUMES[name] if name == "shapes" else [VOLUMES[name]]
    for volume in volumes:
        vertices, faces = blocks_mesh(volume)
        assert np.array_equal(voxelize(vertices, faces, len(volume)), volume)


@pytest.mark.parametrize("name", ["ball", "pinched", "shapes"])
def test_smooth_round_trip_iou(name):
    volumes = VOLUMES[name] if name == "shapes" else [VOLUMES[name]]
    for volume in volumes:
        vertices, faces = smooth_mesh(volume)
        back = voxelize(vertices, faces, len(volume))
        assert (back & volume).sum() / (back | volume).sum() >= 0.9


def test_blocks_mesh_encloses_the_voxel_volume_in_grid_coordinates():
    volume = np.zeros((16, 16, 16), bool)
    volume[2:6, 3:8, 4:10] = True
    mesh = volume_mesh(volume, "blocks")
    assert mesh.volume == pytest.approx(volume.sum())
    assert np.allclose(mesh.bounds, [[2, 3, 4], [6, 8, 10]])


def noise(resolution, fill, seed):
    """Independent random voxels, like the samples of an untrained generator."""
    return np.random.default_rng(seed).random((resolution,) * 3) < fill


def enclosed_cavities(volume):
    """(R, R, R) bool: empty voxels cut off from the outside (through faces and edges) by occupied ones."""
    from scipy import ndimage

    regions, _ = ndimage.label(~np.pad(volume, 1), ndimage.generate_binary_structure(3, 2))
    return (regions != regions[0, 0, 0])[1:-1, 1:-1, 1:-1]


def assert_blocks_round_trip(volume):
    """Exact, but for some enclosed cavities, whose wall shares a sheet with the outer surface and fills."""
    vertices, faces = blocks_mesh(volume)
    back = voxelize(vertices, faces, len(volume))
    cavities = enclosed_cavities(volume)
    assert np.array_equal(back & volume, volume)  # nothing lost
    assert not (back & ~volume & ~cavities).any()  # no empty voxel gained outside a cavity
    if not cavities.any():
        assert np.array_equal(back, volume)


@pytest.mark.parametrize("fill", [0.2, 0.5, 0.8])
def test_blocks_mesh_of_noise_is_closed_and_round_trips(fill):
    for seed in range(3):
        volume = noise(16, fill, seed)
        mesh = volume_mesh(volume, "blocks")
        assert_closed_outward(mesh)
        assert mesh.volume == pytest.approx(volume.sum(), abs=1e-3 * len(mesh.faces))
        assert_blocks_round_trip(volume)


def test_blocks_mesh_of_noise_at_32_is_closed_and_crosses_no_empty_voxel():
    """The surface half of the round trip (voxelize's inside test takes about a minute on 32³ noise)."""
    volume = noise(32, 0.5, 7)
    mesh = volume_mesh(volume, "blocks")
    assert_closed_outward(mesh)
    assert mesh.volume == pytest.approx(volume.sum(), abs=1e-3 * len(mesh.faces))
    crossed = surface_voxels(mesh.vertices, mesh.faces, 32)
    assert crossed.any() and not (crossed & ~volume).any()


def test_blocks_mesh_of_every_corner_configuration():
    """All 255 non-empty 2×2×2 occupancies around one lattice point: edge and corner pinches included."""
    for code in range(1, 256):
        volume = np.zeros((4, 4, 4), bool)
        for bit, (x, y, z) in enumerate(itertools.product((0, 1), repeat=3)):
            volume[1 + x, 1 + y, 1 + z] = bool(code >> bit & 1)
        assert_closed_outward(volume_mesh(volume, "blocks"))
        vertices, faces = blocks_mesh(volume)
        assert np.array_equal(voxelize(vertices, faces, 4), volume), code


@pytest.mark.parametrize("middle", ["diagonal", "anti-diagonal"])
def test_blocks_mesh_splits_an_edge_whose_two_sheets_share_both_ends(middle):
    """Two voxels touching along an edge and joined at both of its ends: the edge's sides need midpoints."""
    volume = np.zeros((5, 5, 5), bool)
    volume[1:3, 1:3, 1] = volume[1:3, 1:3, 3] = True
    if middle == "diagonal":
        volume[1, 1, 2] = volume[2, 2, 2] = True
    else:
        volume[1, 2, 2] = volume[2, 1, 2] = True
    vertices, faces = blocks_mesh(volume)
    mesh = volume_mesh(volume, "blocks")
    assert_closed_outward(mesh)
    assert mesh.volume == pytest.approx(10, abs=1e-2)
    assert np.array_equal(voxelize(vertices, faces, 5), volume)
    on_edge = np.isclose(vertices[:, 2] % 1, 0.5) & np.isclose(vertices[:, :2], 2, atol=0.01).all(axis=1)
    assert on_edge.sum() == 2  # one midpoint per voxel along the shared edge


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
