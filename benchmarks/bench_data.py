"""Volumes per second delivered by voxgan's loader against a naive map-style HDF5 Dataset.

Run: ``.venv/bin/python benchmarks/bench_data.py`` (a minute or two on 2 cores; ``--quick``: less;
``--large``: only voxgan's loader at 64³, 128³ and 256³, batch 8).

Writes synthetic-shape shards with :func:`voxgan.shards.write_shard` into a temporary folder, then times
whole shuffled epochs at batch 64 (after one warm-up epoch, with persistent workers) and prints one table:
voxgan at 16³/32³/64³ with 0 and 2 workers, the naive ``ds[i]`` Dataset with default collation at 16³,
the compression choices (gzip level 4, lzf, none: size and read speed) and the synthetic sources.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from voxgan import shards
from voxgan.atomic import write_json_atomic
from voxgan.data import make_loader
from voxgan.data.synthetic import SHAPE_KINDS, rasterise_shapes

BATCH = 64


def write_folder(folder: Path, count: int, resolution: int, per_shard: int, compression: str | None) -> float:
    """Synthetic-shape shards plus manifest; returns the total size in MiB. compression: gzip, lzf or None."""
    folder.mkdir(parents=True)
    saved = shards.COMPRESSION, shards.COMPRESSION_LEVEL
    shards.COMPRESSION = compression
    shards.COMPRESSION_LEVEL = 4 if compression == "gzip" else None
    try:
        entries = []
        rng = np.random.default_rng(0)
        for index, start in enumerate(range(0, count, per_shard)):
            n = min(per_shard, count - start)
            kinds = rng.integers(0, 4, size=n)
            occupancy = np.concatenate(
                [rasterise_shapes(rng, kinds[i : i + 256], resolution) for i in range(0, n, 256)]
            )
            entries.append(
                shards.write_shard(
                    folder / shards.shard_name("train", index),
                    shards.ShardHeader(resolution=resolution, class_names=SHAPE_KINDS, recipe="bench"),
                    shards.pack(occupancy),
                    kinds,
                    [f"shape{start + i}" for i in range(n)],
                    np.tile(np.eye(4), (n, 1, 1)),
                )
            )
    finally:
        shards.COMPRESSION, shards.COMPRESSION_LEVEL = saved
    manifest = {
        "schema_version": 1,
        "resolution": resolution,
        "mode": "solid",
        "classes": list(SHAPE_KINDS),
        "splits": {"train": {"count": count, "shards": entries}},
    }
    write_json_atomic(folder / "manifest.json", manifest)
    return sum(p.stat().st_size for p in folder.glob("*.h5")) / 2**20


class NaiveShardDataset(Dataset):
    """The classic map-style Dataset: ``ds[i]`` opens (once per process) and reads one sample."""

    def __init__(self, folder: Path):
        self.paths = sorted(folder.glob("train-*.h5"))
        self.counts = []
        for path in self.paths:
            with h5py.File(path) as f:
                self.counts.append(len(f["labels"]))
                self.resolution = int(f.attrs["resolution"])
        self.ends = np.cumsum(self.counts)
        self.files = {}

    def __len__(self):
        return int(self.ends[-1])

    def __getitem__(self, i):
        shard = int(np.searchsorted(self.ends, i, side="right"))
        row = i - (int(self.ends[shard - 1]) if shard else 0)
        if shard not in self.files:
            self.files[shard] = h5py.File(self.paths[shard], "r")
        f = self.files[shard]
        grid = np.unpackbits(f["voxels"][row]).reshape((1,) + (self.resolution,) * 3)
        return torch.from_numpy(grid), int(f["labels"][row])


def time_epochs(loader, epochs: int) -> float:
    """Volumes per second of the fastest of ``epochs`` timed epochs after one warm-up epoch.

    The best epoch, not the mean: on a shared machine the other processes only ever slow an epoch down.
    """
    best = 0.0
    for epoch in range(epochs + 1):
        loader.set_epoch(epoch)
        start, volumes = time.perf_counter(), 0
        for voxels, _ in loader:
            volumes += len(voxels)
        if epoch:
            best = max(best, volumes / (time.perf_counter() - start))
    return best


def time_naive(folder: Path, workers: int, limit: int) -> float:
    """Volumes per second of the naive Dataset through a shuffled DataLoader, over ``limit`` volumes."""
    loader = DataLoader(
        NaiveShardDataset(folder), batch_size=BATCH, shuffle=True, num_workers=workers,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    start, volumes = None, 0
    for i, (voxels, _) in enumerate(loader):
        if i == 2:  # after worker start and the first batches
            start = time.perf_counter()
        elif i > 2:
            volumes += len(voxels)
        if volumes >= limit:
            break
    return volumes / (time.perf_counter() - start)


def voxgan_loader(folder, workers, batch=BATCH):
    return make_loader(
        folder, batch_size=batch, num_workers=workers, persistent_workers=workers > 0, pin_memory=False
    )


def large_resolutions(epochs: int) -> None:
    """Print voxgan's loader at 64³, 128³ and 256³ (gzip-4, batch 8, 0 and 2 workers): volumes/s and MiB/s
    of unpacked uint8 volumes delivered."""
    print(f"batch 8, shuffled, volumes/s: best of {epochs} epochs after a warm-up epoch")
    print(f"{'data':12} {'workers':>7} {'volumes/s':>11} {'MiB/s':>8} {'files':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for resolution, count, per_shard in [(64, 512, 128), (128, 128, 32), (256, 32, 8)]:
            folder = Path(tmp) / f"r{resolution}"
            size = write_folder(folder, count, resolution, per_shard, "gzip")
            for workers in (0, 2):
                rate = time_epochs(voxgan_loader(folder, workers, batch=8), epochs)
                mib = rate * resolution**3 / 2**20
                print(
                    f"{resolution}³ gzip-4 {workers:>7} {rate:>11,.0f} {mib:>8,.0f} {size:>6.1f} MiB",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller data and fewer epochs")
    parser.add_argument("--large", action="store_true", help="only voxgan's loader at 64³, 128³, 256³")
    args = parser.parse_args()
    if args.large:
        return large_resolutions(2 if args.quick else 3)
    scale = 4 if args.quick else 1
    epochs = 2 if args.quick else 5
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sizes = {}
        for resolution, count, per_shard in [(16, 20000, 4000), (32, 8000, 2000), (64, 1000, 250)]:
            count //= scale
            for compression in ("gzip", "lzf", None):
                if resolution == 32 and compression != "gzip":
                    continue
                folder = tmp / f"r{resolution}-{compression}"
                sizes[folder] = write_folder(folder, count, resolution, per_shard // scale, compression)
        naive16 = {w: time_naive(tmp / "r16-gzip", w, 3000 // scale) for w in (0, 2)}
        rows.append(("naive ds[i] + default collation", "16³ gzip-4", "0", naive16[0], "", ""))
        rows.append(("naive ds[i] + default collation", "16³ gzip-4", "2", naive16[2], "", ""))
        for resolution in (16, 32, 64):
            folder = tmp / f"r{resolution}-gzip"
            for workers in (0, 2):
                rate = time_epochs(voxgan_loader(folder, workers), epochs)
                ratio = f"{rate / naive16[workers]:.0f}x" if resolution == 16 else ""
                rows.append(("voxgan make_loader", f"{resolution}³ gzip-4", str(workers), rate, ratio, ""))
        for resolution in (16, 64):
            for compression in ("gzip", "lzf", None):
                folder = tmp / f"r{resolution}-{compression}"
                rate = time_epochs(voxgan_loader(folder, 0), epochs)
                name = {"gzip": "gzip-4", "lzf": "lzf", None: "none"}[compression]
                size = f"{sizes[folder]:.1f} MiB"
                rows.append(("voxgan, compression", f"{resolution}³ {name}", "0", rate, "", size))
        for source in ("synthetic:noise", "synthetic:shapes"):
            for resolution, workers in [(16, 0), (32, 0), (64, 0), (64, 2)]:
                loader = make_loader(
                    source,
                    batch_size=BATCH,
                    resolution=resolution,
                    epoch_size={16: 4096, 32: 1024, 64: 256}[resolution] // scale,
                    num_workers=workers,
                    persistent_workers=workers > 0,
                    pin_memory=False,
                )
                rows.append((source, f"{resolution}³", str(workers), time_epochs(loader, 2), "", ""))
    print(
        f"batch {BATCH}, shuffled, volumes/s: best of {epochs} epochs after a warm-up epoch (naive: one pass)"
    )
    print(f"{'loader':34} {'data':12} {'workers':>7} {'volumes/s':>11} {'vs naive':>8} {'files':>10}")
    for name, what, workers, rate, ratio, size in rows:
        print(f"{name:34} {what:12} {workers:>7} {rate:>11,.0f} {ratio:>8} {size:>10}")


if __name__ == "__main__":
    main()
