"""voxgan.results.export: every format from a shard folder or a run, class filters, warnings, and the
command line end to end."""

import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from tests.results.sources import (
    CLASSES,
    assert_closed_outward,
    make_run,
    make_shards,
    synthetic_shapes,
)
from voxgan.atomic import write_json_atomic
from voxgan.binvox import parse_binvox
from voxgan.ingest import pipeline
from voxgan.results.export import (
    ExportConfig,
    check_export_config,
    export_binvox,
    export_transform,
    export_up_axis,
    export_volumes,
)
from voxgan.results.meshing import blocks_mesh, volume_mesh, without_specks
from voxgan.results.metrics import piece_counts
from voxgan.shards import ShardHeader, pack, read_shard, write_shard


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
        loaded = trimesh.load(path, force="mesh")  # trimesh keeps a file's frame: GLB stays +y up
        loaded.apply_transform(np.linalg.inv(export_transform(export_up_axis(fmt))))
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
    assert all(np.array_equal(parse_binvox(p.read_bytes())[0], v) for p, v in zip(binvox, array, strict=True))
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


def test_a_generator_s_volumes_are_exported_without_specks_unless_kept(tmp_path):
    """The default export is the --keep-specks export with the pieces under 5% of each volume's largest
    taken out, and says how many volumes lost some; volumes of a shard folder are never touched."""
    run = make_run(tmp_path / "runs", conditional=True)
    args = ["export", "--format", "npy", "--num", "16", "--run", str(run)]
    done = run_cli(*args, cwd=tmp_path)
    kept = run_cli(*args, "--keep-specks", "--out", "kept", cwd=tmp_path)
    assert done.returncode == 0 and kept.returncode == 0, done.stderr + kept.stderr
    cleaned = np.load(tmp_path / "exports" / f"{run.name}.npy")
    made = np.load(tmp_path / "kept" / f"{run.name}.npy")
    changed = int((cleaned != made).any(axis=(1, 2, 3)).sum())
    assert changed > 0 and (piece_counts(made) > 1).any()  # the untrained generator leaves specks
    assert np.array_equal(cleaned, without_specks(made)) and not (cleaned & ~made).any()
    assert f"specks taken out of {changed} of 16 volume(s)" in done.stdout
    assert "specks" not in kept.stdout


def test_export_cli_errors_are_one_line(tmp_path):
    done = run_cli("export", "--format", "fbx", cwd=tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "fbx" in done.stderr
    done = run_cli("export", "--format", "glb", "--up-axis", "z", cwd=tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "+y up" in done.stderr
    done = run_cli("export", "--format", "obj", cwd=tmp_path)  # no ./runs
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1 and "runs" in done.stderr


@pytest.mark.parametrize("kind", ["blocks", "smooth"])
def test_cli_round_trip_through_voxelize_grid_coords(shard_folder, tmp_path, kind):
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
        *(["--up-axis", "y", "--scale", "0.05"] if kind == "blocks" else []),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    (frame,) = [line for line in done.stdout.splitlines() if line.startswith("frame: ")]
    expected = (
        "+y up (--up-axis), 1 voxel = 0.05 unit" if kind == "blocks" else "+z up (--up-axis), 1 voxel = 1"
    )
    assert expected in frame, frame
    back_options = frame.split(" SHARDS ")[1].split()  # the options the line says bring the files back
    assert back_options[:3] == ["--grid-coords", "--resolution", "16"]
    done = run_cli(
        "voxelize",
        str(meshes),
        str(shards),
        *back_options,
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


def write_volumes(folder, occupancy):
    """A shard folder holding ``occupancy`` (N, R, R, R) bool in its test split."""
    folder.mkdir(parents=True)
    count = len(occupancy)
    header = ShardHeader(resolution=occupancy.shape[1], split="test")
    transforms = np.tile(np.eye(4), (count, 1, 1))
    sources = [f"{i}.obj" for i in range(count)]
    entry = write_shard(folder / "test-00000.h5", header, pack(occupancy), [-1] * count, sources, transforms)
    manifest = {
        "schema_version": 1,
        "resolution": 16,
        "splits": {"test": {"count": count, "shards": [entry]}},
    }
    write_json_atomic(folder / "manifest.json", manifest)
    return folder


def tall_box():
    """One (1, 16, 16, 16) volume: 8 voxels wide along x (4 to 12), 4 deep along y (5 to 9), 16 tall."""
    volume = np.zeros((1, 16, 16, 16), bool)
    volume[0, 4:12, 5:9, :] = True
    return volume


def glb_position_bounds(path):
    """(min, max) of the POSITION accessor of a GLB's one primitive, read from the file's JSON chunk."""
    data = path.read_bytes()
    magic, version, _ = struct.unpack_from("<4sII", data, 0)
    length, kind = struct.unpack_from("<I4s", data, 12)
    assert (magic, version, kind) == (b"glTF", 2, b"JSON")
    tree = json.loads(data[20 : 20 + length])
    for node in tree["nodes"]:  # no node transform: the accessor bounds are where the viewer puts it
        assert not {"matrix", "rotation", "scale", "translation"} & node.keys(), node
    (primitive,) = [p for mesh in tree["meshes"] for p in mesh["primitives"]]
    accessor = tree["accessors"][primitive["attributes"]["POSITION"]]
    return np.array(accessor["min"]), np.array(accessor["max"])


@pytest.mark.parametrize("kind", ["blocks", "smooth"])
def test_a_volume_tall_along_z_exports_as_a_glb_tall_along_y(tmp_path, kind):
    folder = write_volumes(tmp_path / "tall", tall_box())
    for scale in (1.0, 0.05):
        config = ExportConfig(format="glb", data=folder, mesh=kind, scale=scale, out=tmp_path / f"{scale}")
        result = export_volumes(config)
        low, high = glb_position_bounds(result.files[0])
        extents = (high - low) / scale
        assert extents[1] == pytest.approx(extents.max()) and extents[1] > 15  # tallest along +y
        assert extents[0] > extents[2]  # x stays x (8 wide); the grid's y (4 deep) is glTF's z
        assert low[1] == pytest.approx(0.0, abs=0.5 * scale) and high[1] == pytest.approx(16 * scale, abs=0.5)
        if kind == "blocks":  # by a rotation: grid (x, y, z) -> glTF (x, z, -y), times --scale
            np.testing.assert_allclose(low, np.array([4, 0, -9]) * scale, rtol=1e-6)
            np.testing.assert_allclose(high, np.array([12, 16, -5]) * scale, rtol=1e-6)
        assert result.frame.startswith(f"frame: +y up (glTF specification), 1 voxel = {scale:g} m")


def obj_vertices(path):
    """(V, 3) vertices of an OBJ file, read from its ``v`` lines."""
    lines = path.read_text().splitlines()
    return np.array([[float(x) for x in line.split()[1:4]] for line in lines if line.startswith("v ")])


def test_up_axis_y_obj_stands_along_y_and_voxelize_up_axis_y_turns_it_back(tmp_path):
    folder = write_volumes(tmp_path / "tall", tall_box())
    for up_axis, tallest in ((None, 2), ("y", 1), ("-x", 0)):
        config = ExportConfig(format="obj", data=folder, mesh="blocks", up_axis=up_axis, out=tmp_path / "obj")
        result = export_volumes(config)
        vertices = obj_vertices(result.files[0])
        assert np.ptp(vertices, axis=0).argmax() == tallest and np.ptp(vertices, axis=0).max() == 16
        assert f"frame: +{up_axis or 'z'} up (--up-axis)".replace("+-", "-") in result.frame
        back = voxelize_back(tmp_path / "obj", tmp_path / f"back-{up_axis}", up_axis or "z", 1.0)
        assert np.array_equal(back[result.files[0].name], tall_box()[0])  # the same axis turns it back


def voxelize_back(folder, out, up_axis, scale):
    """Voxelize every file in ``folder`` with --grid-coords; {file name: (16, 16, 16) bool}."""
    config = pipeline.make_config(
        folder,
        out,
        layout="flat",
        workers=1,
        test_fraction=0.0,
        grid_coords=True,
        up_axis=up_axis,
        scale=scale,
    )
    pipeline.check_config(config)
    manifest = pipeline.run_voxelize(config, progress=False)
    assert not manifest["errors"], manifest["errors"]
    back = {}
    for entry in manifest["splits"]["train"]["shards"]:
        shard = read_shard(config.output_dir / entry["file"])
        back.update(zip(shard.sources, shard.occupancy, strict=True))
    return back


@pytest.mark.parametrize(("up_axis", "scale"), [(None, 1.0), ("y", 0.05), ("-x", 2.5)])
def test_every_mesh_format_and_binvox_come_back_unchanged_through_grid_coords(
    shard_folder, tmp_path, up_axis, scale
):
    """export --mesh blocks, then voxelize --grid-coords with the same --up-axis and --scale: identical
    volumes, every format (GLB at its fixed +y, undone by the importer whatever --up-axis says)."""
    originals, _ = synthetic_shapes(24)
    files = tmp_path / "files"
    for fmt in (*MESH_FORMATS, "binvox"):
        axis = None if fmt == "glb" else up_axis
        config = ExportConfig(format=fmt, data=shard_folder, num=6, mesh="blocks", up_axis=axis, scale=scale)
        config.out = files
        export_volumes(config)
    back = voxelize_back(files, tmp_path / "back", up_axis or "z", scale)
    assert len(back) == 6 * 6
    chosen = np.load(
        export_volumes(ExportConfig(format="npy", data=shard_folder, num=6, out=tmp_path)).files[0]
    )
    for name, occupancy in back.items():
        original = chosen[int(Path(name).stem.rsplit("-", 1)[1])]
        assert original.any() and np.array_equal(occupancy, original), name
    assert any(np.array_equal(chosen[0], volume) for volume in originals)


def test_turned_binvox_says_where_its_voxels_are():
    volume = tall_box()[0]
    occupancy, voxel_to_mesh = parse_binvox(export_binvox(volume, "y", 0.5))
    assert occupancy.shape == (16, 16, 16) and voxel_to_mesh[1, 1] == 0.5
    np.testing.assert_array_equal(voxel_to_mesh[:3, 3], [0, 0, -8])  # the turned grid's corner, scaled
    filled = np.argwhere(occupancy)  # tall along y now; the grid's y 5..8 became z 16-9..16-6
    np.testing.assert_array_equal(filled.min(axis=0), [4, 0, 7])
    np.testing.assert_array_equal(filled.max(axis=0), [11, 15, 10])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"format": "glb", "up_axis": "z"}, "glb is +y up by its specification"),
        ({"format": "npy", "scale": 0.05}, "npy holds the grid itself"),
        ({"format": "png", "up_axis": "y"}, "png holds the grid itself"),
        ({"format": "obj", "up_axis": "w"}, "unknown up axis 'w'"),
        ({"format": "obj", "scale": 0.0}, "--scale must be a positive"),
        ({"format": "stl", "scale": float("inf")}, "--scale must be a positive"),
    ],
)
def test_frame_options_that_cannot_work_are_refused(options, message):
    from voxgan.errors import VoxganError

    with pytest.raises(VoxganError, match=re.escape(message)):
        check_export_config(ExportConfig(**options))
    check_export_config(ExportConfig(format="glb", up_axis="y", scale=0.05))  # glb's own axis is fine


VALIDATOR = Path(__file__).resolve().parents[2] / ".cache" / "npm" / "node_modules" / "gltf-validator"
VALIDATE = """
const validator = require(process.argv[1]);
const fs = require("fs");
(async () => {
  const issues = {};
  for (const path of process.argv.slice(2)) {
    issues[path] = (await validator.validateBytes(new Uint8Array(fs.readFileSync(path)))).issues;
  }
  console.log(JSON.stringify(issues));
})().catch((error) => { console.error(String(error)); process.exit(1); });
"""


def test_the_khronos_gltf_validator_finds_nothing_wrong_with_exported_glb(shard_folder, tmp_path):
    """glTF's reference validator (``make install`` puts it in .cache/npm) on smooth and blocks GLB files."""
    import shutil

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the Khronos glTF validator runs on Node.js")
    assert VALIDATOR.is_dir(), f"no glTF validator in {VALIDATOR.parent}: run `make install`"
    files = []
    for kind, scale in (("blocks", 1.0), ("smooth", 1.0), ("blocks", 0.05), ("smooth", 0.05)):
        out = tmp_path / f"{kind}-{scale}"
        files += export_volumes(
            ExportConfig(format="glb", data=shard_folder, num=2, mesh=kind, scale=scale, out=out)
        ).files
    done = subprocess.run(
        [node, "-e", VALIDATE, str(VALIDATOR), *map(str, files)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    for path, issues in json.loads(done.stdout).items():
        counts = {key: issues[key] for key in ("numErrors", "numWarnings", "numInfos")}
        assert counts == {"numErrors": 0, "numWarnings": 0, "numInfos": 0}, (path, issues["messages"])


def test_html_export_of_64_shard_volumes_renders_every_one_offline(browser, tmp_path):
    from tests.browser import captions, check_page, page_volumes
    from voxgan.cli import main
    from voxgan.results.export import dataset_volumes

    folder = make_shards(tmp_path / "shards", {"train": 8, "test": 72})
    out = tmp_path / "out"
    args = ["export", "--data", str(folder), "--split", "test", "--format", "html", "--num", "64"]
    with pytest.raises(SystemExit) as done:
        main([*args, "--out", str(out)])
    assert done.value.code == 0
    page_path = out / "shards-test.html"
    assert page_path.stat().st_size < 2_000_000
    expected = dataset_volumes(folder, "test", 64)
    held = page_volumes(page_path)
    assert len(held) == 64 and all(np.array_equal(a, b) for a, b in zip(held, expected.volumes, strict=True))
    page = check_page(browser, page_path, 64)
    assert [c.split("\n")[0] for c in captions(page)] == [CLASSES[label] for label in expected.labels]
    page.close()


def test_html_export_of_a_conditional_run_names_each_class(browser, tmp_path):
    from tests.browser import captions, check_page, page_volumes

    run_dir = make_run(tmp_path / "runs", conditional=True)
    result = export_volumes(ExportConfig(format="html", run=run_dir, num=5, out=tmp_path / "out"))
    assert [p.name for p in result.files] == ["00000-test.html"]
    empty = {i for i, volume in enumerate(page_volumes(result.files[0])) if not volume.any()}
    assert len(empty) < 5
    page = check_page(browser, result.files[0], 5, empty=empty)
    assert [c.split("\n")[0] for c in captions(page)] == [CLASSES[i % len(CLASSES)] for i in range(5)]
    page.close()
    from voxgan.errors import VoxganError

    with pytest.raises(VoxganError, match="html holds the grid itself"):
        check_export_config(ExportConfig(format="html", up_axis="y"))


def test_a_full_disk_ends_in_one_line_keeps_whole_files_and_a_rerun_ends_the_same(tmp_path, full_disk_dir):
    """export onto a real tiny filesystem: exit 1 and one line naming the folder, each file under a final
    name whole (the bytes of an uninterrupted export), no temporary left; run again after space is freed,
    the folder ends as the uninterrupted export."""
    run_dir = make_run(tmp_path / "runs")
    args = ["export", "--run", str(run_dir), "--format", "obj", "--num", "6", "--mesh", "blocks"]
    whole = run_cli(*args, "--out", str(tmp_path / "whole"), cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    expected = {p.name: p.read_bytes() for p in (tmp_path / "whole").iterdir()}
    disk = full_disk_dir(max(len(b) for b in expected.values()) * 2 + 8192)
    out = disk.path / "out"
    full = subprocess.run([sys.executable, "-m", "voxgan", *args, "--out", str(out)], capture_output=True,
                          text=True, cwd=tmp_path, preexec_fn=disk.preexec_fn)  # fmt: skip
    assert full.returncode == 1, full.stderr
    assert full.stderr.strip().splitlines()[-1] == (
        f"voxgan: error: {out}: no space left on the device; free some and run the same command again "
        "(it writes every file anew)"
    )
    written = {p.name: p.read_bytes() for p in out.iterdir()}
    assert 0 < len(written) < len(expected)
    assert all(expected[name] == data for name, data in written.items())  # whole files only, no temporary
    disk.grow(64 * 1024 * 1024)
    done = subprocess.run([sys.executable, "-m", "voxgan", *args, "--out", str(out)], capture_output=True,
                          text=True, cwd=tmp_path, preexec_fn=disk.preexec_fn)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == expected


def test_a_conditional_models_picture_has_one_column_per_class(tmp_path):
    """Its classes come in turn, so a picture of 2 x classes volumes is classes wide and two tiles high."""
    from PIL import Image

    run = make_run(tmp_path / "runs", conditional=True)
    config = ExportConfig(format="png", run=run, num=2 * len(CLASSES), out=tmp_path / "pics")
    (path,) = export_volumes(config).files
    with Image.open(path) as picture:
        width, height = picture.size
    assert width / height == pytest.approx(len(CLASSES) / 2, rel=0.15)
