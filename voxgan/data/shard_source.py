"""The shard source: batches from one split of a shard folder, split by rank and then by worker.

An epoch is planned identically in every process from ``(seed, epoch)``:

1. the split's samples are cut into blocks that follow the HDF5 chunks; the block order is shuffled;
2. the concatenated order is cut into one contiguous range per distributed rank, each of
   ``ceil(N / world)`` samples (the last ranks wrap around to the start of the order, so at most
   ``world - 1`` samples are repeated) or, with ``drop_last``, ``floor(N / world)`` rounded down to whole
   batches (the tail of the shuffled order is dropped); every rank therefore yields the same number of
   batches;
3. each rank range is cut into shuffle windows of ``shuffle_buffer`` samples (whole batches), handed to
   the DataLoader workers in turn; a window is read block by block, permuted with a generator seeded by
   ``(seed, epoch, rank, window)`` and cut into batches.

Batching happens inside the dataset: each DataLoader worker yields whole batches (``batch_size=None``),
reading whole HDF5 chunks.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset

from voxgan import shards
from voxgan.data.stream import (
    PackedBatch,
    StreamPosition,
    class_subset,
    per_rank_samples,
    rank_and_world,
    resume_point,
    stream_seed,
    subset_names,
    worker_id_and_count,
)
from voxgan.errors import VoxganError

DEFAULT_SHUFFLE_BUFFER = 8192  # samples, or fewer when they would take more than SHUFFLE_BUFFER_BYTES
SHUFFLE_BUFFER_BYTES = 64 << 20  # packed bytes per shuffle window (256 MiB of 64³ grids would be too much)


def check_shard_file(path: Path, sha256: str, verified: torch.Tensor | None = None) -> None:
    """Raise VoxganError when the shard is missing or its sha256 differs from the manifest.

    verified : (2,) int64 (size, mtime_ns) of the file when a process last found it good, shared by the
    main process and all workers, so that each file is hashed once, not once per worker and epoch.
    """
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise VoxganError(
            f"{path}: shard listed in manifest.json is missing; re-run voxgan voxelize"
        ) from None
    key = [stat.st_size, stat.st_mtime_ns]
    if verified is not None and verified.tolist() == key:
        return
    if shards.file_sha256(path) != sha256:
        raise VoxganError(
            f"{path}: corrupt or truncated ({stat.st_size} bytes, sha256 differs from manifest.json); "
            "re-run voxgan voxelize"
        )
    if verified is not None:
        verified.copy_(torch.tensor(key, dtype=torch.int64))


def manifest_class_names(manifest: dict) -> tuple[str, ...] | None:
    """Class names from the manifest's ``classes``: a list of names or of {name: ...}, or a name mapping."""
    classes = manifest.get("classes")
    if isinstance(classes, dict):
        return tuple(str(name) for name in classes)
    if isinstance(classes, list) and all(isinstance(c, str) for c in classes):
        return tuple(classes)
    if isinstance(classes, list) and all(isinstance(c, dict) and "name" in c for c in classes):
        return tuple(str(c["name"]) for c in classes)
    return None


class ShardDataset(StreamPosition, IterableDataset):
    """Batches from one split of a shard folder, split by distributed rank then by DataLoader worker.

    Yields ``(voxels, labels)``: voxels (B, 1, R, R, R) uint8 tensor of 0/1, labels (B,) int64 tensor.
    HDF5 files are opened lazily in the process that reads them (never inherited across a fork) and each
    file's sha256 is checked against the manifest before it is first read; the result is shared with every
    worker (in shared memory), so a file is hashed once per run unless its size or mtime change.

    Parameters
    ----------
    folder : shard folder with ``manifest.json``.
    batch_size : samples per batch.
    split : which split of the manifest.
    classes : class names to keep (labels then index into this list), or None for all.
    shuffle : shuffle blocks and samples (seeded by ``seed`` and the epoch) or read in file order.
    augment : random turns about z and flips of x and y (+z stays up).
    drop_last : drop the last partial batch and the samples that do not divide among ranks.
    shuffle_buffer : samples shuffled together (rounded up to whole batches); default 8192, at most 64 MiB.
    resolution : expected resolution; a different one in the manifest is an error.
    rank, world_size : override the distributed rank (default: :func:`distributed_rank_and_world`).
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        batch_size: int,
        split: str = "train",
        classes=None,
        shuffle: bool = True,
        seed: int = 0,
        augment: bool = False,
        drop_last: bool = False,
        shuffle_buffer: int | None = None,
        resolution: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        super().__init__()
        if batch_size < 1:
            raise VoxganError(f"batch size must be at least 1, got {batch_size}")
        self.folder = Path(folder)
        manifest = shards.read_manifest(self.folder)
        splits = manifest.get("splits", {})
        if split not in splits:
            raise VoxganError(
                f"{self.folder}: no split {split!r} in manifest.json; it has {', '.join(splits)}"
            )
        self.resolution = int(manifest["resolution"])
        if resolution is not None and int(resolution) != self.resolution:
            raise VoxganError(
                f"{self.folder}: shards are {self.resolution}³, not the requested {resolution}³; "
                f"use resolution {self.resolution} or voxelize again"
            )
        self.split, self.batch_size, self.seed = split, int(batch_size), int(seed)
        self.shuffle, self.augment, self.drop_last = shuffle, augment, drop_last
        self.entries = [e for e in splits[split]["shards"] if int(e["count"]) > 0]
        self._files: dict[int, object] = {}  # open HDF5 files of this process, by shard
        self._labels: dict[int, np.ndarray] = {}  # each shard's labels (N,) int64, read once per process
        self._datasets: dict[tuple[int, str], object] = {}  # open h5py datasets, by (shard, name)
        self._files_pid = os.getpid()
        self._verified = torch.zeros((len(self.entries), 2), dtype=torch.int64).share_memory_()
        # the whole split is checked before the first batch: each file's sha256 (recorded for the
        # workers, which hash it again only if it changes), then every header against the manifest
        for i, entry in enumerate(self.entries):
            check_shard_file(self.folder / entry["file"], entry["sha256"], self._verified[i])
        shards.check_split(self.folder, manifest, split, hashes=False)
        all_names = manifest_class_names(manifest)
        if all_names is None:
            all_names = self._header(0).class_names if self.entries else ()
        self._label_remap = class_subset(all_names, classes, str(self.folder))
        self.class_names = subset_names(all_names, self._label_remap)
        self._build_blocks()
        self.rank, self.world_size = rank_and_world(rank, world_size)
        self.sample_count = int(self.block_count.sum())
        if self.sample_count == 0:
            raise VoxganError(
                f"{self.folder}: split {split!r} has no samples{' of ' + str(classes) if classes else ''}"
            )
        self.rank_samples = per_rank_samples(
            self.sample_count, self.world_size, self.batch_size, drop_last, f"{self.folder} split {split!r}"
        )
        self.num_batches = math.ceil(self.rank_samples / self.batch_size)
        if shuffle_buffer is None:
            shuffle_buffer = min(DEFAULT_SHUFFLE_BUFFER, SHUFFLE_BUFFER_BYTES // (self.resolution**3 // 8))
        self.window_samples = math.ceil(max(shuffle_buffer, 1) / self.batch_size) * self.batch_size
        self.num_windows = math.ceil(self.rank_samples / self.window_samples)
        self._init_position()

    # planning ---------------------------------------------------------------------------------------

    def _build_blocks(self) -> None:
        """Blocks that follow the HDF5 chunks: block_shard, block_start (N_blocks,) and selected rows."""
        shard_ids, starts, counts, rows = [], [], [], []
        for i, entry in enumerate(self.entries):
            count = int(entry["count"])
            step = shards.chunk_rows(self.resolution, count)
            labels = self._shard_labels(i) if self._label_remap is not None else None
            for start in range(0, count, step):
                stop = min(start + step, count)
                selected = None
                if labels is not None:
                    selected = np.flatnonzero(self._keep(labels[start:stop])) + start
                    if len(selected) == 0:
                        continue
                shard_ids.append(i)
                starts.append(start)
                counts.append(stop - start if selected is None else len(selected))
                rows.append(selected)
        self.block_shard = np.asarray(shard_ids, dtype=np.int64)
        self.block_start = np.asarray(starts, dtype=np.int64)
        self.block_count = np.asarray(counts, dtype=np.int64)
        self.block_rows = rows if self._label_remap is not None else None
        if self._label_remap is not None:
            self._close_files()  # the main process read labels; workers open their own handles

    def _keep(self, labels: np.ndarray) -> np.ndarray:
        valid = (labels >= 0) & (labels < len(self._label_remap))
        keep = np.zeros(len(labels), dtype=bool)
        keep[valid] = self._label_remap[labels[valid]] >= 0
        return keep

    def window_batches(self) -> list[int]:
        """Batches in each shuffle window of this rank: (num_windows,)."""
        sizes = [
            min(self.window_samples, self.rank_samples - i * self.window_samples)
            for i in range(self.num_windows)
        ]
        return [math.ceil(size / self.batch_size) for size in sizes]

    def block_order(self, epoch: int) -> np.ndarray:
        """The epoch's block order (N_blocks,), the same in every rank and worker."""
        if not self.shuffle:
            return np.arange(len(self.block_count))
        return np.random.default_rng(stream_seed(self.seed, epoch, "blocks")).permutation(
            len(self.block_count)
        )

    def window_pieces(self, order: np.ndarray, window: int) -> list[tuple[int, int, int]]:
        """The (block, begin, end) pieces of this rank's shuffle window, positions inside selected samples."""
        ends = np.cumsum(self.block_count[order])
        total = int(ends[-1])
        first = self.rank * self.rank_samples + window * self.window_samples
        last = min(first + self.window_samples, (self.rank + 1) * self.rank_samples)
        pieces = []
        position = first
        while position < last:
            wrapped = position % total
            k = int(np.searchsorted(ends, wrapped, side="right"))
            block_begin = int(ends[k] - self.block_count[order[k]])
            take = min(int(ends[k]) - wrapped, last - position)
            pieces.append((int(order[k]), wrapped - block_begin, wrapped - block_begin + take))
            position += take
        return pieces

    # reading ----------------------------------------------------------------------------------------

    def _file(self, i: int):
        import h5py

        if self._files_pid != os.getpid():  # inherited from a parent: never use its handles
            self._files, self._datasets, self._labels, self._files_pid = {}, {}, {}, os.getpid()
        if i not in self._files:
            entry = self.entries[i]
            path = self.folder / entry["file"]
            check_shard_file(path, entry["sha256"], self._verified[i])
            try:
                handle = h5py.File(path, "r")
            except OSError as error:
                raise VoxganError(f"{path}: cannot open shard ({error}); re-run voxgan voxelize") from None
            try:
                header = shards.read_header(handle, str(path))
                rows = self.resolution**3 // 8
                if header.resolution != self.resolution:
                    raise VoxganError(
                        f"{path}: resolution {header.resolution}, manifest.json says {self.resolution}"
                    )
                if handle["voxels"].shape != (int(entry["count"]), rows) or len(handle["labels"]) != int(
                    entry["count"]
                ):
                    raise VoxganError(
                        f"{path}: voxels {handle['voxels'].shape} do not match manifest.json "
                        f"({entry['count']} samples of {rows} bytes); re-run voxgan voxelize"
                    )
            except KeyError as error:
                handle.close()
                raise VoxganError(f"{path}: not a voxgan shard ({error})") from None
            except VoxganError:
                handle.close()
                raise
            self._files[i] = handle
        return self._files[i]

    def _header(self, i: int) -> shards.ShardHeader:
        header = shards.read_header(self._file(i), str(self.folder / self.entries[i]["file"]))
        self._close_files()
        return header

    def _shard_labels(self, i: int) -> np.ndarray:
        """All labels of shard ``i``: (N,) int64, read once per process."""
        if self._files_pid != os.getpid() or i not in self._labels:
            labels = self._read(i, "labels", slice(None)).astype(np.int64)  # resets the caches after a fork
            self._labels[i] = labels
        return self._labels[i]

    def _read(self, i: int, name: str, rows: slice) -> np.ndarray:
        try:
            dataset = self._datasets.get((i, name)) if self._files_pid == os.getpid() else None
            if dataset is None:
                dataset = self._datasets[(i, name)] = self._file(i)[name]
            return dataset[rows]
        except (OSError, RuntimeError, ValueError) as error:
            path = self.folder / self.entries[i]["file"]
            raise VoxganError(f"{path}: cannot read {name} ({error}); re-run voxgan voxelize") from None

    def _close_files(self) -> None:
        if self._files_pid == os.getpid():
            for handle in self._files.values():
                handle.close()
        self._files, self._datasets = {}, {}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_files"], state["_datasets"], state["_labels"] = {}, {}, {}
        return state

    def read_window(self, pieces: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
        """Read pieces of blocks: packed (n, R³/8) uint8 and labels (n,) int64 (remapped to the subset)."""
        packed, labels = [], []
        for block, begin, end in pieces:
            shard = int(self.block_shard[block])
            if self.block_rows is None:
                start = int(self.block_start[block])
                rows, pick = slice(start + begin, start + end), None
            else:
                selected = self.block_rows[block][begin:end]
                rows, pick = slice(int(selected[0]), int(selected[-1]) + 1), selected - selected[0]
            block_packed = self._read(shard, "voxels", rows)
            block_labels = self._shard_labels(shard)[rows]
            if pick is not None:
                block_packed, block_labels = block_packed[pick], self._label_remap[block_labels[pick]]
            packed.append(block_packed)
            labels.append(block_labels)
        packed, labels = np.concatenate(packed), np.concatenate(labels)
        assert packed.shape[1:] == (self.resolution**3 // 8,) and len(labels) == len(packed), packed.shape
        return packed, labels

    # iterating --------------------------------------------------------------------------------------

    def __iter__(self):
        batches = self._packed_batches()
        return self._guarded(batches if self._in_shipping_worker() else (b.decode() for b in batches))

    def _packed_batches(self):
        epoch, start_batch = self.epoch, self.start_batch
        worker, workers = worker_id_and_count()
        per_window = self.window_batches()
        windows_of = [list(range(w, self.num_windows, workers)) for w in range(workers)]
        consumed, next_worker = resume_point(
            [sum(per_window[i] for i in ws) for ws in windows_of], start_batch
        )
        logical = (worker + next_worker) % workers  # so that the resumed order continues the interrupted one
        skip = consumed[logical]
        order = self.block_order(epoch)
        for window in windows_of[logical]:
            if skip >= per_window[window]:
                skip -= per_window[window]
                continue
            packed, labels = self.read_window(self.window_pieces(order, window))
            if self.shuffle:
                rng = np.random.default_rng(stream_seed(self.seed, epoch, self.rank, window, "window"))
                permutation = rng.permutation(len(packed))
                packed, labels = packed[permutation], labels[permutation]
            for b in range(skip, per_window[window]):
                rows = slice(b * self.batch_size, (b + 1) * self.batch_size)
                augment_seed = stream_seed(self.seed, epoch, self.rank, window, b, "augment")
                yield PackedBatch(
                    packed[rows], labels[rows], self.resolution, augment_seed if self.augment else None
                )
            skip = 0
