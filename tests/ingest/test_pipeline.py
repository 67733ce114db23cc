"""`voxgan voxelize` and `voxgan info` end to end: real mesh files, real HDF5, real processes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.meshfiles import (
    SECRET_TEXT,
    box_triangles,
    box_vertices,
    write_binvox,
    write_broken_set,
    write_good_set,
    write_obj_triangles,
    write_off,
    write_ply,
    write_secret_buffer,
    write_stl_binary,
)
from voxgan import shards
from voxgan.ingest import pipeline


def run_cli(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "voxgan", *map(str, args)], capture_output=True, text=True, **kwargs
    )


def furniture(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A chair-like mesh of overlapping boxes (seat, back, four legs): vertices (V, 3), faces (F, 3)."""
    rng = np.random.default_rng(seed)
    width, depth, height = 1 + rng.random(), 1 + rng.random(), 0.8 + rng.random()
    leg = 0.15
    parts = [((0, 0, height), (width, depth, height + 0.2)), ((0, 0, height), (leg, depth, height * 2.2))]
    parts += [((x, y, 0), (x + leg, y + leg, height)) for x in (0, width - leg) for y in (0, depth - leg)]
    vertices = np.concatenate([box_vertices(low, high) for low, high in parts])
    faces = np.concatenate([box_triangles() + 8 * i for i in range(len(parts))])
    return vertices, faces


def write_mesh(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Write a mesh in the format its suffix names (OFF with ModelNet's fused header, OBJ, STL, PLY)."""
    suffix = path.suffix
    if suffix == ".off":
        write_off(path, vertices, faces, fused_header=True)
    elif suffix == ".obj":
        write_obj_triangles(path, vertices, faces)
    elif suffix == ".stl":
        write_stl_binary(path, vertices[faces])
    else:
        write_ply(path, vertices, faces)


def write_modelnet_tree(root: Path, train: int = 4, test: int = 2, classes=("chair", "table")) -> int:
    """A ModelNet-layout folder mixing formats, plus a README; returns the number of mesh files."""
    formats = (".off", ".obj", ".stl", ".ply")
    count = 0
    for c, name in enumerate(classes):
        for split, n in (("train", train), ("test", test)):
            for i in range(n):
                write_mesh(root / name / split / f"{name}_{i:04d}{formats[i % 4]}", *furniture(100 * c + i))
                count += 1
    (root / "README.txt").write_text("not a mesh")
    return count


def voxelize(input_dir, output_dir, **options) -> dict:
    options.setdefault("workers", 1)
    return pipeline.run_voxelize(pipeline.make_config(input_dir, output_dir, **options), progress=False)


def shard_bytes(folder: Path) -> dict[str, str]:
    return {p.name: shards.file_sha256(p) for p in sorted(folder.glob("*.h5"))}


def test_manifest_and_shards_follow_the_design(tmp_path):
    count = write_modelnet_tree(tmp_path / "in", train=5, test=2)
    manifest = voxelize(tmp_path / "in", tmp_path / "out", shard_size=4)
    assert {
        "schema_version", "resolution", "mode", "layout", "recipe", "classes", "splits", "errors", "skipped",
        "config", "voxgan_version",
    } <= set(manifest)  # fmt: skip
    assert json.loads((tmp_path / "out" / "manifest.json").read_text()) == manifest
    assert (
        manifest["complete"] is True
        and manifest["layout"] == "modelnet"
        and manifest["classes"] == ["chair", "table"]
    )
    assert manifest["errors"] == [] and manifest["skipped"] == {".txt": 1}
    assert manifest["config"]["resolution"] == 16 and manifest["config"]["shard_size"] == 4
    train = manifest["splits"]["train"]
    assert train["count"] == 10 and [e["file"] for e in train["shards"]] == [
        "train-00000.h5",
        "train-00001.h5",
        "train-00002.h5",
    ]
    assert [e["count"] for e in train["shards"]] == [4, 4, 2]
    assert manifest["splits"]["test"]["count"] == 4
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        ["manifest.json", "plan.json", "preview.png", "units", "train-00000.h5", "train-00001.h5",
         "train-00002.h5", "test-00000.h5"]
    )  # fmt: skip
    work = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert work["units"] == {"train": [0, 4, 8, 10], "test": [0, 4]}  # each split's files in units of 4
    assert [row[0] for row in work["files"]] == sorted(row[0] for row in work["files"])
    assert len(work["files"]) == count and work["options"]["resolution"] == 16
    assert "workers" not in work["options"]
    assert sorted(p.name for p in (tmp_path / "out" / "units").iterdir()) == [
        "test-00000.json", "train-00000.json", "train-00001.json", "train-00002.json"
    ]  # fmt: skip
    sources = []
    for split, info in manifest["splits"].items():
        for entry in info["shards"]:
            path = tmp_path / "out" / entry["file"]
            assert entry["sha256"] == shards.file_sha256(path)
            with h5py.File(path) as f:
                assert dict(f.attrs) | {"voxgan_version": "-"} == {
                    "schema_version": 2, "resolution": 16, "mode": "solid", "packing": "bits", "split": split,
                    "class_names": '["chair", "table"]', "up_axis": "z", "voxgan_version": "-", "recipe": "",
                }  # fmt: skip
                n = entry["count"]
                assert f["voxels"].dtype == np.uint8 and f["voxels"].shape == (n, 512)
                assert f["labels"].dtype == np.int32 and f["labels"].shape == (n,)
                assert f["mesh_to_grid"].dtype == np.float64 and f["mesh_to_grid"].shape == (n, 4, 4)
                assert h5py.check_string_dtype(f["sources"].dtype).encoding == "utf-8"
                names = [s.decode() for s in f["sources"][:]]
                labels = f["labels"][:]
                assert [n.split("/")[1] for n in names] == [split] * n
                assert [["chair", "table"][label] for label in labels] == [n.split("/")[0] for n in names]
                grids = np.unpackbits(f["voxels"][:], axis=1).reshape(n, 16, 16, 16).astype(bool)
                matrices = f["mesh_to_grid"][:]
            sources += names
            assert names == sorted(names)  # discovery order
            for name, grid, matrix in zip(names, grids, matrices, strict=True):
                vertices, _ = furniture(100 * ("chair", "table").index(name.split("/")[0]) + int(name[-8:-4]))
                corners = vertices @ matrix[:3, :3].T + matrix[:3, 3]
                assert corners.min() > 0 and corners.max() < 16  # the affine puts the mesh inside the grid
                assert np.isclose((corners.max(0) - corners.min(0)).max(), 15, atol=0.05)  # padding 0.5
                assert grid.sum() > 20 and grid[:, :, 0].any()  # legs reach the floor of the grid
    assert len(sources) == count


def test_the_same_shards_whatever_the_worker_count(tmp_path):
    write_modelnet_tree(tmp_path / "in", train=6, test=3)
    one = voxelize(tmp_path / "in", tmp_path / "one", shard_size=3, workers=1)
    two = voxelize(tmp_path / "in", tmp_path / "two", shard_size=3, workers=2)
    assert one["splits"] == two["splits"]
    assert shard_bytes(tmp_path / "one") == shard_bytes(tmp_path / "two")


def start_voxelize(source: Path, out: Path, *, shard_size: int, workers: int) -> subprocess.Popen:
    """A `voxgan voxelize` process at 64³ (slow enough to be killed part-way), running in the background."""
    args = ["voxelize", source, out, "--resolution", 64, "--shard-size", shard_size, "--workers", workers]
    return subprocess.Popen([sys.executable, "-m", "voxgan", *map(str, args)], stderr=subprocess.DEVNULL)


def test_a_run_killed_with_sigkill_resumes_to_the_same_shards(tmp_path):
    write_spheres(tmp_path / "in", 24)
    options = dict(resolution=64, shard_size=2)
    expected = voxelize(tmp_path / "in", tmp_path / "whole", **options, workers=2)
    process = start_voxelize(tmp_path / "in", tmp_path / "out", shard_size=2, workers=1)
    deadline = time.monotonic() + 300  # a bound for a hang only: a starved machine may need minutes to start
    while not list((tmp_path / "out").glob("*-00001.h5")) and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    killed = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert killed["complete"] is False  # killed part-way, not after the end
    unfinished = run_cli("info", tmp_path / "out")
    assert unfinished.returncode == 1 and "did not finish" in unfinished.stderr
    for path in (tmp_path / "out").glob("*.h5"):
        with h5py.File(path) as f:  # whatever bears a final name is a whole shard
            assert len(f["voxels"]) == 2
    done = run_cli(
        "voxelize", tmp_path / "in", tmp_path / "out", "--resolution", 64, "--shard-size", 2, "--workers", 1
    )
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stderr
    resumed = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert resumed["splits"] == expected["splits"]
    assert shard_bytes(tmp_path / "out") == shard_bytes(tmp_path / "whole")


def write_spheres(folder: Path, count: int) -> None:
    """``count`` stretched spheres of 1280 triangles (slow enough at 64³ to act on a run part-way)."""
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=3)
    for i in range(count):
        write_off(folder / f"ball_{i:02d}.off", sphere.vertices * (1 + i / 10, 1, 1), sphere.faces)


def worker_pids(parent: int) -> list[int]:
    """Pids of the pool workers of process ``parent`` (its children running the same command line)."""
    command = Path(f"/proc/{parent}/cmdline").read_bytes()
    found = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if (
                entry.name.isdigit()
                and int(fields[1]) == parent
                and (entry / "cmdline").read_bytes() == command
            ):
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the worker processes")
def test_a_worker_killed_mid_run_costs_nothing(tmp_path):
    write_spheres(tmp_path / "in", 24)
    expected = voxelize(tmp_path / "in", tmp_path / "whole", resolution=64, shard_size=4, workers=1)
    process = start_voxelize(tmp_path / "in", tmp_path / "out", shard_size=4, workers=2)
    deadline = time.monotonic() + 300
    while not (workers := worker_pids(process.pid)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert workers and process.poll() is None
    os.kill(workers[0], signal.SIGKILL)
    assert process.wait(timeout=120) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["errors"] == [] and manifest["splits"] == expected["splits"]
    assert shard_bytes(tmp_path / "out") == shard_bytes(tmp_path / "whole")


def test_broken_files_are_all_accounted_for_and_nothing_is_read_outside(tmp_path):
    write_secret_buffer(tmp_path / "voxgan-secret.bin")  # what an escaping glTF buffer would reach
    good = write_good_set(tmp_path / "in")
    good[write_binvox(tmp_path / "in" / "voxels.binvox")] = None
    broken = write_broken_set(tmp_path / "in")
    (tmp_path / "in" / "notes.md").write_text("notes")
    done = run_cli("voxelize", tmp_path / "in", tmp_path / "out", "--layout", "flat", "--workers", 2)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    relative = {p.relative_to(tmp_path / "in").as_posix() for p in good}
    errors = {e["source"]: e["reason"] for e in manifest["errors"]}
    assert set(errors) == {p.relative_to(tmp_path / "in").as_posix() for p in broken}
    for path, piece in broken.items():
        reason = errors[path.relative_to(tmp_path / "in").as_posix()]
        assert piece in reason or (piece.startswith("1,000,000,000") and "1,000,000,000 >" in reason)
    assert all("\n" not in reason for reason in errors.values())
    samples = [
        s
        for info in manifest["splits"].values()
        for e in info["shards"]
        for s in shards.read_shard(tmp_path / "out" / e["file"]).sources
    ]
    assert sorted(samples) == sorted(relative)
    assert manifest["skipped"] == {".bin": 1, ".md": 1}  # external/scene.gltf's buffer and the notes
    assert f"errors: {len(broken)}" in done.stdout
    assert SECRET_TEXT not in (tmp_path / "out" / "manifest.json").read_text()


def test_grid_coords_keeps_mesh_coordinates(tmp_path):
    write_off(tmp_path / "in" / "box.off", box_vertices((2, 2, 2), (6, 5, 7)), box_triangles())
    manifest = voxelize(tmp_path / "in", tmp_path / "out", resolution=8, grid_coords=True)
    shard = shards.read_shard(tmp_path / "out" / manifest["splits"]["train"]["shards"][0]["file"])
    assert np.array_equal(shard.mesh_to_grid[0], np.eye(4))
    expected = np.zeros((8, 8, 8), bool)
    expected[2:6, 2:5, 2:7] = True
    assert np.array_equal(shard.occupancy[0], expected)


def test_info_passes_on_a_good_folder_and_names_a_corrupt_or_missing_shard(tmp_path):
    write_modelnet_tree(tmp_path / "in", train=3, test=1)
    voxelize(tmp_path / "in", tmp_path / "out", shard_size=2)
    done = run_cli("info", tmp_path / "out", "--preview", tmp_path / "preview.png")
    assert done.returncode == 0, done.stderr
    assert "chair" in done.stdout and "train" in done.stdout and "errors: 0" in done.stdout
    assert (tmp_path / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = bytearray((tmp_path / "out" / "train-00001.h5").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "out" / "train-00001.h5").write_bytes(bytes(data))
    (tmp_path / "out" / "test-00000.h5").unlink()
    done = run_cli("info", tmp_path / "out")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "train-00001.h5: corrupt" in done.stderr
    assert "test-00000.h5: missing" in done.stderr


def test_resume_refuses_other_options_and_overwrite_starts_afresh(tmp_path):
    write_modelnet_tree(tmp_path / "in", train=2, test=1)
    first = voxelize(tmp_path / "in", tmp_path / "out")
    assert voxelize(tmp_path / "in", tmp_path / "out", workers=2)["splits"] == first["splits"]
    with pytest.raises(pipeline.ConfigError, match=r"other options \(resolution 16, now 32\).*--overwrite"):
        voxelize(tmp_path / "in", tmp_path / "out", resolution=32)
    refused = run_cli("voxelize", tmp_path / "in", tmp_path / "out", "--resolution", 32)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "--overwrite" in refused.stderr
    (tmp_path / "out" / "train-00007.h5").write_bytes(b"stale")
    (tmp_path / "out" / "keep.txt").write_text("not ours")
    manifest = voxelize(tmp_path / "in", tmp_path / "out", resolution=32, overwrite=True)
    assert manifest["resolution"] == 32
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "keep.txt", "manifest.json", "plan.json", "preview.png", "test-00000.h5", "train-00000.h5", "units"
    ]  # fmt: skip


def test_usage_errors_exit_2_with_one_line(tmp_path):
    write_modelnet_tree(tmp_path / "in", train=1, test=0)
    for args, piece in [
        (["--resolution", 20], "multiple of 8"),
        (["--mode", "hollow"], "mode 'hollow'"),
        (["--recipe", "nosuchdataset"], "unknown recipe"),
        (["--workers", 0], "at least 1"),
    ]:
        done = run_cli("voxelize", tmp_path / "in", tmp_path / "out", *args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.count("\n") == 1 and piece in done.stderr and "Traceback" not in done.stderr
    done = run_cli("voxelize", tmp_path / "missing", tmp_path / "out")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "does not exist" in done.stderr
    assert not (tmp_path / "out").exists()


def test_256_cubed_shards_hold_the_same_shapes_and_264_is_refused(tmp_path):
    write_modelnet_tree(tmp_path / "in", train=1, test=0)
    shares = {}
    for r in (128, 256):
        assert voxelize(tmp_path / "in", tmp_path / f"out{r}", resolution=r)["resolution"] == r
        volumes, _, _ = shards.read_split(tmp_path / f"out{r}", "train")  # every shard checked on the way
        assert volumes.shape == (2, r, r, r)
        shares[r] = volumes.mean(axis=(1, 2, 3))  # the share of the grid each shape fills
    # the same share give or take the surface layer, thinner at 256³
    assert np.allclose(shares[256], shares[128], rtol=0.1) and (shares[256] > 0.01).all()
    done = run_cli("voxelize", tmp_path / "in", tmp_path / "out264", "--resolution", 264)
    assert done.returncode == 2 and "multiple of 8" in done.stderr and done.stderr.count("\n") == 1


def test_no_mesh_or_no_sample_exits_1(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    done = run_cli("voxelize", tmp_path / "empty", tmp_path / "out")
    assert done.returncode == 1 and "no mesh file found" in done.stderr and done.stderr.count("\n") == 1
    write_broken_set(tmp_path / "broken")
    done = run_cli("voxelize", tmp_path / "broken", tmp_path / "out2", "--workers", 1)
    assert done.returncode == 1 and "no sample written" in done.stderr
    assert len(json.loads((tmp_path / "out2" / "manifest.json").read_text())["errors"]) == 16


def test_a_full_disk_ends_in_one_line_loses_nothing_and_resumes_to_the_same_shards(tmp_path, full_disk_dir):
    """voxelize onto a real tiny filesystem: exit 1 and one line naming the folder; what bears a final name
    is whole (each shard the very bytes of an uninterrupted run, each JSON readable), no temporary is
    left; after space is freed the same command resumes and ends with the uninterrupted run's shards."""
    write_modelnet_tree(tmp_path / "in", train=8, test=4)
    options = dict(resolution=16, shard_size=2, workers=1)
    expected = voxelize(tmp_path / "in", tmp_path / "whole", **options)
    whole = shard_bytes(tmp_path / "whole")
    disk = full_disk_dir(96 * 1024)  # room for a few 20 KB shards of the dozen
    out = disk.path / "out"
    args = [
        "voxelize",
        tmp_path / "in",
        out,
        "--resolution",
        16,
        "--shard-size",
        2,
        "--workers",
        1,
        "--quiet",
    ]
    full = run_cli(*args, preexec_fn=disk.preexec_fn)
    lines = full.stderr.strip().splitlines()
    assert full.returncode == 1, full.stderr
    assert lines[-1] == (
        f"voxgan: error: {out}: no space left on the device; free some and run the same command again: "
        "it keeps the finished units and resumes"
    )
    assert "Traceback" not in full.stderr
    written = shard_bytes(out)
    assert 0 < len(written) < len(whole)
    assert all(whole[name] == digest for name, digest in written.items())  # whole shards, nothing else
    for path in [out / "manifest.json", out / "plan.json", *(out / "units").glob("*.json")]:
        json.loads(path.read_text())
    assert not [p for p in out.rglob(".*")]  # no temporary left behind
    disk.grow(8 * 1024 * 1024)
    done = run_cli(*args, preexec_fn=disk.preexec_fn)
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stderr
    resumed = json.loads((out / "manifest.json").read_text())
    assert resumed["splits"] == expected["splits"] and resumed["errors"] == expected["errors"]
    assert shard_bytes(out) == whole
