"""Time of the evaluation metrics, the renderer and the mesh export, against the obvious alternatives.

Run: ``.venv/bin/python benchmarks/bench_metrics.py`` (about a minute on 2 cores; ``--quick``: less).

Prints one table: at 16³ with 1,000 generated against 1,000 reference volumes (synthetic shapes),

* pairwise 1 - IoU as one chunked matrix product, against a per-pair numpy loop (timed on a slice
  and scaled up);
* pairwise Chamfer as products of surface indicators with squared distance fields, against
  ``torch.cdist`` between sampled surface points (512 per volume, timed on a slice, scaled up);
* the whole MMD / COV / 1-NNA evaluation (both distances, all three distance matrices);
* a 64-volume PNG grid with :func:`voxgan.render.render_volumes`, against matplotlib's ``ax.voxels``
  (timed on a few volumes, scaled up);
* one mesh per volume, ``smooth`` and ``blocks``, of shapes and of random noise (fill 0.5).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from voxgan.data import make_loader
from voxgan.render import render_volumes
from voxgan.results import metrics
from voxgan.results.meshing import blocks_mesh, smooth_mesh


def shapes(count: int, split: str, resolution: int = 16) -> np.ndarray:
    """(count, R, R, R) bool volumes of synthetic:shapes."""
    loader = make_loader(
        "synthetic:shapes",
        batch_size=256,
        split=split,
        shuffle=False,
        epoch_size=count,
        resolution=resolution,
    )
    loader.set_epoch(0)
    return np.concatenate([v[:, 0].numpy().astype(bool) for v, _ in loader])[:count]


def timed(function, repeat: int = 1) -> float:
    """Best wall time of ``repeat`` calls, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def naive_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 - IoU with one numpy call per pair."""
    out = np.zeros((len(a), len(b)))
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            union = np.logical_or(x, y).sum()
            out[i, j] = 1 - (np.logical_and(x, y).sum() / union if union else 1.0)
    return out


def sampled_points(volumes: np.ndarray, count: int = 512, seed: int = 0) -> torch.Tensor:
    """(N, count, 3) surface voxel centres in a unit cube, sampled with replacement."""
    rng = np.random.default_rng(seed)
    surface = metrics.surface_voxels(volumes)
    points = []
    for grid in surface:
        centres = (np.argwhere(grid) + 0.5) / grid.shape[0]
        points.append(centres[rng.integers(0, len(centres), count)])
    return torch.from_numpy(np.stack(points).astype(np.float32))


def cdist_chamfer(a: torch.Tensor, b: torch.Tensor, block: int = 64) -> np.ndarray:
    """Chamfer between point sets with torch.cdist: each row of ``a`` against blocks of ``b``."""
    out = np.zeros((len(a), len(b)))
    for i in range(len(a)):
        for j in range(0, len(b), block):
            right = b[j : j + block]
            squared = torch.cdist(a[i : i + 1].expand(len(right), -1, -1), right) ** 2  # (M, P, P)
            nearest = squared.min(dim=2).values.mean(dim=1) + squared.min(dim=1).values.mean(dim=1)
            out[i, j : j + block] = nearest.numpy()
    return out


def matplotlib_voxels(volumes: np.ndarray, path: Path) -> None:
    """A grid of ax.voxels plots, what a user would write with matplotlib alone."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    columns = int(np.ceil(np.sqrt(len(volumes))))
    rows = int(np.ceil(len(volumes) / columns))
    fig = plt.figure(figsize=(2 * columns, 2 * rows))
    for index, volume in enumerate(volumes):
        ax = fig.add_subplot(rows, columns, index + 1, projection="3d")
        ax.voxels(volume)
        ax.set_axis_off()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer volumes (250 vs 250)")
    args = parser.parse_args()
    count = 250 if args.quick else 1000
    torch.set_num_threads(max(1, torch.get_num_threads()))
    generated, reference = shapes(count, "train"), shapes(count, "test")
    rows = []

    slice_rows = 20
    ours = timed(lambda: metrics.iou_distances(generated, reference), repeat=2)
    naive = timed(lambda: naive_iou(generated[:slice_rows], reference)) * count / slice_rows
    rows.append((f"1 - IoU, {count}x{count} pairs", "matrix product", ours, "numpy per pair (scaled)", naive))

    prepared_g, prepared_r = metrics.prepare(generated), metrics.prepare(reference)
    prepare_time = timed(lambda: (metrics.prepare(generated), metrics.prepare(reference)))
    ours = timed(lambda: metrics.chamfer_distances(prepared_g, prepared_r), repeat=2) + prepare_time
    points_g, points_r = sampled_points(generated), sampled_points(reference, seed=1)
    naive = timed(lambda: cdist_chamfer(points_g[:4], points_r)) * count / 4
    rows.append(
        (f"Chamfer, {count}x{count} pairs", "distance fields", ours, "cdist, 512 points (scaled)", naive)
    )

    reference_set_time = timed(lambda: metrics.ReferenceSet(reference))
    references = metrics.ReferenceSet(reference)
    compare_time = timed(lambda: references.compare(generated))
    rows.append(
        (
            f"MMD+COV+1-NNA, both distances, {count} vs {count}",
            "reference + compare",
            reference_set_time + compare_time,
            "",
            None,
        )
    )

    grid = shapes(64, "test")
    with tempfile.TemporaryDirectory() as folder:
        ours = timed(lambda: render_volumes(grid, Path(folder) / "grid.png"), repeat=3)
        naive = timed(lambda: matplotlib_voxels(grid[:4], Path(folder) / "mpl.png")) * 64 / 4
    rows.append(("PNG grid of 64 volumes at 16³", "render_volumes", ours, "ax.voxels (scaled)", naive))

    few = grid[:16]
    smooth = timed(lambda: [smooth_mesh(v) for v in few]) / len(few)
    blocks = timed(lambda: [blocks_mesh(v) for v in few]) / len(few)
    rows.append(("mesh of one 16³ volume", "smooth", smooth, "blocks", blocks))
    noisy = np.random.default_rng(0).random((16, 16, 16, 16)) < 0.5  # like an untrained generator
    smooth = timed(lambda: [smooth_mesh(v) for v in noisy]) / len(noisy)
    blocks = timed(lambda: [blocks_mesh(v) for v in noisy]) / len(noisy)
    rows.append(("mesh of one 16³ noise volume (fill 0.5)", "smooth", smooth, "blocks", blocks))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    print(f"| task | voxgan | time | alternative | time | speed-up |\n|{' --- |' * 6}")
    for task, ours_name, ours_time, other_name, other_time in rows:
        other = f"{other_time:.3f} s" if other_time is not None else "-"
        speedup = f"{other_time / ours_time:.0f}x" if other_time is not None and other_name else "-"
        if ours_name == "smooth":
            speedup = "-"
        print(f"| {task} | {ours_name} | {ours_time:.3f} s | {other_name or '-'} | {other} | {speedup} |")


if __name__ == "__main__":
    main()
