"""How true a resampled volume stays to its source: IoU, pieces and time of ``resample_occupancy``.

Each volume is fitted to R³ as ``voxgan voxelize`` fits it (its occupied box, 0.5 voxel of padding) and
resampled; its IoU is taken against the source looked up through the same affine (each grid voxel's
centre mapped back into the source voxel it lies in; on a boundary, the one on the side of the grid's
middle), and its pieces (6-connected) are counted against
the source's. Time: the median of 5 calls, one thread. The voxgan imported is the one on ``sys.path``,
so an older checkout is measured with ``PYTHONPATH=/path/to/it``.

    python benchmarks/bench_resample.py
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread for numpy's BLAS, set before it loads

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from voxgan.ingest.frame import grid_transform, occupied_box_corners  # noqa: E402
from voxgan.ingest.voxelize import resample_occupancy  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from meshfiles import thin_chair  # noqa: E402  the 3D ShapeNets-like chair of the tests


def clump(side: int, seed: int) -> np.ndarray:
    """(side, side, side) bool: a random clump (half full) in the middle three fifths."""
    volume = np.zeros((side,) * 3, bool)
    middle = slice(side // 5, side // 5 + 3 * side // 5)
    volume[middle, middle, middle] = np.random.default_rng(seed).random((3 * side // 5,) * 3) < 0.5
    return volume


def looked_up(volume: np.ndarray, affine: np.ndarray, resolution: int) -> np.ndarray:
    """Each grid voxel's centre mapped back into the source voxel it lies in: occupied? (R, R, R) bool."""
    centres = np.indices((resolution,) * 3).reshape(3, -1).T + 0.5
    centres += 1e-9 * np.sign(resolution / 2 - centres)  # on a boundary: the side of the grid's middle
    back = np.linalg.inv(affine)
    cells = np.floor(centres @ back[:3, :3].T + back[:3, 3]).astype(np.int64)
    inside = ((cells >= 0) & (cells < volume.shape)).all(axis=1)
    found = np.zeros(len(cells), bool)
    found[inside] = volume[tuple(cells[inside].T)]
    return found.reshape((resolution,) * 3)


def main() -> None:
    volumes = {"thin chair 30³": thin_chair(), "clump 30³": clump(30, 0), "clump 64³": clump(64, 1)}
    print(f"{'volume':<16}{'R':>5}{'scale':>7}{'IoU':>7}{'pieces':>8}{'source':>8}{'ms':>8}")
    for name, volume in volumes.items():
        for resolution in (16, 32, 64, 128):
            affine = grid_transform(occupied_box_corners(volume), resolution, padding=0.5, up_axis="z")
            grid = resample_occupancy(volume, affine, resolution)
            truth = looked_up(volume, affine, resolution)
            iou = (grid & truth).sum() / (grid | truth).sum()
            times = []
            for _ in range(5):
                started = time.perf_counter()
                resample_occupancy(volume, affine, resolution)
                times.append(time.perf_counter() - started)
            print(f"{name:<16}{resolution:>5}{affine[0, 0]:>7.3f}{iou:>7.3f}{ndimage.label(grid)[1]:>8}"
                  f"{ndimage.label(volume)[1]:>8}{1000 * statistics.median(times):>8.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
