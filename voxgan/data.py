"""Streaming batches of voxel grids: shard folders and synthetic sources, split by rank and worker.

One entry point, :func:`make_loader`, returns a :class:`VoxelLoader` that yields ``(voxels, labels)``:
voxels a uint8 tensor of 0/1 of shape (B, 1, R, R, R) indexed ``[x, y, z]`` (+z up), labels int64 (B,).

Batching happens inside the datasets: each DataLoader worker yields whole batches (``batch_size=None``),
reading whole HDF5 chunks; through :func:`make_loader` a worker sends its batches still bit-packed and the
main process unpacks each with one vectorised numpy call (8 times less to move between processes).

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
"""

from __future__ import annotations

import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from voxgan import shards
from voxgan.errors import VoxganError

SYNTHETIC_PREFIX = "synthetic:"
SHAPE_KINDS = ("sphere", "box", "cylinder", "torus")
DEFAULT_EPOCH_SIZE = 1000
DEFAULT_SHUFFLE_BUFFER = 8192  # samples, or fewer when they would take more than SHUFFLE_BUFFER_BYTES
SHUFFLE_BUFFER_BYTES = 64 << 20  # packed bytes per shuffle window (256 MiB of 64³ grids would be too much)
DEFAULT_RESOLUTION = 16
NOISE_FILL_RANGE = (0.1, 0.5)  # each noise volume: every voxel occupied with a probability drawn from this


# --- where this process stands ---------------------------------------------------------------------


def distributed_rank_and_world() -> tuple[int, int]:
    """(rank, world size): torch.distributed when initialised, else torchrun's RANK/WORLD_SIZE, or (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    try:
        rank = int(os.environ.get("RANK", "0"))
        world = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise VoxganError("RANK and WORLD_SIZE must be integers (as torchrun sets them)") from None
    if world < 1 or not 0 <= rank < world:
        raise VoxganError(f"RANK={rank} is not in 0..WORLD_SIZE-1 (WORLD_SIZE={world})")
    return rank, world


def rank_and_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """The given (rank, world size), checked; :func:`distributed_rank_and_world` when rank is None."""
    if rank is None:
        return distributed_rank_and_world()
    world = 1 if world_size is None else int(world_size)
    if world < 1 or not 0 <= int(rank) < world:
        raise VoxganError(f"rank {rank} is not in 0..world_size-1 (world_size {world})")
    return int(rank), world


def per_rank_samples(total: int, world: int, batch_size: int, drop_last: bool, what: str) -> int:
    """Samples each rank delivers per epoch: ceil(total / world), or whole batches of floor(total / world)."""
    if not drop_last:
        return math.ceil(total / world)
    samples = total // world // batch_size * batch_size
    if samples == 0:
        raise VoxganError(
            f"{what}: {total} samples make no whole batch of {batch_size} per rank ({world} ranks) with "
            "drop_last; use a smaller batch size or keep the last partial batch"
        )
    return samples


def worker_id_and_count() -> tuple[int, int]:
    """(worker id, number of workers) of the DataLoader worker running this; (0, 1) in the main process."""
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def stream_seed(*parts: int | str) -> list[int]:
    """Entropy for ``np.random.default_rng`` from integers and strings (strings through crc32)."""
    return [zlib.crc32(p.encode()) if isinstance(p, str) else int(p) for p in parts]


def resume_point(batch_counts: list[int], start_batch: int) -> tuple[list[int], int]:
    """Where each worker stands after the DataLoader delivered ``start_batch`` batches.

    The DataLoader takes batches from its workers in turn (0, 1, ..., W-1, 0, ...), skipping workers that
    ran out. Returns how many batches each worker had delivered and which worker delivers the next one.
    """
    consumed = [0] * len(batch_counts)
    left = start_batch
    round_index = 0
    while True:
        active = [w for w, count in enumerate(batch_counts) if count > round_index]
        if not active:
            return consumed, 0
        if left < len(active):
            for w in active[:left]:
                consumed[w] += 1
            return consumed, active[left]
        for w in active:
            consumed[w] += 1
        left -= len(active)
        round_index += 1


# --- turning packed rows into batches ---------------------------------------------------------------


def unpack_batch(packed: np.ndarray, resolution: int) -> np.ndarray:
    """Unpack bit-packed rows: (B, R³/8) uint8  ->  (B, R, R, R) uint8 of 0/1."""
    bits = np.unpackbits(packed, axis=1, count=resolution**3)
    return bits.reshape(len(packed), resolution, resolution, resolution)


def augment_keeping_up(occupancy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Turn each grid by a random element of the 8 symmetries that keep +z up.

    occupancy : (B, R, R, R) indexed [x, y, z]  ->  (B, R, R, R): a turn of 0, 90, 180 or 270 degrees about z,
    then maybe a flip of x (which with the turns gives the flip of y too).
    """
    choice = rng.integers(0, 8, size=len(occupancy))
    out = np.empty_like(occupancy)
    for symmetry in np.unique(choice):
        members = choice == symmetry
        turned = np.rot90(occupancy[members], k=int(symmetry) % 4, axes=(1, 2))
        out[members] = turned[:, ::-1] if symmetry >= 4 else turned
    return out


def to_batch(occupancy: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, R, R, R) uint8 and (B,) int  ->  voxels (B, 1, R, R, R) uint8 tensor, labels (B,) int64 tensor."""
    assert occupancy.ndim == 4 and len(labels) == len(occupancy), (occupancy.shape, labels.shape)
    voxels = torch.from_numpy(np.ascontiguousarray(occupancy, dtype=np.uint8)).unsqueeze(1)
    return voxels, torch.from_numpy(np.asarray(labels, dtype=np.int64))


def finish_batch(
    occupancy: np.ndarray, labels: np.ndarray, augment_seed: list[int] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment (when ``augment_seed`` is given) and convert: (B, R, R, R) uint8, (B,)  ->  tensors."""
    if augment_seed is not None:
        occupancy = augment_keeping_up(occupancy, np.random.default_rng(augment_seed))
    return to_batch(occupancy, labels)


@dataclass
class PackedBatch:
    """A batch as it crosses from a DataLoader worker to the main process, 8 times smaller than unpacked.

    packed : (B, R³/8) uint8; labels : (B,) int64; augment_seed : seeds the augmentation, or None for none.
    """

    packed: np.ndarray
    labels: np.ndarray
    resolution: int
    augment_seed: list[int] | None = None

    def decode(self) -> tuple[torch.Tensor, torch.Tensor]:
        """voxels (B, 1, R, R, R) uint8 tensor and labels (B,) int64 tensor."""
        return finish_batch(unpack_batch(self.packed, self.resolution), self.labels, self.augment_seed)


@dataclass
class WorkerFailure:
    """A VoxganError raised in a DataLoader worker, carried to the main process as its one-line message."""

    message: str


class _PositionMixin:
    """The epoch and the first batch to deliver, in shared memory so persistent workers see changes.

    With ``ship_packed`` (set by :func:`make_loader`), DataLoader workers yield :class:`PackedBatch` and the
    main process decodes them: moving bits between processes costs far more than unpacking them.
    """

    ship_packed = False

    def _in_shipping_worker(self) -> bool:
        return self.ship_packed and get_worker_info() is not None

    def _init_position(self) -> None:
        self._position = torch.zeros(2, dtype=torch.int64).share_memory_()  # [epoch, start batch]

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (the same seed and epoch give the same order); start at its first batch."""
        self.set_position(epoch, 0)

    def set_position(self, epoch: int, start_batch: int) -> None:
        """Resume inside an epoch: the next pass delivers batches ``start_batch .. num_batches - 1``."""
        if not 0 <= start_batch <= self.num_batches:
            raise VoxganError(f"start batch {start_batch} is outside 0..{self.num_batches} for this data")
        self._position[0] = int(epoch)
        self._position[1] = int(start_batch)

    @property
    def epoch(self) -> int:
        return int(self._position[0])

    @property
    def start_batch(self) -> int:
        return int(self._position[1])

    def _guarded(self, batches):
        """Yield ``batches``; in a worker, turn a VoxganError into a WorkerFailure for the main process."""
        try:
            yield from batches
        except VoxganError as error:
            if get_worker_info() is None:
                raise
            yield WorkerFailure(str(error))


# --- shard folders ------------------------------------------------------------------------------------


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


def class_subset(class_names: tuple[str, ...], classes, where: str) -> np.ndarray | None:
    """Label remapping for a class subset: (C,) int64 with the new index or -1; None for all classes."""
    if classes is None:
        return None
    wanted = [classes] if isinstance(classes, str) else list(classes)
    unknown = [c for c in wanted if c not in class_names]
    if unknown or not wanted:
        raise VoxganError(
            f"{where}: unknown class {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"available: {', '.join(class_names) or '(no classes)'}"
        )
    remap = np.full(len(class_names), -1, dtype=np.int64)
    for new_index, name in enumerate(wanted):
        remap[class_names.index(name)] = new_index
    return remap


def subset_names(class_names: tuple[str, ...], remap: np.ndarray | None) -> tuple[str, ...]:
    """The class names in the order of the remapped labels (see :func:`class_subset`)."""
    if remap is None:
        return tuple(class_names)
    kept = np.argsort(remap)[int(np.sum(remap < 0)) :]
    return tuple(class_names[k] for k in kept)


class ShardDataset(_PositionMixin, IterableDataset):
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
        for entry in self.entries:  # a cheap early message; the sha256 is checked by the reading process
            if not (self.folder / entry["file"]).is_file():
                check_shard_file(self.folder / entry["file"], entry["sha256"])
        self._files: dict[int, object] = {}  # open HDF5 files of this process, by shard
        self._labels: dict[int, np.ndarray] = {}  # each shard's labels (N,) int64, read once per process
        self._datasets: dict[tuple[int, str], object] = {}  # open h5py datasets, by (shard, name)
        self._files_pid = os.getpid()
        self._verified = torch.zeros((len(self.entries), 2), dtype=torch.int64).share_memory_()
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


# --- synthetic sources --------------------------------------------------------------------------------


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


class SyntheticVolumes(_PositionMixin, IterableDataset):
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


# --- the entry point ------------------------------------------------------------------------------


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
    source_name = str(source)
    if num_workers < 0:
        raise VoxganError(f"num_workers must be 0 or more, got {num_workers}")
    if source_name.startswith(SYNTHETIC_PREFIX):
        if source_name not in SYNTHETIC_SOURCES:
            raise VoxganError(f"unknown source {source_name!r}; use one of {', '.join(SYNTHETIC_SOURCES)}")
        options = dict(
            batch_size=batch_size,
            resolution=resolution or DEFAULT_RESOLUTION,
            epoch_size=epoch_size,
            split=split,
            seed=seed,
            augment=augment,
            drop_last=drop_last,
            rank=rank,
            world_size=world_size,
        )
        if source_name == "synthetic:shapes":
            options["classes"] = classes
        elif classes is not None:
            raise VoxganError("synthetic:noise has no classes; drop the class subset or use synthetic:shapes")
        dataset = SYNTHETIC_SOURCES[source_name](**options)
    else:
        dataset = ShardDataset(
            source,
            batch_size=batch_size,
            split=split,
            classes=classes,
            shuffle=shuffle,
            seed=seed,
            augment=augment,
            drop_last=drop_last,
            shuffle_buffer=shuffle_buffer,
            resolution=resolution,
            rank=rank,
            world_size=world_size,
        )
    dataset.ship_packed = num_workers > 0
    extra = {}
    if num_workers > 0:
        extra = dict(
            persistent_workers=persistent_workers,
            multiprocessing_context=multiprocessing_context,
            prefetch_factor=prefetch_factor,
        )
    loader = DataLoader(
        dataset,
        batch_size=None,
        num_workers=num_workers,
        pin_memory=False,  # the main process pins after decoding (see VoxelLoader)
        **extra,
    )
    return VoxelLoader(dataset, loader, torch.cuda.is_available() if pin_memory is None else bool(pin_memory))
