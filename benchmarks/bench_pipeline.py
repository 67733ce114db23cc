"""End-to-end ``voxgan voxelize`` rate against merely loading the same mesh files.

Run: ``.venv/bin/python benchmarks/bench_pipeline.py`` (about a minute on 2 cores; ``--count 60``: less).

Writes a ModelNet-layout folder of ``--count`` meshes (OFF with ModelNet's fused header, OBJ, binary
STL and binary PLY in turn; spheres, tori, capsules and boxes of 1k to 50k triangles, log-uniform)
into a temporary folder, then prints one table, every row over the same files:

- ``trimesh.load``: each file loaded with ``trimesh.load`` in one process, one after the other;
- ``voxgan.ingest.formats.load_mesh``: the same with voxgan's loader;
- ``voxgan voxelize --workers N``: the command in a fresh process (start-up, discovery, loading,
  normalisation, voxelization, shard and manifest writing all included), N = 1 and 2.

The target of issue 2: the end-to-end rate at least 0.75x the ``trimesh.load``-only rate.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FORMATS = (".off", ".obj", ".stl", ".ply")
CLASSES = ("ball", "ring", "pill", "crate")


def make_mesh(kind: str, faces_wanted: int, rng: np.random.Generator):
    """A trimesh mesh of about ``faces_wanted`` triangles of the given kind."""
    import trimesh

    if kind == "ball":
        subdivisions = int(np.clip(round(np.log(faces_wanted / 20) / np.log(4)), 2, 5))
        mesh = trimesh.creation.icosphere(subdivisions=subdivisions)
    elif kind == "ring":
        sections = int(np.clip(np.sqrt(faces_wanted / 2), 8, 200))
        mesh = trimesh.creation.torus(
            1.0, 0.3 + 0.2 * rng.random(), major_sections=sections, minor_sections=sections
        )
    elif kind == "pill":
        count = int(np.clip(np.sqrt(faces_wanted / 2), 8, 200))
        mesh = trimesh.creation.capsule(height=1 + rng.random(), radius=0.4, count=[count, count])
    else:
        mesh = trimesh.creation.box(extents=1 + rng.random(3))
        while len(mesh.faces) * 4 <= faces_wanted:
            mesh = mesh.subdivide()
    mesh.apply_transform(trimesh.transformations.random_rotation_matrix(rng.random(3)))
    return mesh


def write_dataset(root: Path, count: int, seed: int = 0) -> tuple[list[Path], int]:
    """``count`` mesh files in ModelNet layout under ``root``; returns (paths, total triangles)."""
    from voxgan.ingest.formats import MeshError  # noqa: F401  (fails early when voxgan is not installed)

    rng = np.random.default_rng(seed)
    paths, total = [], 0
    for i in range(count):
        kind = CLASSES[i % len(CLASSES)]
        split = "test" if i % 5 == 4 else "train"
        mesh = make_mesh(kind, int(np.exp(rng.uniform(np.log(1000), np.log(50000)))), rng)
        path = root / kind / split / f"{kind}_{i:04d}{FORMATS[(i // len(CLASSES)) % len(FORMATS)]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".off":  # ModelNet's quirk: counts on the OFF line
            body = "".join(f"{x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in mesh.vertices)
            body += "".join(f"3 {a} {b} {c}\n" for a, b, c in mesh.faces)
            path.write_text(f"OFF{len(mesh.vertices)} {len(mesh.faces)} 0\n{body}")
        else:
            mesh.export(path)
        paths.append(path)
        total += len(mesh.faces)
    return paths, total


def time_trimesh_load(paths: list[Path]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) to load every file with ``trimesh.load``."""
    import trimesh

    started, cpu = time.perf_counter(), time.process_time()
    for path in paths:
        trimesh.load(path)
    return time.perf_counter() - started, time.process_time() - cpu


def time_load_mesh(paths: list[Path], root: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) to load every file with ``voxgan.ingest.formats.load_mesh``."""
    from voxgan.ingest.formats import load_mesh

    started, cpu = time.perf_counter(), time.process_time()
    for path in paths:
        load_mesh(path, root)
    return time.perf_counter() - started, time.process_time() - cpu


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_voxelize(root: Path, out: Path, workers: int, resolution: int) -> tuple[float, float, dict]:
    """(wall seconds, CPU seconds of the process and its workers, manifest) of ``voxgan voxelize``."""
    command = [sys.executable, "-m", "voxgan", "voxelize", str(root), str(out), "--workers", str(workers)]
    command += ["--resolution", str(resolution), "--overwrite", "--quiet"]
    started, cpu = time.perf_counter(), children_cpu()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    return seconds, children_cpu() - cpu, json.loads((out / "manifest.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="mesh files to write [200]")
    parser.add_argument("--resolution", type=int, default=16, help="grid size [16]")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="voxgan-bench-") as tmp:
        root = Path(tmp) / "meshes"
        paths, triangles = write_dataset(root, args.count)
        megabytes = sum(p.stat().st_size for p in paths) / 2**20
        print(
            f"{len(paths)} meshes ({triangles / len(paths):,.0f} triangles on average, {megabytes:.0f} MiB; "
            f"OFF/OBJ/STL/PLY), {args.resolution}³ solid, {os.cpu_count()} cores"
        )
        time_trimesh_load(paths[:8])  # warm the imports and the page cache
        rows = [("trimesh.load (1 process)", *time_trimesh_load(paths))]
        rows.append(("voxgan.ingest.formats.load_mesh (1 process)", *time_load_mesh(paths, root)))
        for workers in (1, 2):
            seconds, cpu, manifest = time_voxelize(
                root, Path(tmp) / f"shards{workers}", workers, args.resolution
            )
            samples = sum(info["count"] for info in manifest["splits"].values())
            assert samples == len(paths), (samples, manifest["errors"][:3])
            rows.append((f"voxgan voxelize --workers {workers} (end to end)", seconds, cpu))
    n = len(paths)
    wall_base, cpu_base = n / rows[0][1], n / rows[0][2]
    print(
        f"{'what':46} {'wall s':>7} {'meshes/s':>9} {'x trimesh':>9} "
        f"{'CPU s':>7} {'meshes/CPU s':>12} {'x trimesh':>9}"
    )
    for name, seconds, cpu in rows:
        print(
            f"{name:46} {seconds:7.2f} {n / seconds:9.1f} {n / seconds / wall_base:9.2f} "
            f"{cpu:7.2f} {n / cpu:12.1f} {n / cpu / cpu_base:9.2f}"
        )
    print("target: voxgan voxelize end to end >= 0.75 x trimesh.load (wall meshes/s)")
    print("CPU s counts every process (voxelize: start-up and worker processes included)")


if __name__ == "__main__":
    main()
