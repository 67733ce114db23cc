"""The on-disk format: HDF5 shards of bit-packed occupancy grids plus a ``manifest.json``.

A shard folder holds ``manifest.json`` and files named ``{split}-{index:05d}.h5``. Each file has
the attributes in :data:`REQUIRED_ATTRS` and the datasets ``voxels`` (N, R³/8) uint8,
``labels`` (N,) int32, ``sources`` (N,) UTF-8 and ``mesh_to_grid`` (N, 4, 4) float64.
Occupancy is indexed ``[x, y, z]`` with +z up; voxel (i, j, k) spans [i, i+1) × [j, j+1) × [k, k+1)
in grid coordinates. Every write goes to a temporary name in the same folder and is renamed into
place only when complete.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from voxgan import __version__
from voxgan.atomic import atomic_open
from voxgan.errors import VoxganError

SCHEMA_VERSION = 2  # 2: shards are fixed work units recorded in plan.json (see voxgan.ingest.plan)
READABLE_VERSIONS = (1, 2)  # 1: shards of exactly shard_size samples, no plan.json; same file layout
MANIFEST = "manifest.json"
COMPRESSION = "gzip"  # readable by every HDF5 build; see BENCHMARKS.md
COMPRESSION_LEVEL = 4
CHUNK_BYTES = 256 * 1024
SHARD_PATTERN = re.compile(r"^(?P<split>[A-Za-z0-9_]+)-(?P<index>\d{5})\.h5$")
MODES = ("solid", "surface")  # filled volumes or their surface shells
REQUIRED_ATTRS = ("schema_version", "resolution", "mode", "packing", "split", "class_names", "up_axis")


def readable() -> str:
    """The schema versions this voxgan reads, as words for an error message."""
    return f"this voxgan reads {' and '.join(map(str, READABLE_VERSIONS))}"


def shard_name(split: str, index: int) -> str:
    """File name of shard ``index`` of ``split``, e.g. ``train-00000.h5``."""
    return f"{split}-{index:05d}.h5"


def pack(occupancy: np.ndarray) -> np.ndarray:
    """Bit-pack occupancy grids.

    occupancy : (N, R, R, R) bool  ->  (N, R³/8) uint8, each row ``np.packbits(grid.reshape(-1))``.
    """
    occupancy = np.asarray(occupancy, dtype=bool)
    return np.packbits(occupancy.reshape(len(occupancy), -1), axis=1)


def unpack(packed: np.ndarray, resolution: int) -> np.ndarray:
    """Inverse of :func:`pack`: (N, R³/8) uint8  ->  (N, R, R, R) bool."""
    packed = np.asarray(packed, dtype=np.uint8)
    bits = np.unpackbits(packed, axis=1, count=resolution**3)
    return bits.reshape(len(packed), resolution, resolution, resolution).view(bool)


def chunk_rows(resolution: int, count: int) -> int:
    """Samples per HDF5 chunk: about :data:`CHUNK_BYTES` of packed voxels, at most ``count``."""
    row_bytes = resolution**3 // 8
    return max(1, min(count, CHUNK_BYTES // row_bytes))


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class ShardHeader:
    """What every shard of one folder shares (the HDF5 attributes)."""

    resolution: int
    mode: str = "solid"
    split: str = "train"
    class_names: tuple[str, ...] = ()
    recipe: str = ""
    up_axis: str = "z"


def write_shard(
    path: Path,
    header: ShardHeader,
    voxels: np.ndarray,
    labels: np.ndarray,
    sources: list[str],
    mesh_to_grid: np.ndarray,
) -> dict:
    """Write one shard atomically and return its manifest entry ``{file, count, sha256}``.

    voxels : (N, R³/8) uint8 packed (see :func:`pack`); labels : (N,) int;
    sources : N relative paths; mesh_to_grid : (N, 4, 4) float64.
    """
    path = Path(path)
    count = len(voxels)
    r = header.resolution
    assert voxels.shape == (count, r**3 // 8) and voxels.dtype == np.uint8, voxels.shape
    assert len(labels) == len(sources) == len(mesh_to_grid) == count
    rows = chunk_rows(r, max(count, 1))
    # built in memory, then written by one plain atomic write: a full disk then fails a Python write
    # (an OSError, the temporary removed) instead of HDF5's own writes, which leave its objects broken
    # (errors at exit, a crash when the interpreter ends)
    buffer = io.BytesIO()
    with h5py.File(buffer, "w", track_order=True) as f:
        f.attrs.update(
            schema_version=SCHEMA_VERSION,
            resolution=r,
            mode=header.mode,
            packing="bits",
            split=header.split,
            class_names=json.dumps(list(header.class_names)),
            up_axis=header.up_axis,
            voxgan_version=__version__,
            recipe=header.recipe,
        )
        opts = dict(compression=COMPRESSION, compression_opts=COMPRESSION_LEVEL)
        f.create_dataset("voxels", data=voxels, chunks=(rows, voxels.shape[1]), **opts)
        f.create_dataset("labels", data=np.asarray(labels, np.int32), chunks=(rows,), **opts)
        f.create_dataset(
            "sources", data=list(sources), dtype=h5py.string_dtype("utf-8"), chunks=(rows,), **opts
        )
        f.create_dataset(
            "mesh_to_grid",
            data=np.asarray(mesh_to_grid, np.float64).reshape(count, 4, 4),
            chunks=(rows, 4, 4),
            **opts,
        )
    with atomic_open(path, "wb") as handle:
        handle.write(buffer.getbuffer())
    return {"file": path.name, "count": count, "sha256": hashlib.sha256(buffer.getbuffer()).hexdigest()}


def read_header(f: h5py.File, name: str = "") -> ShardHeader:
    """Read and check a shard's attributes; raise VoxganError naming the file when they are wrong."""
    name = name or f.filename
    missing = [a for a in REQUIRED_ATTRS if a not in f.attrs]
    if missing:
        raise VoxganError(f"{name}: not a voxgan shard (missing attributes {', '.join(missing)})")
    version = int(f.attrs["schema_version"])
    if version not in READABLE_VERSIONS:
        raise VoxganError(f"{name}: schema version {version}, {readable()}; re-run voxgan voxelize")
    if f.attrs["packing"] != "bits":
        raise VoxganError(f"{name}: unknown packing {f.attrs['packing']!r}")
    return ShardHeader(
        resolution=int(f.attrs["resolution"]),
        mode=str(f.attrs["mode"]),
        split=str(f.attrs["split"]),
        class_names=tuple(json.loads(f.attrs["class_names"])),
        recipe=str(f.attrs.get("recipe", "")),
        up_axis=str(f.attrs["up_axis"]),
    )


@dataclass
class Shard:
    """A whole shard in memory: occupancy (N, R, R, R) bool, labels (N,), sources, mesh_to_grid (N, 4, 4)."""

    header: ShardHeader
    occupancy: np.ndarray
    labels: np.ndarray
    sources: list[str]
    mesh_to_grid: np.ndarray


def read_shard(path: Path) -> Shard:
    """Load a whole shard (for tools and tests; training streams with :mod:`voxgan.data`)."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            header = read_header(f, str(path))
            return Shard(
                header=header,
                occupancy=unpack(f["voxels"][:], header.resolution),
                labels=f["labels"][:].astype(np.int64),
                sources=[s.decode() if isinstance(s, bytes) else s for s in f["sources"][:]],
                mesh_to_grid=f["mesh_to_grid"][:],
            )
    except OSError as error:
        raise VoxganError(f"{path}: cannot read shard ({error}); re-run voxgan voxelize") from None


def read_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Every volume of ``split`` in a shard folder: (N, R, R, R) bool, (N,) int64 labels, class names."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    splits = manifest.get("splits", {})
    if split not in splits:
        raise VoxganError(f"{folder}: no split {split!r}; it has {', '.join(splits) or 'none'}")
    check_split(folder, manifest, split)
    shards = [read_shard(folder / entry["file"]) for entry in splits[split]["shards"]]
    resolution = int(manifest["resolution"])
    if not shards:
        return (
            np.zeros((0,) + (resolution,) * 3, bool),
            np.zeros(0, np.int64),
            tuple(manifest.get("classes", ())),
        )
    class_names = shards[0].header.class_names
    return (
        np.concatenate([s.occupancy for s in shards]),
        np.concatenate([s.labels for s in shards]),
        tuple(class_names),
    )


def read_manifest(folder: Path) -> dict:
    """Read ``folder/manifest.json``; VoxganError when missing, unreadable, of another schema or not
    shaped as the format says (see :func:`check_manifest`)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise VoxganError(f"{folder}: no {MANIFEST}; is this a shard folder made by voxgan voxelize?")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as error:
        raise VoxganError(
            f"{path}: unreadable manifest ({error_text(error)}); re-run voxgan voxelize"
        ) from None
    if not isinstance(manifest, dict):
        raise VoxganError(f"{path}: not a manifest (the JSON is not an object); re-run voxgan voxelize")
    version = manifest.get("schema_version")
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise VoxganError(f"{path}: schema version {str(version)[:20]}, {readable()}")
    check_manifest(manifest, path)
    return manifest


def error_text(error: BaseException) -> str:
    """An exception's text on one line, at most 200 characters."""
    return (" ".join(str(error).split()) or type(error).__name__)[:200]


def check_manifest(manifest: dict, path: Path) -> None:
    """VoxganError naming the first field of a manifest that is not what the format says: a resolution
    that is a positive multiple of 8, a known mode, splits of shards named ``{split}-NNNNN.h5`` (a plain
    file name: never a path elsewhere), counts that add up, sha256 digests, class names."""

    def bad(what: str) -> VoxganError:
        return VoxganError(f"{path}: {what}; re-run voxgan voxelize")

    resolution = manifest.get("resolution")
    if not _count(resolution) or resolution < 8 or resolution % 8:
        raise bad(f"resolution {str(resolution)[:20]} is not a positive multiple of 8")
    if "mode" in manifest and manifest["mode"] not in MODES:
        raise bad(f"mode {str(manifest.get('mode'))[:20]} is not {' or '.join(MODES)}")
    classes = manifest.get("classes", [])
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise bad("classes is not a list of names")
    kinds = {"errors": (list, "a list"), "skipped": (dict, "a mapping"), "up_axes": (dict, "a mapping"),
             "recipe": (dict | str | None, "a recipe"), "layout": (str, "a name")}  # fmt: skip
    for field, (kind, called) in kinds.items():
        if field in manifest and not isinstance(manifest[field], kind):
            raise bad(f"{field} is not {called}")
    errors = manifest.get("errors") or []
    if not all(isinstance(e, dict) and isinstance(e.get("source"), str) and isinstance(e.get("reason"), str)
               for e in errors):  # fmt: skip
        raise bad("errors holds an entry without a source and a reason")
    if not all(_count(n) for n in (manifest.get("skipped") or {}).values()):
        raise bad("skipped holds a count that is not a count")
    if "seconds" in manifest and not isinstance(manifest["seconds"], int | float):
        raise bad("seconds is not a number")
    splits = manifest.get("splits")
    if not isinstance(splits, dict):
        raise bad("splits is not an object")
    for split, info in splits.items():
        if (
            not isinstance(info, dict)
            or not isinstance(info.get("shards"), list)
            or not _count(info.get("count"))
        ):
            raise bad(f"split {split[:40]!r} has no count and shards list")
        total = 0
        for entry in info["shards"]:
            if not isinstance(entry, dict):
                raise bad(f"split {split[:40]!r} lists a shard that is not an object")
            name, count, digest = entry.get("file"), entry.get("count"), entry.get("sha256")
            match = SHARD_PATTERN.match(name) if isinstance(name, str) else None
            if match is None or match["split"] != split:
                raise bad(
                    f"split {split[:40]!r} lists {str(name)[:60]!r}, not a shard file name {split}-NNNNN.h5"
                )
            if not _count(count):
                raise bad(f"{name}: count {str(count)[:20]} is not a count")
            if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise bad(f"{name}: sha256 {str(digest)[:20]!r} is not a sha256 digest")
            total += count
        if total != info["count"]:
            raise bad(f"split {split[:40]!r} counts {info['count']} samples, its shards hold {total}")


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def shard_problem(
    folder: Path, manifest: dict, split: str, entry: dict, *, hashes: bool = True
) -> str | None:
    """The first thing wrong with one shard the manifest lists, as ``"{file}: what"``, or None.

    Checks, in order: the file exists; its sha256 (when ``hashes``); it opens as HDF5; its attributes
    (:func:`read_header`); its header agrees with the manifest (resolution, mode, split, class names); its
    datasets hold the manifest's count of samples of R³/8 bytes; its labels name classes.
    """
    name = entry["file"]
    path = Path(folder) / name
    if not path.is_file():
        return f"{name}: missing"
    if hashes and file_sha256(path) != entry["sha256"]:
        return f"{name}: corrupt (sha256 differs from the manifest)"
    try:
        with h5py.File(path, "r") as f:
            return _header_problem(f, manifest, split, entry)
    except VoxganError as error:
        return f"{name}: {str(error).removeprefix(name + ': ').removesuffix('; re-run voxgan voxelize')}"
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as error:
        return f"{name}: not a readable shard ({error_text(error)})"


def _header_problem(f: h5py.File, manifest: dict, split: str, entry: dict) -> str | None:
    name = entry["file"]
    header = read_header(f, name)
    r, count = int(manifest["resolution"]), int(entry["count"])
    names = manifest.get("classes")  # compared when the manifest lists names (older tools may not)
    if (
        isinstance(names, list)
        and all(isinstance(n, str) for n in names)
        and header.class_names != tuple(names)
    ):
        return f"{name}: class names {list(header.class_names)[:5]} differ from the manifest's {names[:5]}"
    for field, shard_value, manifest_value in (
        ("resolution", header.resolution, r),
        ("mode", header.mode, manifest.get("mode", header.mode)),
        ("split", header.split, split),
    ):
        if shard_value != manifest_value:
            return f"{name}: {field} {shard_value}, the manifest says {manifest_value}"
    expected = {
        "voxels": (count, r**3 // 8),
        "labels": (count,),
        "sources": (count,),
        "mesh_to_grid": (count, 4, 4),
    }
    for dataset, shape in expected.items():
        if dataset not in f or not isinstance(f[dataset], h5py.Dataset) or f[dataset].shape != shape:
            found = f[dataset].shape if dataset in f and isinstance(f[dataset], h5py.Dataset) else "none"
            return f"{name}: {dataset} of shape {found}, the manifest says {shape}"
    if f["voxels"].dtype != np.uint8:
        return f"{name}: voxels of dtype {f['voxels'].dtype}, not uint8"
    labels = f["labels"][:]
    if labels.dtype.kind not in "iu":
        return f"{name}: labels of dtype {labels.dtype}, not integers"
    if len(labels) and (labels.min() < -1 or labels.max() >= max(len(header.class_names), 1)):
        return f"{name}: labels outside -1..{max(len(header.class_names), 1) - 1}"
    return None


def verify(folder: Path, *, hashes: bool = True, first: bool = False) -> list[str]:
    """Check every listed shard (:func:`shard_problem`); return one line per problem (empty: all good).

    first : stop at the first problem (``voxgan info --verify`` names one file).
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    problems = []
    for split, info in manifest["splits"].items():
        for entry in info["shards"]:
            problem = shard_problem(folder, manifest, split, entry, hashes=hashes)
            if problem is not None:
                problems.append(problem)
                if first:
                    return problems
    return problems


def check_split(folder: Path, manifest: dict, split: str, *, hashes: bool = True) -> None:
    """VoxganError naming the first bad shard of ``split`` (see :func:`shard_problem`): what the trainer,
    ``evaluate`` and ``export`` run before they read a sample, so a damaged folder fails at once."""
    for entry in manifest["splits"][split]["shards"]:
        problem = shard_problem(folder, manifest, split, entry, hashes=hashes)
        if problem is not None:
            raise VoxganError(f"{Path(folder)}/{problem}; re-run voxgan voxelize")
