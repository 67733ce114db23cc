"""`make voxelize` end to end on a fresh clone: shapes meshes generated, voxelized to shards, readable."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def venv_reusing_this_python(folder: Path, source: Path) -> Path:
    """A stand-in for ``.venv`` whose python and voxgan run this interpreter on ``source``'s code.

    Its install stamp is newer than ``source``'s pyproject.toml, so make installs nothing.
    """
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True)
    scripts = {"python": f'exec "{sys.executable}" "$@"', "voxgan": f'exec "{sys.executable}" -m voxgan "$@"'}
    for name, line in scripts.items():
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\nexport PYTHONPATH="{source}"\n{line}\n')
        script.chmod(0o755)
    stamp = folder / ".installed"
    stamp.touch()
    while stamp.stat().st_mtime_ns <= (source / "pyproject.toml").stat().st_mtime_ns:
        time.sleep(0.01)
        stamp.touch()
    return folder


@pytest.mark.slow
def test_make_voxelize_on_a_fresh_clone_gives_readable_shards(tmp_path):
    if shutil.which("make") is None or shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs make, git and a git checkout of voxgan")
    clone = tmp_path / "voxgan"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=120)
    venv = venv_reusing_this_python(tmp_path / "venv", clone)
    where = subprocess.run(
        [venv / "bin" / "python", "-c", "import voxgan; print(voxgan.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(clone)  # the clone's code runs, not the working tree's

    make = subprocess.run(
        [
            "make",
            "voxelize",
            f"VENV={venv}",
            "SHAPES_ARGS=--train-per-class 2 --test-per-class 1",
            "WORKERS=1",
        ],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert make.returncode == 0, make.stdout[-2000:] + make.stderr[-2000:]

    meshes = clone / "data" / "meshes" / "shapes"
    classes = sorted(p.name for p in meshes.iterdir())
    assert len(classes) >= 8
    manifest = json.loads((clone / "shards" / "manifest.json").read_text())
    recipe = manifest["recipe"]
    assert (
        manifest["resolution"] == 16
        and (recipe.get("name") if isinstance(recipe, dict) else recipe) == "shapes"
    )
    assert sorted(manifest["classes"]) == classes
    assert manifest["splits"]["train"]["count"] == 2 * len(classes)
    assert manifest["splits"]["test"]["count"] == len(classes)
    assert manifest["errors"] == []
    info = subprocess.run(
        [venv / "bin" / "voxgan", "info", "shards"], cwd=clone, capture_output=True, text=True
    )
    assert info.returncode == 0, info.stderr
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True)
    assert status.stdout == ""  # generated data and shards are ignored by git

    meshes_before = {p: p.read_bytes() for p in meshes.rglob("*") if p.is_file()}
    again = subprocess.run(make.args, cwd=clone, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]  # a second run is harmless
    assert {p: p.read_bytes() for p in meshes.rglob("*") if p.is_file()} == meshes_before
    assert json.loads((clone / "shards" / "manifest.json").read_text())["splits"] == manifest["splits"]
