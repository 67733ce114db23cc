"""Voxelizer benchmark: voxgan.ingest.voxelize against trimesh's ``voxelized(pitch).fill()``.

Prints, in one run and on the same meshes (the accuracy set of tests/accuracy_set.py plus larger
meshes made here): milliseconds per mesh at 16³ for both, the IoU of both against the slow exact
reference (tests/reference_voxelize.py) at 16³, 32³ and 64³, and the cost of voxelizing next to the
cost of parsing the same meshes from OFF files with ``trimesh.load``.

    .venv/bin/python benchmarks/bench_voxelize.py            # everything (a few minutes)
    .venv/bin/python benchmarks/bench_voxelize.py --quick    # 16³ and 32³ accuracy only
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import trimesh

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from accuracy_set import accuracy_set, to_grid  # noqa: E402
from reference_voxelize import iou, reference_voxelize  # noqa: E402

from voxgan.ingest.voxelize import voxelize  # noqa: E402


def machine() -> str:
    """CPU model, core count and library versions, one line."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{model}, nproc={os.cpu_count()}, Python {platform.python_version()}, numpy {np.__version__}, "
        f"trimesh {trimesh.__version__}"
    )


def noisy_sphere(subdivisions: int, seed: int = 0) -> trimesh.Trimesh:
    """An icosphere with every vertex pushed in or out by up to 8%: a detailed closed mesh."""
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions)
    rng = np.random.default_rng(seed)
    mesh.vertices *= 1 + 0.08 * rng.uniform(-1, 1, (len(mesh.vertices), 1))
    return mesh


def large_meshes() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """ModelNet-sized meshes: ~10k and ~100k faces, closed and open."""
    torus = trimesh.creation.torus(1.0, 0.35, major_sections=100, minor_sections=50)
    sphere_20k = noisy_sphere(5)
    open_20k = trimesh.Trimesh(
        sphere_20k.vertices, sphere_20k.faces[sphere_20k.triangles_center[:, 2] < 0.7], process=False
    )
    meshes = {
        "torus_10k": torus,
        "noisy_sphere_20k": sphere_20k,
        "noisy_sphere_82k": noisy_sphere(6),
        "open_sphere_20k": open_20k,
    }
    return {
        name: (np.asarray(m.vertices, float), np.asarray(m.faces, np.int64)) for name, m in meshes.items()
    }


def best_time(function, repeats: int) -> float:
    """Smallest wall time of ``repeats`` calls, in seconds (the machine may be shared)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def trimesh_occupancy(grid_vertices: np.ndarray, faces: np.ndarray, resolution: int) -> np.ndarray:
    """trimesh's ``voxelized(pitch=1).fill()`` in our frame.

    trimesh puts voxel centres on integer points; shifting the mesh by -0.5 puts our centre i + 0.5
    on its integer i, so its voxel at centre i is our voxel i. -> (R, R, R) bool.
    """
    mesh = trimesh.Trimesh(grid_vertices - 0.5, faces, process=False)
    points = np.round(mesh.voxelized(pitch=1.0).fill().points).astype(np.int64)
    points = points[((points >= 0) & (points < resolution)).all(axis=1)]
    occupancy = np.zeros((resolution,) * 3, dtype=bool)
    occupancy[tuple(points.T)] = True
    return occupancy


def speed_table(meshes, resolution: int, repeats: int) -> list[tuple]:
    """Per mesh: faces, voxgan ms, trimesh ms, speed-up, IoU of each against the reference."""
    rows = []
    for name, (vertices, faces) in meshes.items():
        grid = to_grid(vertices, resolution)
        ours_s = best_time(lambda: voxelize(grid, faces, resolution), repeats)  # noqa: B023
        theirs_s = best_time(lambda: trimesh_occupancy(grid, faces, resolution), max(1, repeats // 3))  # noqa: B023
        reference = reference_voxelize(grid, faces, resolution)
        ours_iou = iou(voxelize(grid, faces, resolution), reference)
        theirs_iou = iou(trimesh_occupancy(grid, faces, resolution), reference)
        rows.append((name, len(faces), ours_s * 1e3, theirs_s * 1e3, theirs_s / ours_s, ours_iou, theirs_iou))
    return rows


def accuracy_table(meshes, resolutions) -> list[tuple]:
    """Per resolution: mean and worst IoU of voxgan and of trimesh against the reference."""
    rows = []
    for resolution in resolutions:
        ours, theirs = [], []
        for vertices, faces in meshes.values():
            grid = to_grid(vertices, resolution)
            reference = reference_voxelize(grid, faces, resolution)
            ours.append(iou(voxelize(grid, faces, resolution), reference))
            theirs.append(iou(trimesh_occupancy(grid, faces, resolution), reference))
        rows.append((resolution, len(ours), np.mean(ours), min(ours), np.mean(theirs), min(theirs)))
    return rows


def load_table(meshes, resolution: int, repeats: int) -> tuple[float, float, float]:
    """Seconds to parse all meshes from OFF with trimesh.load, and to parse + voxelize + pack them."""
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for name, (vertices, faces) in meshes.items():
            path = Path(folder) / f"{name}.off"
            trimesh.Trimesh(vertices, faces, process=False).export(path)
            paths.append(path)

        def load_only():
            for path in paths:
                trimesh.load(path, force="mesh")

        def load_and_voxelize():
            for path in paths:
                mesh = trimesh.load(path, force="mesh")
                grid = to_grid(np.asarray(mesh.vertices), resolution)
                np.packbits(voxelize(grid, np.asarray(mesh.faces), resolution).reshape(-1))

        load_s = best_time(load_only, repeats)
        both_s = best_time(load_and_voxelize, repeats)
    return load_s, both_s, load_s / both_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 64³ accuracy pass")
    parser.add_argument("--repeats", type=int, default=5, help="timing repeats (the best is kept)")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # rows appear as they are measured
    print(f"machine: {machine()}")
    small, large = accuracy_set(), large_meshes()
    everything = {**small, **large}
    voxelize(*everything["sphere"], 16)  # imports and first-call costs out of the timings

    print(
        "\n16³ per mesh: voxgan.ingest.voxelize vs trimesh voxelized(pitch=1).fill(), IoU vs exact reference"
    )
    print(
        f"{'mesh':20s} {'faces':>7s} {'voxgan ms':>10s} {'trimesh ms':>11s} {'speed-up':>9s} "
        f"{'IoU voxgan':>11s} {'IoU trimesh':>12s}"
    )
    rows = speed_table(everything, 16, args.repeats)
    for name, faces, ours_ms, theirs_ms, ratio, ours_iou, theirs_iou in rows:
        print(
            f"{name:20s} {faces:7d} {ours_ms:10.2f} {theirs_ms:11.2f} {ratio:8.1f}x "
            f"{ours_iou:11.4f} {theirs_iou:12.4f}"
        )
    ours_total = sum(r[2] for r in rows)
    theirs_total = sum(r[3] for r in rows)
    print(
        f"{'all meshes':20s} {sum(r[1] for r in rows):7d} {ours_total:10.2f} {theirs_total:11.2f} "
        f"{theirs_total / ours_total:8.1f}x {np.mean([r[5] for r in rows]):11.4f} "
        f"{np.mean([r[6] for r in rows]):12.4f}"
    )

    print("\naccuracy set: IoU against the exact reference (mean, worst)")
    print(
        f"{'R':>3s} {'meshes':>7s} {'voxgan mean':>12s} {'voxgan min':>11s} {'trimesh mean':>13s} "
        f"{'trimesh min':>12s}"
    )
    for resolution, count, ours_mean, ours_min, theirs_mean, theirs_min in accuracy_table(
        small, [16, 32] if args.quick else [16, 32, 64]
    ):
        print(
            f"{resolution:3d} {count:7d} {ours_mean:12.4f} {ours_min:11.4f} {theirs_mean:13.4f} "
            f"{theirs_min:12.4f}"
        )

    print("\nparse vs parse + voxelize at 16³ (OFF files, trimesh.load)")
    for label, meshes in [("accuracy set", small), ("large meshes", large)]:
        load_s, both_s, ratio = load_table(meshes, 16, max(1, args.repeats // 2))
        print(
            f"{label:13s} load only {load_s * 1e3:8.1f} ms   load + voxelize {both_s * 1e3:8.1f} ms   "
            f"rate ratio {ratio:.2f}"
        )


if __name__ == "__main__":
    main()
