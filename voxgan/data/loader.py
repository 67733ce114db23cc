"""The one entry point: :func:`make_loader` chooses the source and wraps it in a torch DataLoader.

``make_loader(source, batch_size=...)`` returns a :class:`VoxelLoader` that yields ``(voxels, labels)``:
voxels a uint8 tensor of 0/1 of shape (B, 1, R, R, R) indexed ``[x, y, z]`` (+z up), labels int64 (B,).
DataLoader workers send their batches still bit-packed; the main process unpacks each with one vectorised
numpy call (8 times less to move between processes) and pins it when asked.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from voxgan.data.shard_source import ShardDataset
from voxgan.data.stream import PackedBatch, WorkerFailure
from voxgan.data.synthetic import (
    DEFAULT_EPOCH_SIZE,
    DEFAULT_RESOLUTION,
    SYNTHETIC_PREFIX,
    SYNTHETIC_SOURCES,
    SyntheticVolumes,
)
from voxgan.errors import VoxganError


class VoxelLoader:
    """Iterable of ``(voxels, labels)`` batches over one of the datasets above, through a torch DataLoader.

    voxels : (B, 1, R, R, R) uint8 tensor of 0/1 indexed [x, y, z]; labels : (B,) int64 tensor.
    ``num_batches`` (= ``len(loader)``) is per epoch and per rank, the same on every rank.
    """

    def __init__(
        self, dataset: ShardDataset | SyntheticVolumes, loader: DataLoader, pin_memory: bool = False
    ):
        self.dataset, self.loader, self.pin_memory = dataset, loader, pin_memory

    @property
    def resolution(self) -> int:
        return self.dataset.resolution

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.dataset.class_names

    @property
    def num_batches(self) -> int:
        return self.dataset.num_batches

    @property
    def epoch(self) -> int:
        return self.dataset.epoch

    def __len__(self) -> int:
        return self.num_batches

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch``: the same seed and epoch give the same batches in the same order."""
        self.dataset.set_epoch(epoch)

    def set_position(self, epoch: int, batch_index: int) -> None:
        """Resume: the next pass delivers batches ``batch_index ..`` of ``epoch``, exactly those an
        uninterrupted pass would have delivered next, in the same order; skipped batches are not decoded
        (shard windows that end before ``batch_index`` are not even read)."""
        self.dataset.set_position(epoch, batch_index)

    def __iter__(self):
        for item in self.loader:
            if isinstance(item, WorkerFailure):
                raise VoxganError(item.message)
            voxels, labels = item.decode() if isinstance(item, PackedBatch) else item
            if self.pin_memory:
                voxels, labels = voxels.pin_memory(), labels.pin_memory()
            yield voxels, labels


def make_loader(
    source: str | Path,
    *,
    batch_size: int,
    split: str = "train",
    shuffle: bool = True,
    seed: int = 0,
    num_workers: int = 0,
    augment: bool = False,
    classes=None,
    resolution: int | None = None,
    epoch_size: int = DEFAULT_EPOCH_SIZE,
    drop_last: bool = False,
    shuffle_buffer: int | None = None,
    persistent_workers: bool = False,
    pin_memory: bool | None = None,
    multiprocessing_context: str | None = None,
    prefetch_factor: int | None = None,
    rank: int | None = None,
    world_size: int | None = None,
) -> VoxelLoader:
    """Batches of ``(voxels, labels)`` from a shard folder or ``synthetic:noise`` / ``synthetic:shapes``.

    voxels : (B, 1, R, R, R) uint8 tensor of 0/1; labels : (B,) int64 tensor (-1 without classes).
    Call ``loader.set_epoch(epoch)`` before each epoch to reshuffle. ``resolution`` defaults to 16 for the
    synthetic sources and must match the manifest for a shard folder. ``pin_memory`` defaults to True when
    CUDA is available. ``multiprocessing_context`` is "fork", "spawn" or "forkserver" (default: torch's).

    Example
    -------
    >>> loader = make_loader("synthetic:shapes", batch_size=32, resolution=32)
    >>> loader.set_epoch(0)
    >>> voxels, labels = next(iter(loader))  # (32, 1, 32, 32, 32) uint8, (32,) int64
    """
    if num_workers < 0:
        raise VoxganError(f"num_workers must be 0 or more, got {num_workers}")
    common = {
        "batch_size": batch_size,
        "split": split,
        "seed": seed,
        "augment": augment,
        "drop_last": drop_last,
        "rank": rank,
        "world_size": world_size,
    }  # the options every source takes
    if str(source).startswith(SYNTHETIC_PREFIX):
        dataset = synthetic_dataset(str(source), classes, resolution, epoch_size, common)
    else:
        dataset = ShardDataset(
            source,
            classes=classes,
            shuffle=shuffle,
            shuffle_buffer=shuffle_buffer,
            resolution=resolution,
            **common,
        )
    dataset.ship_packed = num_workers > 0
    loader = worker_loader(dataset, num_workers, persistent_workers, multiprocessing_context, prefetch_factor)
    return VoxelLoader(dataset, loader, torch.cuda.is_available() if pin_memory is None else bool(pin_memory))


def synthetic_dataset(
    source_name: str, classes, resolution: int | None, epoch_size: int, common: dict
) -> SyntheticVolumes:
    """The ``synthetic:*`` source named, at ``resolution`` (default 16), with the options every source
    takes (``common``); VoxganError for an unknown name or a class subset of the noise."""
    if source_name not in SYNTHETIC_SOURCES:
        raise VoxganError(f"unknown source {source_name!r}; use one of {', '.join(SYNTHETIC_SOURCES)}")
    options = dict(common, resolution=resolution or DEFAULT_RESOLUTION, epoch_size=epoch_size)
    if source_name == "synthetic:shapes":
        options["classes"] = classes
    elif classes is not None:
        raise VoxganError("synthetic:noise has no classes; drop the class subset or use synthetic:shapes")
    return SYNTHETIC_SOURCES[source_name](**options)


def worker_loader(
    dataset: ShardDataset | SyntheticVolumes,
    num_workers: int,
    persistent_workers: bool,
    multiprocessing_context: str | None,
    prefetch_factor: int | None,
) -> DataLoader:
    """The torch DataLoader over ``dataset``'s whole batches (its own batching), in ``num_workers``
    processes (0: this one), pinning left to :class:`VoxelLoader`, which pins after decoding."""
    extra = {}
    if num_workers > 0:
        extra = dict(
            persistent_workers=persistent_workers,
            multiprocessing_context=multiprocessing_context,
            prefetch_factor=prefetch_factor,
        )
    return DataLoader(dataset, batch_size=None, num_workers=num_workers, pin_memory=False, **extra)
