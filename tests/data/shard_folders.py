"""Shard folders whose samples carry their id, for the data/ tests: write them, read the ids back."""

import numpy as np

from voxgan import shards
from voxgan.atomic import write_json_atomic

CLASSES = ("chair", "table", "lamp")


def write_folder(folder, counts, resolution=16, split="train", seed=0):
    """Shards whose samples carry their id: the first 4 packed bytes are the sample index (big-endian)."""
    folder.mkdir(parents=True, exist_ok=True)
    header = shards.ShardHeader(resolution=resolution, split=split, class_names=CLASSES, recipe="test")
    entries, first = [], 0
    for index, count in enumerate(counts):
        rng = np.random.default_rng(seed + index)
        packed = rng.integers(0, 256, (count, resolution**3 // 8), dtype=np.uint8)
        ids = np.arange(first, first + count, dtype=np.uint32)
        packed[:, :4] = ids.astype(">u4").view(np.uint8).reshape(count, 4)
        entries.append(
            shards.write_shard(
                folder / shards.shard_name(split, index),
                header,
                packed,
                labels=ids % len(CLASSES),
                sources=[f"m{i}.obj" for i in ids],
                mesh_to_grid=np.tile(np.eye(4), (count, 1, 1)),
            )
        )
        first += count
    manifest = {
        "schema_version": 1,
        "resolution": resolution,
        "mode": "solid",
        "layout": "folder",
        "recipe": "test",
        "classes": list(CLASSES),
        "splits": {split: {"count": first, "shards": entries}},
        "errors": [],
        "skipped": {},
        "config": {},
        "voxgan_version": "test",
    }
    write_json_atomic(folder / "manifest.json", manifest)
    return first


def sample_ids(voxels):
    """(B, 1, R, R, R) uint8 -> (B,) the ids written by write_folder."""
    packed = np.packbits(voxels.numpy().reshape(len(voxels), -1), axis=1)
    return packed[:, :4].copy().view(">u4").ravel().astype(np.int64)


def epoch_ids(loader, epoch=0):
    loader.set_epoch(epoch)
    return [sample_ids(voxels) for voxels, _ in loader]


def flip_bytes(path):
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 64] = bytes(b ^ 0xFF for b in raw[len(raw) // 2 : len(raw) // 2 + 64])
    path.write_bytes(bytes(raw))
