"""Mesh folder -> voxel shards: the resumable, parallel run behind ``voxgan voxelize``.

A run: find the mesh files (:mod:`voxgan.ingest.layouts`), give each a class and split, voxelize them in
worker processes in a fixed order (:mod:`voxgan.ingest.sample`, one file each), and write each split's
samples to shards of ``shard_size`` samples (:mod:`voxgan.shards`). The manifest is rewritten atomically
after every shard with ``"complete": false`` and ``"progress"`` (for each split, how many of its files
the finished shards cover), so a run killed at any moment resumes from its last finished shard and gives
the same shards as an uninterrupted run. Every mesh file found ends as a sample or as an entry in the
manifest's ``errors``.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from voxgan import __version__, shards
from voxgan.errors import VoxganError
from voxgan.ingest import layouts
from voxgan.ingest.formats import MESH_EXTENSIONS, VOXEL_EXTENSIONS, volume_sources
from voxgan.ingest.frame import assumed_up_axes, up_axis_line
from voxgan.ingest.info import PREVIEW, write_preview
from voxgan.ingest.recipes import Recipe, count_mismatches, shapenet_class_map
from voxgan.ingest.sample import Outcome, Settings, voxelize_source

MODES = ("solid", "surface")
UP_AXES = ("x", "y", "z", "-x", "-y", "-z")
SPLIT_ORDER = ("train", "val", "test")
DEFAULT_SHARD_SIZE = 1024  # 16³: 512 KiB packed per shard; ModelNet40 train gives 10 shards
DEFAULT_MAX_FACES = 2_000_000
RESUME_IGNORES = ("workers", "overwrite")  # options that may change between a run and its resume


class ConfigError(VoxganError):
    """A bad option value; ``option`` names the command-line option (the CLI turns it into exit 2)."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


def default_workers() -> int:
    """One worker process per core this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


@dataclass
class VoxelizeConfig:
    """Every option of a ``voxgan voxelize`` run (recorded in the manifest's ``config``).

    ``shard_size`` samples per shard file (1024 by default: 512 KiB packed at 16³, 32 MiB at 64³, and
    ModelNet40 gives 10 train shards, enough for ranks x loader workers to share). ``test_fraction`` is
    the share of files put in ``test`` by path hash (folder, flat, shapenet without ``split_file``).
    ``grid_coords`` takes mesh coordinates as grid coordinates (identity affine, no normalisation).
    ``class_names`` fixes the label order; ``class_map`` renames raw classes (folder names, synset ids).
    ``expected`` holds a complete copy's counts (train, test, total, classes) to warn about. ``mat_key``
    names the array read from .mat and .npz files (default: ``instance``, else the only volume-shaped one).
    """

    input_dir: Path
    output_dir: Path
    resolution: int = 16
    mode: str = "solid"
    layout: str = "auto"
    workers: int = field(default_factory=default_workers)
    shard_size: int = DEFAULT_SHARD_SIZE
    max_faces: int = DEFAULT_MAX_FACES
    overwrite: bool = False
    padding: float = 0.5
    test_fraction: float = 0.2
    up_axis: str = "z"
    include: tuple[str, ...] = ()
    class_names: tuple[str, ...] = ()
    class_map: dict[str, str] = field(default_factory=dict)
    split_file: Path | None = None
    grid_coords: bool = False
    mat_key: str | None = None
    recipe: str = ""
    recipe_text: str = ""
    expected: dict[str, int] = field(default_factory=dict)


def make_config(input_dir: Path, output_dir: Path, recipe: Recipe | None = None, **options) -> VoxelizeConfig:
    """Build a config: defaults, then the recipe's values, then ``options`` that are not None.

    options : any :class:`VoxelizeConfig` field; None means "not given" (the recipe's value or the
    default stays).
    """
    values: dict = {}
    if recipe is not None:
        values.update(recipe.voxelize)
        values.update(layout=recipe.layout, include=recipe.include, class_names=recipe.class_names)
        values.update(class_map=recipe.class_map, expected=recipe.expected)
        values.update(recipe=recipe.name, recipe_text=recipe.text)
        if recipe.up_axis is not None:
            values["up_axis"] = recipe.up_axis
        if recipe.test_fraction is not None:
            values["test_fraction"] = recipe.test_fraction
    values.update({key: value for key, value in options.items() if value is not None})
    if "include" in values:
        values["include"] = tuple(values["include"])
    if "class_names" in values:
        values["class_names"] = tuple(values["class_names"])
    return VoxelizeConfig(input_dir=Path(input_dir), output_dir=Path(output_dir), **values)


def check_config(config: VoxelizeConfig) -> None:
    """Raise :class:`ConfigError` naming the option of the first bad value."""
    r = config.resolution
    if not isinstance(r, int) or r < 8 or r > 256 or r % 8:
        raise ConfigError(
            "--resolution", f"resolution {r} is not a multiple of 8 between 8 and 256 (16, 32, 64)"
        )
    if config.mode not in MODES:
        raise ConfigError("--mode", f"mode {config.mode!r} is not one of {', '.join(MODES)}")
    if config.layout not in ("auto", *layouts.LAYOUTS):
        raise ConfigError(
            "--layout", f"layout {config.layout!r} is not one of auto, {', '.join(layouts.LAYOUTS)}"
        )
    if config.workers < 1:
        raise ConfigError("--workers", f"workers {config.workers} must be at least 1")
    if config.shard_size < 1:
        raise ConfigError("--shard-size", f"shard size {config.shard_size} must be at least 1")
    if config.max_faces < 1:
        raise ConfigError("--max-faces", f"max faces {config.max_faces} must be at least 1")
    if not 0 <= config.padding < r / 2:
        raise ConfigError(
            "--padding", f"padding {config.padding} must be at least 0 and below half the resolution"
        )
    if not 0 <= config.test_fraction <= 1:
        raise ConfigError("--test-fraction", f"test fraction {config.test_fraction} must be between 0 and 1")
    if config.up_axis not in UP_AXES:
        raise ConfigError("--up-axis", f"up axis {config.up_axis!r} is not one of {', '.join(UP_AXES)}")
    if not config.input_dir.is_dir():
        raise ConfigError("INPUT_DIR", f"input folder {config.input_dir} does not exist or is not a folder")
    if config.split_file is not None and not Path(config.split_file).is_file():
        raise ConfigError("--split-file", f"split file {config.split_file} does not exist")
    if config.output_dir.exists() and not config.output_dir.is_dir():
        raise ConfigError("OUTPUT_DIR", f"output {config.output_dir} exists and is not a folder")


def config_record(config: VoxelizeConfig) -> dict:
    """The config as JSON-ready values (the manifest's ``config``); the recipe text is kept apart."""
    record = asdict(config)
    record.pop("recipe_text")
    for key in ("input_dir", "output_dir", "split_file"):
        if record[key] is not None:
            record[key] = str(Path(record[key]).resolve())
    record["include"] = list(record["include"])
    record["class_names"] = list(record["class_names"])
    return record


@dataclass
class Plan:
    """What a run will do: the layout, every input file, every source to account for (a file, or one
    volume of a stack, ``file.npy#7``), each kept source's entry, the errors known upfront."""

    layout: str
    mesh_paths: list[str]
    sources: list[str]
    skipped: dict[str, int]
    entries: list[layouts.MeshEntry]
    class_names: tuple[str, ...]
    errors: list[tuple[str, str]]
    fingerprint: str


def mesh_extensions() -> frozenset[str]:
    """The suffixes voxgan reads, lower case with the dot (meshes and binvox)."""
    return frozenset(
        e.lower() if e.startswith(".") else "." + e.lower() for e in (*MESH_EXTENSIONS, *VOXEL_EXTENSIONS)
    )


def fingerprint_of(root: Path, mesh_paths: list[str]) -> str:
    """sha256 over the mesh files' relative paths and sizes: a resumed run must see the same input."""
    digest = hashlib.sha256()
    for source in mesh_paths:
        digest.update(f"{source}\0{(root / source).stat().st_size}\n".encode())
    return digest.hexdigest()


def plan_run(config: VoxelizeConfig) -> Plan:
    """Find the mesh files, detect the layout, give each file a class and split."""
    root = config.input_dir.resolve()
    found = layouts.find_mesh_files(
        root, mesh_extensions(), config.include, exclude_dirs=(config.output_dir,)
    )
    sources = volume_sources(root, found.mesh_paths, config.mat_key)
    layout = layouts.detect_layout(found.mesh_paths) if config.layout == "auto" else config.layout
    class_map = dict(config.class_map)
    if layout == "shapenet" and not class_map:
        class_map = shapenet_class_map()
    split_table = layouts.read_shapenet_split_file(config.split_file) if config.split_file else None
    entries, errors = layouts.assign_entries(
        sources,
        layout,
        test_fraction=config.test_fraction,
        class_map=class_map,
        split_table=split_table,
    )
    class_names = layouts.class_names_of(entries, config.class_names)
    known = set(class_names)
    kept = []
    for entry in entries:
        if entry.class_name is not None and entry.class_name not in known:
            errors.append(
                (entry.source, f"class {entry.class_name!r} is not one of the recipe's {len(known)} classes")
            )
        else:
            kept.append(entry)
    return Plan(
        layout=layout,
        mesh_paths=found.mesh_paths,
        sources=sources,
        skipped=found.skipped,
        entries=kept,
        class_names=class_names,
        errors=errors,
        fingerprint=fingerprint_of(root, found.mesh_paths),
    )


def found_counts(plan: Plan) -> dict[str, int]:
    """Counts to compare with a recipe's ``[expected]``: files per split and in total (of the classes
    taken, one per ShapeNet model), and the number of classes."""
    counts = Counter(entry.split for entry in plan.entries)
    counts["total"] = len(plan.entries)
    counts["classes"] = len({e.class_name for e in plan.entries if e.class_name is not None})
    return dict(counts)


def ordered_splits(names) -> list[str]:
    """Split names in the order train, val, test, then the others sorted."""
    rank = {name: index for index, name in enumerate(SPLIT_ORDER)}
    return sorted(set(names), key=lambda s: (rank.get(s, len(rank)), s))


_worker_settings: Settings | None = None


def start_worker(settings: Settings) -> None:
    """Worker process initialiser: keep the settings; die with the parent (Linux) so no worker is orphaned."""
    global _worker_settings
    _worker_settings = settings
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def worker_voxelize(source: str) -> Outcome:
    """Entry point of a pool task."""
    assert _worker_settings is not None
    return voxelize_source(_worker_settings, source)


def run_isolated(settings: Settings, source: str) -> Outcome:
    """Voxelize one file in a fresh process, so a crash (segfault, out of memory) is its error."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    try:
        with ProcessPoolExecutor(1, initializer=start_worker, initargs=(settings,)) as pool:
            return pool.submit(worker_voxelize, source).result()
    except BrokenProcessPool:
        return Outcome(source, reason="the worker process died reading this file (a crash in a parser?)")


def outcomes_in_order(settings: Settings, sources: list[str], workers: int) -> Iterator[Outcome]:
    """Voxelize ``sources`` and yield their outcomes in the same order, whatever ``workers`` is.

    workers=1 runs in this process. Otherwise a process pool works in chunks; when a worker dies the
    pool is rebuilt, the chunk it was on is redone one file per process, and the rest goes on.
    """
    if workers <= 1:
        for source in sources:
            yield voxelize_source(settings, source)
        return
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    position = 0
    while position < len(sources):
        pending = sources[position:]
        chunk = max(1, min(16, len(pending) // (workers * 8)))
        try:
            with ProcessPoolExecutor(workers, initializer=start_worker, initargs=(settings,)) as pool:
                for outcome in pool.map(worker_voxelize, pending, chunksize=chunk):
                    position += 1
                    yield outcome
        except BrokenProcessPool:
            for source in sources[position : position + chunk]:
                position += 1
                yield run_isolated(settings, source)


@dataclass
class SplitWriter:
    """Collects one split's samples and writes a shard each ``shard_size`` samples."""

    folder: Path
    header: shards.ShardHeader
    shard_size: int
    entries: list[dict] = field(default_factory=list)  # finished shards' manifest entries
    progress: list[int] = field(default_factory=list)  # files of the split covered after each shard
    files_done: int = 0
    packed: list[np.ndarray] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    matrices: list[np.ndarray] = field(default_factory=list)

    def add(self, outcome: Outcome, label: int) -> bool:
        """Count one file of the split; keep its sample; return True when a shard was written."""
        self.files_done += 1
        if outcome.packed is None:
            return False
        self.packed.append(outcome.packed)
        self.labels.append(label)
        self.sources.append(outcome.source)
        self.matrices.append(outcome.mesh_to_grid)
        if len(self.packed) >= self.shard_size:
            self.flush()
            return True
        return False

    def flush(self) -> None:
        """Write the buffered samples (if any) as the next shard."""
        if not self.packed:
            if self.progress:
                self.progress[-1] = self.files_done  # trailing errors belong to the last shard
            return
        path = self.folder / shards.shard_name(self.header.split, len(self.entries))
        entry = shards.write_shard(
            path,
            self.header,
            np.stack(self.packed),
            np.asarray(self.labels),
            self.sources,
            np.stack(self.matrices),
        )
        self.entries.append(entry)
        self.progress.append(self.files_done)
        self.packed, self.labels, self.sources, self.matrices = [], [], [], []

    @property
    def count(self) -> int:
        """Samples in the finished shards."""
        return sum(entry["count"] for entry in self.entries)


def build_manifest(
    config: VoxelizeConfig,
    plan: Plan,
    writers: dict[str, SplitWriter],
    errors: list[tuple[str, str]],
    *,
    complete: bool,
    seconds: float,
) -> dict:
    """The manifest as DESIGN.md specifies it, plus ``complete``, ``progress``, ``inputs`` and ``seconds``."""
    recipe = {"name": config.recipe, "text": config.recipe_text} if config.recipe else None
    return {
        "schema_version": shards.SCHEMA_VERSION,
        "complete": complete,
        "resolution": config.resolution,
        "mode": config.mode,
        "layout": plan.layout,
        "recipe": recipe,
        "classes": list(plan.class_names),
        "splits": {
            split: {"count": writer.count, "shards": list(writer.entries)}
            for split, writer in writers.items()
        },
        "errors": [{"source": source, "reason": reason} for source, reason in sorted(errors)],
        "skipped": plan.skipped,
        "up_axes": up_axes_of(config, plan),
        "config": config_record(config),
        "inputs": {"mesh_files": len(plan.mesh_paths), "sha256": plan.fingerprint},
        "progress": {split: list(writer.progress) for split, writer in writers.items()},
        "seconds": round(seconds, 3),
        "voxgan_version": __version__,
    }


def up_axes_of(config: VoxelizeConfig, plan: Plan) -> dict[str, str]:
    """The up axis each input format was read with (the manifest's ``up_axes``): ``{".obj": "z"}``."""
    return assumed_up_axes((Path(source).suffix.lower() for source in plan.mesh_paths), config.up_axis)


def is_run_file(name: str) -> bool:
    """True for the files a run writes: the manifest, shards, the preview and their temporaries."""
    return (
        name in (shards.MANIFEST, PREVIEW)
        or shards.SHARD_PATTERN.match(name) is not None
        or (name.startswith(".") and name.endswith(".tmp"))
    )


def clear_run_files(folder: Path, keep: set[str] = frozenset()) -> None:
    """Remove a run's files from ``folder`` except ``keep``; other files are left alone."""
    for path in folder.iterdir():
        if path.is_file() and is_run_file(path.name) and path.name not in keep:
            path.unlink()


def config_differences(old: dict, new: dict) -> list[str]:
    """Options whose values differ between a previous run's config and this one (ignoring workers)."""
    keys = sorted((set(old) | set(new)) - set(RESUME_IGNORES))
    return [key for key in keys if old.get(key) != new.get(key)]


def resume_writers(config: VoxelizeConfig, plan: Plan, headers: dict[str, shards.ShardHeader]) -> dict:
    """Open OUTPUT_DIR: clear it (``overwrite``), or keep the finished shards of a previous identical run.

    Returns one :class:`SplitWriter` per split, holding the shards kept and the files they cover.
    """
    folder = config.output_dir
    folder.mkdir(parents=True, exist_ok=True)
    writers = {
        split: SplitWriter(folder=folder, header=header, shard_size=config.shard_size)
        for split, header in headers.items()
    }
    if config.overwrite:
        clear_run_files(folder)
        return writers
    if not (folder / shards.MANIFEST).is_file():
        leftovers = sorted(p.name for p in folder.iterdir() if shards.SHARD_PATTERN.match(p.name))
        if leftovers:
            raise VoxganError(
                f"{folder} holds shards ({leftovers[0]}, ...) but no manifest.json; --overwrite replaces them"
            )
        clear_run_files(folder)
        return writers
    manifest = shards.read_manifest(folder)
    changed = config_differences(manifest.get("config", {}), config_record(config))
    if manifest.get("inputs", {}).get("sha256") != plan.fingerprint:
        changed.append("the mesh files found")
    if changed:
        raise VoxganError(
            f"{folder} holds a run made with other options ({', '.join(changed)}); "
            "use --overwrite to replace it, or choose another OUTPUT_DIR"
        )
    keep = set()
    for split, writer in writers.items():
        old = manifest.get("splits", {}).get(split, {}).get("shards", [])
        progress = manifest.get("progress", {}).get(split, [])
        for entry, files_done in zip(old, progress, strict=False):
            path = folder / entry["file"]
            if not path.is_file() or shards.file_sha256(path) != entry["sha256"]:
                break
            writer.entries.append(entry)
            writer.progress.append(files_done)
            writer.files_done = files_done
            keep.add(entry["file"])
    clear_run_files(folder, keep | {shards.MANIFEST})
    return writers


def run_voxelize(
    config: VoxelizeConfig,
    *,
    report: Callable[[str], None] | None = None,
    progress: bool = True,
) -> dict:
    """Voxelize every mesh file under ``config.input_dir`` into shards in ``config.output_dir``.

    report : receives one-line notes (the layout used, resume, count warnings); progress : show a tqdm
    bar on stderr. Returns the final manifest. Raises VoxganError when no mesh file is found or when
    no sample could be written.

    Example
    -------
    >>> run_voxelize(make_config("data/meshes/shapes", "shards", resolution=16))  # doctest: +SKIP
    """
    started = time.perf_counter()
    report = report or (lambda line: None)
    check_config(config)
    plan = plan_run(config)
    detected = " (detected)" if config.layout == "auto" else ""
    skipped_total = sum(plan.skipped.values())
    if not plan.mesh_paths:
        extensions = ", ".join(sorted(mesh_extensions()))
        raise VoxganError(
            f"{config.input_dir}: no mesh file found ({extensions}; {skipped_total} other files skipped)"
        )
    mesh_count = len(plan.mesh_paths)
    found = f"{mesh_count} mesh files"
    if len(plan.sources) != mesh_count:
        found += f" ({len(plan.sources)} volumes and meshes)"
    report(f"layout {plan.layout}{detected}: {found}, {skipped_total} other files skipped")
    report(up_axis_line(up_axes_of(config, plan)))
    if config.expected:
        mismatches = count_mismatches(config.expected, found_counts(plan))
        if mismatches:
            report(
                f"warning: this copy differs from a complete {config.recipe or 'dataset'} "
                f"({'; '.join(mismatches)}): an incomplete download?"
            )

    splits = ordered_splits(entry.split for entry in plan.entries)
    headers = {
        split: shards.ShardHeader(
            resolution=config.resolution,
            mode=config.mode,
            split=split,
            class_names=plan.class_names,
            recipe=config.recipe,
            up_axis="z",
        )
        for split in splits
    }
    writers = resume_writers(config, plan, headers)
    resumed = sum(len(w.entries) for w in writers.values())
    if resumed:
        report(f"resuming: {resumed} finished shards kept")

    position_in_split: dict[str, int] = Counter()
    jobs: list[tuple[layouts.MeshEntry, int]] = []
    done_errors: list[tuple[str, str]] = []
    for entry in plan.entries:
        position = position_in_split[entry.split]
        position_in_split[entry.split] += 1
        if position >= writers[entry.split].files_done:
            jobs.append((entry, position))
    if resumed and not jobs:
        report(f"nothing left to do: {config.output_dir} already holds this run")
    previous = shards.read_manifest(config.output_dir) if resumed else {}
    pending_sources = {entry.source for entry, _ in jobs}
    entry_sources = {entry.source for entry in plan.entries}
    for error in previous.get("errors", []):
        if error["source"] in entry_sources and error["source"] not in pending_sources:
            done_errors.append((error["source"], error["reason"]))
    errors = list(plan.errors) + done_errors

    def save(complete: bool) -> None:
        manifest = build_manifest(
            config, plan, writers, errors, complete=complete, seconds=time.perf_counter() - started
        )
        shards.write_json_atomic(config.output_dir / shards.MANIFEST, manifest)

    save(complete=False)
    settings = Settings(
        root=str(config.input_dir.resolve()),
        resolution=config.resolution,
        mode=config.mode,
        padding=config.padding,
        up_axis=config.up_axis,
        max_faces=config.max_faces,
        grid_coords=config.grid_coords,
        mat_key=config.mat_key,
    )
    labels = {entry.source: layouts.label_of(entry, plan.class_names) for entry, _ in jobs}
    split_of = {entry.source: entry.split for entry, _ in jobs}
    from tqdm import tqdm

    bar = tqdm(
        total=len(jobs), unit="mesh", file=sys.stderr, disable=not progress or not jobs, mininterval=0.5
    )
    try:
        for outcome in outcomes_in_order(settings, [e.source for e, _ in jobs], config.workers):
            if outcome.reason is not None:
                errors.append((outcome.source, outcome.reason))
                bar.set_postfix(errors=len(errors), refresh=False)
            if writers[split_of[outcome.source]].add(outcome, labels[outcome.source]):
                save(complete=False)
            bar.update(1)
    finally:
        bar.close()
    for writer in writers.values():
        writer.flush()
    manifest = build_manifest(
        config, plan, writers, errors, complete=True, seconds=time.perf_counter() - started
    )
    samples = sum(writer.count for writer in writers.values())
    assert samples + len(errors) == len(plan.sources), (samples, len(errors), len(plan.sources))
    shards.write_json_atomic(config.output_dir / shards.MANIFEST, manifest)
    if samples == 0:
        first = errors[0] if errors else ("", "no file")
        raise VoxganError(
            f"no sample written: all {len(plan.sources)} inputs failed ({first[0]}: {first[1]}); "
            f"see {config.output_dir / shards.MANIFEST}"
        )
    write_preview(config.output_dir, manifest)
    return manifest
