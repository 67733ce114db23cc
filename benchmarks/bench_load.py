"""Mesh loading speed: ``trimesh.load`` against ``voxgan.ingest.formats.load_mesh`` on the same files.

Writes ModelNet-like OFF, ShapeNet-like OBJ, binary and ASCII STL, binary and ASCII PLY and GLB files of
about 1k, 5k, 20k and 50k triangles into a temporary folder, then times both loaders on each file (best
of ``--repeat`` runs after a warm-up) and prints one side-by-side table. Before timing, each file is checked
to give the same triangles with both loaders.

    .venv/bin/python benchmarks/bench_load.py [--repeat 7] [--sizes 1000,5000,20000,50000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import trimesh

from voxgan.ingest.formats import load_mesh

FORMATS = {
    "off (ModelNet)": ("off", {}),
    "obj (v//vn)": ("obj", {"include_normals": True}),
    "obj (plain)": ("obj", {"include_normals": False}),
    "stl binary": ("stl", {}),
    "stl ascii": ("stl", {"file_type": "stl_ascii"}),
    "ply binary": ("ply", {}),
    "ply ascii": ("ply", {"encoding": "ascii"}),
    "glb": ("glb", {}),
}


def make_mesh(faces: int, seed: int = 0) -> trimesh.Trimesh:
    """A bumpy closed surface with about ``faces`` triangles, coordinates at ModelNet-like scale."""
    count = max(int(np.sqrt(faces / 3.6)), 4)  # uv_sphere makes about 3.6 count² triangles
    mesh = trimesh.creation.uv_sphere(radius=20.0, count=[count, count])
    mesh.vertices += np.random.default_rng(seed).normal(0, 0.2, mesh.vertices.shape)
    return mesh


def check_same(path: Path, root: Path) -> None:
    """Both loaders give the same triangles (same corner coordinates, up to order) on ``path``."""
    vertices, faces = load_mesh(path, root)
    mesh = trimesh.load_mesh(path, process=False)
    from scipy.spatial import cKDTree

    ours = vertices[faces].reshape(len(faces), 9)
    theirs = np.asarray(mesh.vertices)[mesh.faces].reshape(len(mesh.faces), 9)
    distance, _ = cKDTree(theirs).query(ours)
    assert ours.shape == theirs.shape and distance.max() < 1e-4, path.name


def best_time(load, path: Path, repeat: int) -> float:
    load(path)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        load(path)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--sizes", default="1000,5000,20000,50000")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        rows = []
        totals = {"trimesh": 0.0, "voxgan": 0.0}
        for size in sizes:
            mesh = make_mesh(size)
            for label, (extension, options) in FORMATS.items():
                path = root / f"{label.split()[0]}-{len(rows)}.{extension}"
                mesh.export(path, **options)
                check_same(path, root)
                theirs = best_time(trimesh.load, path, args.repeat)
                ours = best_time(lambda p: load_mesh(p, root), path, args.repeat)
                totals["trimesh"] += theirs
                totals["voxgan"] += ours
                size_kib = path.stat().st_size / 1024
                rows.append((label, len(mesh.faces), size_kib, theirs * 1e3, ours * 1e3, theirs / ours))
    row = "{:<16} {:>7} {:>7} {:>16} {:>13} {:>9}"
    print(row.format("format", "faces", "KiB", "trimesh.load ms", "load_mesh ms", "speed-up"))
    for label, faces, size_kib, theirs, ours, ratio in rows:
        print(row.format(label, faces, f"{size_kib:.0f}", f"{theirs:.2f}", f"{ours:.2f}", f"{ratio:.2f}x"))
    total_theirs, total_ours = totals["trimesh"] * 1e3, totals["voxgan"] * 1e3
    ratio = total_theirs / total_ours
    print(row.format("all files", "", "", f"{total_theirs:.1f}", f"{total_ours:.1f}", f"{ratio:.2f}x"))


if __name__ == "__main__":
    main()
