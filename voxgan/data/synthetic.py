"""The synthetic sources: random occupancy (``synthetic:noise``) and random solids (``synthetic:shapes``).

Volumes are generated in the process that yields them, batch by batch, each batch from a generator seeded by
its place in the stream, so no data need exist on disk and the stream is the same whatever the number of
DataLoader workers.
"""

from __future__ import annotations

import math

import numpy as np
from torch.utils.data import IterableDataset

from voxgan import shards
from voxgan.data.stream import (
    PackedBatch,
    StreamPosition,
    class_subset,
    finish_batch,
    per_rank_samples,
    rank_and_world,
    stream_seed,
    subset_names,
    worker_id_and_count,
)
from voxgan.errors import VoxganError

SYNTHETIC_PREFIX = "synthetic:"
SHAPE_KINDS = ("sphere", "box", "cylinder", "torus")
DEFAULT_EPOCH_SIZE = 1000
DEFAULT_RESOLUTION = 16
NOISE_FILL_RANGE = (0.1, 0.5)  # each noise volume: every voxel occupied with a probability drawn from this


def random_rotations(rng: np.random.Generator, count: int) -> np.ndarray:
    """Uniformly random rotation matrices (count, 3, 3) from normalised quaternions."""
    q = rng.normal(size=(count, 4))
    w, x, y, z = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], axis=-1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], axis=-1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=-1),
        ],
        axis=1,
    )


def voxel_centres(resolution: int) -> np.ndarray:
    """Voxel centres along one axis in [-1, 1]: (R,) float32."""
    return ((np.arange(resolution, dtype=np.float32) + 0.5) / resolution * 2 - 1).astype(np.float32)


def shape_parameters(rng: np.random.Generator, kind: np.ndarray) -> np.ndarray:
    """Size parameters (count, 3) per primitive kind, scaled so the shape fits in a ball of radius 0.95.

    sphere: (radius, -, -); box: half extents; cylinder: (radius, half height, -); torus: (major, minor, -).
    """
    count = len(kind)
    size = np.empty((count, 3))
    size[:] = rng.uniform(0.25, 0.7, size=(count, 3))
    size[kind == 0, 0] = rng.uniform(0.35, 0.9, size=int((kind == 0).sum()))
    torus = kind == 3
    size[torus, 0] = rng.uniform(0.4, 0.65, size=int(torus.sum()))
    size[torus, 1] = size[torus, 0] * rng.uniform(0.25, 0.55, size=int(torus.sum()))
    return size * np.minimum(1.0, 0.95 / bounding_radius(kind, size))[:, None]


def bounding_radius(kind: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Radius (count,) of a ball around the primitive's centre that holds it."""
    return np.select(
        [kind == 0, kind == 1, kind == 2],
        [size[:, 0], np.linalg.norm(size, axis=1), np.hypot(size[:, 0], size[:, 1])],
        size[:, 0] + size[:, 1],
    )


def inside_primitive(x: np.ndarray, y: np.ndarray, z: np.ndarray, kind: int, size: np.ndarray) -> np.ndarray:
    """Inside test of one primitive in its own frame.

    x, y, z : (...) float32 coordinates; size : (3,) see :func:`shape_parameters`  ->  (...) bool.
    """
    a, b, c = (np.float32(v) for v in size)
    if kind == 0:
        return x * x + y * y + z * z <= a * a
    if kind == 1:
        return (np.abs(x) <= a) & (np.abs(y) <= b) & (np.abs(z) <= c)
    if kind == 2:
        return (x * x + y * y <= a * a) & (np.abs(z) <= b)
    ring = np.sqrt(x * x + y * y) - a
    return ring * ring + z * z <= b * b


def rasterise_primitive(
    occupancy: np.ndarray, kind: int, size: np.ndarray, centre: np.ndarray, turn: np.ndarray
) -> None:
    """Fill one primitive into ``occupancy`` (R, R, R) uint8, testing only the voxels of its bounding box.

    size : (3,) see :func:`shape_parameters`; centre : (3,) in [-1, 1]³; turn : (3, 3) rotation, the
    primitive's own coordinate j of a point p being ``(p - centre) . turn[:, j]``.
    """
    resolution = occupancy.shape[0]
    reach = float(bounding_radius(np.array([kind]), size[None])[0])
    lo = np.clip(np.floor((centre - reach + 1) * resolution / 2).astype(int), 0, resolution)
    hi = np.clip(np.ceil((centre + reach + 1) * resolution / 2).astype(int), 0, resolution)
    axis = voxel_centres(resolution)
    gx = (axis[lo[0] : hi[0]] - np.float32(centre[0]))[:, None, None]  # (nx, 1, 1)
    gy = (axis[lo[1] : hi[1]] - np.float32(centre[1]))[None, :, None]  # (1, ny, 1)
    gz = (axis[lo[2] : hi[2]] - np.float32(centre[2]))[None, None, :]  # (1, 1, nz)
    x, y, z = (gx * turn[0, j] + gy * turn[1, j] + gz * turn[2, j] for j in range(3))  # each (nx, ny, nz)
    box = occupancy[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    box[...] = inside_primitive(x, y, z, kind, size)


def rasterise_shapes(rng: np.random.Generator, kinds: np.ndarray, resolution: int) -> np.ndarray:
    """Random solid primitives of the given kinds, random size, position and orientation.

    kinds : (B,) int index into SHAPE_KINDS  ->  (B, R, R, R) uint8 of 0/1 indexed [x, y, z].
    """
    count = len(kinds)
    size = shape_parameters(rng, kinds)
    room = np.maximum(0.95 - bounding_radius(kinds, size), 0.0)
    centre = rng.uniform(-1, 1, size=(count, 3)) * room[:, None]
    rotation = random_rotations(rng, count).astype(np.float32)  # (B, 3, 3)
    out = np.zeros((count, resolution, resolution, resolution), dtype=np.uint8)
    for i in range(count):
        rasterise_primitive(out[i], int(kinds[i]), size[i], centre[i], rotation[i])
    return out


def random_noise(rng: np.random.Generator, count: int, resolution: int) -> np.ndarray:
    """Random occupancy, each volume with its own fill fraction in NOISE_FILL_RANGE: (B, R, R, R) uint8."""
    fill = rng.uniform(*NOISE_FILL_RANGE, size=(count, 1))
    threshold = np.round(fill * 256).astype(np.uint8)  # the fill in steps of 1/256 (at most 0.5: fits uint8)
    draws = rng.integers(0, 256, size=(count, resolution**3), dtype=np.uint8)
    return (draws < threshold).view(np.uint8).reshape(count, resolution, resolution, resolution)


class SyntheticVolumes(StreamPosition, IterableDataset):
    """Batches of generated volumes: ``epoch_size`` per epoch, split by rank then by worker.

    Batch ``j`` of rank ``r`` in an epoch is drawn from a generator seeded by ``(seed, split, epoch, r, j)``,
    so the stream is the same whatever the number of workers, and disjoint across ranks and epochs.
    Subclasses define ``class_names`` and :meth:`generate`.
    """

    class_names: tuple[str, ...] = ()
    source = ""

    def __init__(
        self,
        *,
        batch_size: int,
        resolution: int = DEFAULT_RESOLUTION,
        epoch_size: int = DEFAULT_EPOCH_SIZE,
        split: str = "train",
        seed: int = 0,
        augment: bool = False,
        drop_last: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        super().__init__()
        if batch_size < 1 or epoch_size < 1 or resolution < 2 or resolution % 2:
            raise VoxganError(
                f"{self.source}: need batch size >= 1, epoch size >= 1 and an even resolution >= 2 "
                f"(got {batch_size}, {epoch_size}, {resolution})"
            )
        self.batch_size, self.resolution, self.epoch_size = int(batch_size), int(resolution), int(epoch_size)
        self.split, self.seed, self.augment, self.drop_last = split, int(seed), augment, drop_last
        self.rank, self.world_size = rank_and_world(rank, world_size)
        self.rank_samples = per_rank_samples(
            self.epoch_size, self.world_size, self.batch_size, drop_last, self.source
        )
        self.num_batches = math.ceil(self.rank_samples / self.batch_size)
        self._init_position()

    def generate(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
        """(count, R, R, R) uint8 occupancy and (count,) int64 labels."""
        raise NotImplementedError

    def batch(self, epoch: int, index: int, packed: bool = False):
        """Batch ``index`` of this rank in ``epoch``: (voxels, labels) tensors, or a PackedBatch."""
        count = min(self.batch_size, self.rank_samples - index * self.batch_size)
        identity = (self.seed, self.source, self.split, epoch, self.rank, index)
        occupancy, labels = self.generate(np.random.default_rng(stream_seed(*identity)), count)
        assert occupancy.shape == (count,) + (self.resolution,) * 3, occupancy.shape
        augment_seed = stream_seed(*identity, "augment") if self.augment else None
        if packed:
            return PackedBatch(shards.pack(occupancy), labels, self.resolution, augment_seed)
        return finish_batch(occupancy, labels, augment_seed)

    def __iter__(self):
        return self._guarded(self._batches(packed=self._in_shipping_worker()))

    def _batches(self, packed: bool):
        epoch, start_batch = self.epoch, self.start_batch
        worker, workers = worker_id_and_count()
        for index in range(start_batch + worker, self.num_batches, workers):
            yield self.batch(epoch, index, packed)


class NoiseVolumes(SyntheticVolumes):
    """``synthetic:noise``: random occupancy (the original design's random volumes); labels -1."""

    source = "synthetic:noise"

    def generate(self, rng, count):
        return random_noise(rng, count, self.resolution), np.full(count, -1, dtype=np.int64)


class ShapeVolumes(SyntheticVolumes):
    """``synthetic:shapes``: one random solid primitive per volume; the label is its kind.

    class_names are ("sphere", "box", "cylinder", "torus"), or the subset given as ``classes``.
    """

    source = "synthetic:shapes"

    def __init__(self, *, classes=None, **options):
        self.class_names = subset_names(SHAPE_KINDS, class_subset(SHAPE_KINDS, classes, self.source))
        self.kinds = np.asarray([SHAPE_KINDS.index(name) for name in self.class_names])
        super().__init__(**options)

    def generate(self, rng, count):
        labels = rng.integers(0, len(self.kinds), size=count)
        return rasterise_shapes(rng, self.kinds[labels], self.resolution), labels.astype(np.int64)


SYNTHETIC_SOURCES = {"synthetic:noise": NoiseVolumes, "synthetic:shapes": ShapeVolumes}
