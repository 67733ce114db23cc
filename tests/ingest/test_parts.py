"""`voxgan voxelize --part K/N` as a job array: real processes at once in one folder, real SIGKILL, then
the completion run; the finished folder must equal the one a single run makes, byte for byte."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from tests.ingest.test_pipeline import run_cli, voxelize, write_modelnet_tree, write_spheres
from voxgan import shards
from voxgan.cli import main


def start(*args) -> subprocess.Popen:
    """A `voxgan` process running in the background, its output captured."""
    command = [sys.executable, "-m", "voxgan", *map(str, args)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def files_of(folder: Path) -> dict[str, str]:
    """sha256 of every file in a shard folder by relative path, but manifest.json (it holds the time)."""
    return {
        p.relative_to(folder).as_posix(): shards.file_sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


def same_output(folder: Path, reference: Path) -> None:
    """Assert ``folder`` holds what ``reference`` holds: the same files and bytes, the same manifest."""
    assert files_of(folder) == files_of(reference)
    ours, theirs = (json.loads((f / "manifest.json").read_text()) for f in (folder, reference))
    for key in ("complete", "splits", "errors", "skipped", "classes", "layout", "inputs"):
        assert ours[key] == theirs[key], key


def write_chairs(folder: Path) -> int:
    """The ModelNet-like tree of test_pipeline and one broken file; returns the number of mesh files."""
    count = write_modelnet_tree(folder, train=5, test=2)
    (folder / "chair" / "train" / "chair_0099.off").write_text("OFF\n3 1 0\nnot numbers\n")
    return count + 1


def test_three_parts_at_once_then_the_completion_run_equal_a_single_run(tmp_path):
    count = write_chairs(tmp_path / "in")
    voxelize(tmp_path / "in", tmp_path / "one", shard_size=2)
    options = ["--shard-size", 2, "--workers", 1, "--quiet"]
    parts = [
        start("voxelize", tmp_path / "in", tmp_path / "out", *options, "--part", f"{k}/3") for k in range(3)
    ]
    for k, process in enumerate(parts):
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        assert f"part {k}/3:" in err and "without --part" in err
    assert not (tmp_path / "out" / "manifest.json").exists()  # a part never writes the manifest
    done = run_cli("voxelize", tmp_path / "in", tmp_path / "out", *options)
    assert done.returncode == 0, done.stderr
    assert "resuming: 8 finished units kept" in done.stderr and "nothing left to do" in done.stderr
    same_output(tmp_path / "out", tmp_path / "one")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    samples = 0
    for info in manifest["splits"].values():
        for entry in info["shards"]:
            with h5py.File(tmp_path / "out" / entry["file"]) as f:
                samples += len(f["labels"])
    assert samples + len(manifest["errors"]) == count  # every file: a sample or an error
    assert [e["source"] for e in manifest["errors"]] == ["chair/train/chair_0099.off"]


def test_a_part_killed_with_sigkill_leaves_nothing_that_breaks_the_completion_run(tmp_path):
    write_spheres(tmp_path / "in", 12)  # 64³: slow enough to kill part 0 after its first unit
    options = ["--resolution", 64, "--shard-size", 2, "--quiet"]
    voxelize(tmp_path / "in", tmp_path / "whole", resolution=64, shard_size=2, workers=1)
    process = start("voxelize", tmp_path / "in", tmp_path / "out", *options, "--workers", 1, "--part", "0/2")
    deadline = time.monotonic() + 300
    while not list((tmp_path / "out").glob("units/*.json")) and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    records = sorted(p.name for p in (tmp_path / "out" / "units").glob("*.json"))
    assert 1 <= len(records) < 4 and not (tmp_path / "out" / "manifest.json").exists()  # killed part-way
    # what a kill can leave besides: temporaries, and a shard whose record was not written yet
    (tmp_path / "out" / ".train-00004.h5.k1ll3d.tmp").write_bytes(b"half a shard")
    (tmp_path / "out" / "units" / ".train-00004.json.k1ll3d.tmp").write_text('{"plan": ')
    assert "train-00004.json" not in records
    (tmp_path / "out" / "train-00004.h5").write_bytes(b"not the shard this unit makes")
    done = run_cli("voxelize", tmp_path / "in", tmp_path / "out", *options, "--workers", 2)
    assert done.returncode == 0, done.stderr
    assert f"resuming: {len(records)} finished units kept" in done.stderr
    same_output(tmp_path / "out", tmp_path / "whole")
    assert not list((tmp_path / "out").rglob("*.tmp"))


def test_a_run_whose_input_changed_after_the_plan_was_written_is_refused(tmp_path):
    write_modelnet_tree(tmp_path / "in", train=2, test=1)
    first = run_cli("voxelize", tmp_path / "in", tmp_path / "out", "--part", "0/2", "--workers", 1)
    assert first.returncode == 0, first.stderr
    shards_before = files_of(tmp_path / "out")
    with open(tmp_path / "in" / "chair" / "train" / "chair_0001.obj", "a") as handle:
        handle.write("# edited after the plan\n")
    (tmp_path / "in" / "table" / "test" / "table_0009.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    done = run_cli("voxelize", tmp_path / "in", tmp_path / "out", "--workers", 1)
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "1 added (first: table/test/table_0009.obj)" in done.stderr
    assert (
        "1 changed size (first: chair/train/chair_0001.obj)" in done.stderr and "--overwrite" in done.stderr
    )
    other = run_cli("voxelize", tmp_path / "in", tmp_path / "out", "--part", "1/2", "--resolution", 32)
    assert other.returncode == 2 and other.stderr.count("\n") == 1
    assert "--resolution" in other.stderr and "resolution 16, now 32" in other.stderr
    assert files_of(tmp_path / "out") == shards_before  # refused runs change nothing
    assert not (tmp_path / "out" / "manifest.json").exists()


@pytest.mark.parametrize(
    "args, piece",
    [
        (["--part", "3/3"], "K counts from 0 to N-1"),
        (["--part", "1"], "is not K/N"),
        (["--part", "0/2", "--overwrite"], "--overwrite would delete the other parts' work"),
        (["--engine", "spark"], "engine 'spark' is not one of pool, ray"),
        (["--ray-address", "auto"], "--ray-address needs --engine ray"),
        (["--engine", "ray", "--part", "0/2"], "leave out --part"),
    ],
)
def test_bad_run_options_exit_2_with_one_line(tmp_path, capsys, args, piece):
    write_modelnet_tree(tmp_path / "in", train=1, test=0)
    with pytest.raises(SystemExit) as stopped:
        main(["voxelize", str(tmp_path / "in"), str(tmp_path / "out"), *args])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.count("\n") == 1 and piece in err, err
    assert not (tmp_path / "out").exists()


def test_engine_ray_without_ray_installed_gives_the_install_hint(tmp_path):
    write_modelnet_tree(tmp_path / "in", train=1, test=0)
    hide_ray = "import sys; sys.modules['ray'] = None; from voxgan.cli import main; main(sys.argv[1:])"
    args = ["voxelize", tmp_path / "in", tmp_path / "out", "--engine", "ray"]
    done = subprocess.run([sys.executable, "-c", hide_ray, *map(str, args)], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "pip install 'voxgan[ray]'" in done.stderr
