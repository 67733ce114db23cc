"""Mesh folder -> voxel shards: the resumable, parallel run behind ``voxgan voxelize``.

A run: find the mesh files (:mod:`voxgan.ingest.layouts`), give each a class and split, cut each split's
files into fixed work units (:mod:`voxgan.ingest.plan`, recorded in ``plan.json``), do the units not
done yet (:mod:`voxgan.ingest.units`: each becomes one shard and one record) on a process pool or on Ray,
and write ``manifest.json``. ``--part K/N`` does part K of the units only and writes no manifest, so N
machines can share a folder; the same command without ``--part`` then does whatever is missing. Who did
which unit never changes the output, and a run killed at any moment resumes where it stopped. Every mesh
file found ends as a sample or as an entry in the manifest's ``errors``.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib.util
import itertools
import math
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from voxgan import __version__, shards
from voxgan.axes import UP_AXES
from voxgan.errors import ConfigError, VoxganError, out_of_space
from voxgan.ingest import layouts
from voxgan.ingest.formats import MESH_EXTENSIONS, VOXEL_EXTENSIONS, volume_sources
from voxgan.ingest.formats.volumes import split_source
from voxgan.ingest.frame import assumed_up_axes, up_axis_line
from voxgan.ingest.info import INFO_PAGE, PREVIEW, write_preview
from voxgan.ingest.kernels import compiled_kernels
from voxgan.ingest.plan import PLAN, Unit, claim, difference, make_plan, parse_part, units_of, units_of_part
from voxgan.ingest.recipes import Recipe, count_mismatches, shapenet_class_map
from voxgan.ingest.sample import Outcome, Settings, voxelize_source
from voxgan.ingest.units import UNITS, UnitResult, commit, done_records, unit_result

MODES = ("solid", "surface")
SPLIT_ORDER = ("train", "val", "test")
DEFAULT_SHARD_SIZE = 1024  # 16³: 512 KiB packed per shard; ModelNet40 train gives 10 shards
DEFAULT_MAX_FACES = 2_000_000
ENGINES = ("pool", "ray")


def default_workers() -> int:
    """One worker process per core this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


@dataclass
class VoxelizeConfig:
    """Every option of a ``voxgan voxelize`` run (recorded in the manifest's ``config``).

    ``shard_size`` files per work unit, so at most that many samples per shard file, a stack file's
    volumes apart (1024 by default: 512 KiB packed at 16³, 32 MiB at 64³, and ModelNet40 gives 10 train
    shards, enough for ranks x loader workers to share). ``test_fraction`` is the share of files put in
    ``test`` by path hash (folder, flat, shapenet without ``split_file``).
    ``grid_coords`` takes mesh coordinates as grid coordinates (no normalisation: only the up axis turned
    to +z and the coordinates divided by ``scale``, file units per voxel, as ``voxgan export`` wrote them).
    ``class_names`` fixes the label order; ``class_map`` renames raw classes (folder names, synset ids).
    ``expected`` holds a complete copy's counts (train, test, total, classes) to warn about. ``mat_key``
    names the array read from .mat and .npz files (default: ``instance``, else the only volume-shaped one).
    ``part`` (``"K/N"``) does part K of N of the work units only; ``engine`` is ``pool`` (``workers``
    processes) or ``ray`` (at ``ray_address``, or a local Ray instance of ``workers`` CPUs).
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
    scale: float = 1.0
    mat_key: str | None = None
    recipe: str = ""
    recipe_text: str = ""
    expected: dict[str, int] = field(default_factory=dict)
    part: str | None = None
    engine: str = "pool"
    ray_address: str | None = None


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
    if not (isinstance(config.scale, int | float) and math.isfinite(config.scale) and config.scale > 0):
        raise ConfigError("--scale", f"scale {config.scale} must be a positive number of units per voxel")
    if config.scale != 1 and not config.grid_coords:
        raise ConfigError(
            "--scale", "--scale applies with --grid-coords only (without it each shape is fitted to the grid)"
        )
    if not config.input_dir.is_dir():
        raise ConfigError("INPUT_DIR", f"input folder {config.input_dir} does not exist or is not a folder")
    if config.split_file is not None and not Path(config.split_file).is_file():
        raise ConfigError("--split-file", f"split file {config.split_file} does not exist")
    if config.output_dir.exists() and not config.output_dir.is_dir():
        raise ConfigError("OUTPUT_DIR", f"output {config.output_dir} exists and is not a folder")
    check_run_options(config)


def check_run_options(config: VoxelizeConfig) -> None:
    """Raise :class:`ConfigError` for a bad ``--part``, ``--engine`` or ``--ray-address``."""
    if config.part is not None:
        try:
            parse_part(config.part)
        except ValueError as error:
            raise ConfigError("--part", str(error)) from None
        if config.overwrite:
            raise ConfigError(
                "--part", "--overwrite would delete the other parts' work; empty OUTPUT_DIR first"
            )
    if config.engine not in ENGINES:
        raise ConfigError("--engine", f"engine {config.engine!r} is not one of {', '.join(ENGINES)}")
    if config.engine == "ray":
        if importlib.util.find_spec("ray") is None:
            raise ConfigError("--engine", "Ray is not installed: pip install 'voxgan[ray]'")
        if config.part is not None:
            raise ConfigError("--part", "--engine ray does every unit itself; leave out --part")
    elif config.ray_address is not None:
        raise ConfigError("--ray-address", "--ray-address needs --engine ray")


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
    """What a run will do: the layout, every input file (and its size), every source to account for (a
    file, or one volume of a stack, ``file.npy#7``), each kept source's entry, the errors known upfront."""

    layout: str
    mesh_paths: list[str]
    sizes: list[int]
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


def fingerprint_of(mesh_paths: list[str], sizes: list[int]) -> str:
    """sha256 over the mesh files' relative paths and sizes (the manifest's ``inputs``)."""
    digest = hashlib.sha256()
    for source, size in zip(mesh_paths, sizes, strict=True):
        digest.update(f"{source}\0{size}\n".encode())
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
    sizes = [(root / source).stat().st_size for source in found.mesh_paths]
    return Plan(
        layout=layout,
        mesh_paths=found.mesh_paths,
        sizes=sizes,
        sources=sources,
        skipped=found.skipped,
        entries=kept,
        class_names=class_names,
        errors=errors,
        fingerprint=fingerprint_of(found.mesh_paths, sizes),
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


def pool_results(
    settings: Settings, todo: list[Unit], workers: int, tick: Callable[[int], object]
) -> Iterator[UnitResult]:
    """Do the units ``todo`` file by file on ``workers`` processes; yield their results in unit order.

    tick : called with 1 after each file (a progress bar's ``update``).
    """
    outcomes = outcomes_in_order(settings, [source for unit in todo for source in unit.sources], workers)
    counted = ticking(outcomes, tick)
    for unit in todo:
        yield unit_result(unit, itertools.islice(counted, len(unit.sources)))


def ticking(items: Iterator, tick: Callable[[int], object]) -> Iterator:
    """Yield ``items``, calling ``tick(1)`` for each."""
    for item in items:
        tick(1)
        yield item


def unit_results(
    config: VoxelizeConfig, settings: Settings, todo: list[Unit], tick: Callable[[int], object]
) -> Iterator[UnitResult]:
    """The results of the units ``todo`` in unit order, from the engine ``config`` names."""
    if config.engine == "ray":
        from voxgan.ingest.ray_engine import ray_results

        return ray_results(settings, todo, address=config.ray_address, cpus=config.workers, tick=tick)
    return pool_results(settings, todo, config.workers, tick)


def build_manifest(
    config: VoxelizeConfig,
    found: Plan,
    all_units: list[Unit],
    records: dict[str, dict],
    *,
    complete: bool,
    seconds: float,
) -> dict:
    """The manifest as DESIGN.md specifies it, plus ``complete``, ``inputs`` and ``seconds``.

    records : the records of the units done (by unit name); their shards are listed in unit order.
    """
    recipe = {"name": config.recipe, "text": config.recipe_text} if config.recipe else None
    splits: dict[str, dict] = {}
    errors = list(found.errors)
    for unit in all_units:
        info = splits.setdefault(unit.split, {"count": 0, "shards": []})
        record = records.get(unit.name)
        if record is None:
            continue
        errors += [(source, reason) for source, reason in record["errors"]]
        if record["shard"] is not None:
            info["count"] += record["shard"]["count"]
            info["shards"].append(record["shard"])
    return {
        "schema_version": shards.SCHEMA_VERSION,
        "complete": complete,
        "resolution": config.resolution,
        "mode": config.mode,
        "layout": found.layout,
        "recipe": recipe,
        "classes": list(found.class_names),
        "splits": splits,
        "errors": [{"source": source, "reason": reason} for source, reason in sorted(errors)],
        "skipped": found.skipped,
        "up_axes": up_axes_of(config, found),
        "config": config_record(config),
        "inputs": {"mesh_files": len(found.mesh_paths), "sha256": found.fingerprint},
        "seconds": round(seconds, 3),
        "voxgan_version": __version__,
    }


def up_axes_of(config: VoxelizeConfig, found: Plan) -> dict[str, str]:
    """The up axis each input format was read with (the manifest's ``up_axes``): ``{".obj": "z"}``."""
    return assumed_up_axes((Path(source).suffix.lower() for source in found.mesh_paths), config.up_axis)


def is_run_file(name: str) -> bool:
    """True for the files a run writes: the manifest, the plan, shards, the preview, ``voxgan info``'s page
    (it would describe the old run) and their temporaries."""
    return (
        name in (shards.MANIFEST, PLAN, PREVIEW, INFO_PAGE)
        or shards.SHARD_PATTERN.match(name) is not None
        or (name.startswith(".") and name.endswith(".tmp"))
    )


def clear_run_files(folder: Path, keep: set[str] = frozenset()) -> None:
    """Remove a run's files from ``folder`` and the files in ``folder/units``, except ``keep`` (names;
    ``units/NAME`` for a record); other files are left alone."""
    for path in folder.iterdir():
        if path.is_file() and is_run_file(path.name) and path.name not in keep:
            path.unlink()
    records = folder / UNITS
    for path in records.iterdir() if records.is_dir() else ():
        if f"{UNITS}/{path.name}" not in keep:
            path.unlink()


def open_folder(config: VoxelizeConfig, wanted: dict) -> tuple[dict, str]:
    """Make OUTPUT_DIR ready for the run planned as ``wanted``: clear it (``overwrite``), then write its
    ``plan.json`` or check the one it holds. Returns (the plan, the sha256 of ``plan.json``).

    Raises :class:`ConfigError` when the folder was planned with other options, VoxganError when its
    input files changed or it holds shards of a run without a plan.
    """
    folder = config.output_dir
    folder.mkdir(parents=True, exist_ok=True)
    if config.overwrite:
        clear_run_files(folder)
    elif not (folder / PLAN).is_file():
        earlier = sorted(p.name for p in folder.iterdir() if p.is_file() and is_run_file(p.name))
        if [name for name in earlier if not name.startswith(".")]:
            raise VoxganError(
                f"{folder} holds {earlier[-1]} from a run without {PLAN} (an older voxgan?); "
                "--overwrite replaces it, or choose another OUTPUT_DIR"
            )
    held = claim(folder, wanted)
    found = difference(held, wanted)
    if found is not None:
        option, words = found
        message = f"{folder}: {words}; use --overwrite to start afresh, or choose another OUTPUT_DIR"
        raise ConfigError(option, message) if option else VoxganError(message)
    return held, shards.file_sha256(folder / PLAN)


def plan_of(config: VoxelizeConfig, found: Plan) -> dict:
    """The work plan of this run (see :func:`voxgan.ingest.plan.make_plan`)."""
    assigned = {e.source: (e.split, layouts.label_of(e, found.class_names)) for e in found.entries}
    volumes_of: dict[str, list[int | None]] = {}
    for source in found.sources:
        file, index = split_source(source)
        volumes_of.setdefault(file, []).append(index)
    files = []
    for file, size in zip(found.mesh_paths, found.sizes, strict=True):
        # One row per file and (split, label) its kept sources get; a stack's row lists its volumes.
        rows: dict[tuple, list[int]] = {}
        for index in volumes_of.get(file, [None]):
            taken = assigned.get(file if index is None else f"{file}#{index}")
            if taken is not None:
                rows.setdefault(taken, []).append(index)
        if not rows:
            files.append([file, size, None, None])
        for (split, label), indices in rows.items():
            row = [file, size, split, label]
            files.append(row if indices == [None] else [*row, indices])
    splits = ordered_splits(entry.split for entry in found.entries)
    return make_plan(config_record(config), found.layout, found.class_names, files, splits, config.shard_size)


def run_voxelize(
    config: VoxelizeConfig,
    *,
    report: Callable[[str], None] | None = None,
    progress: bool = True,
) -> dict | None:
    """Voxelize every mesh file under ``config.input_dir`` into shards in ``config.output_dir``.

    report : receives one-line notes (the layout used, resume, count warnings); progress : show a tqdm
    bar on stderr. Returns the final manifest, or None for a ``config.part`` (which writes none).
    Raises VoxganError when no mesh file is found or when no sample could be written.

    Example
    -------
    >>> run_voxelize(make_config("data/meshes/shapes", "shards", resolution=16))  # doctest: +SKIP

    A full disk ends the run with one VoxganError naming the output folder; every file written before is
    whole (each is written atomically, a shard before its unit's record), so the same command run again
    after space is freed resumes and ends as an uninterrupted run would.
    """
    then = "run the same command again: it keeps the finished units and resumes"
    with out_of_space(config.output_dir, then):
        return _run_voxelize(config, report, progress)


def _run_voxelize(
    config: VoxelizeConfig, report: Callable[[str], None] | None, progress: bool
) -> dict | None:
    started = time.perf_counter()
    report = report or (lambda line: None)
    check_config(config)
    found = plan_run(config)
    detected = " (detected)" if config.layout == "auto" else ""
    skipped_total = sum(found.skipped.values())
    if not found.mesh_paths:
        extensions = ", ".join(sorted(mesh_extensions()))
        raise VoxganError(
            f"{config.input_dir}: no mesh file found ({extensions}; {skipped_total} other files skipped)"
        )
    folder = config.output_dir
    held, plan_sha256 = open_folder(config, plan_of(config, found))
    mesh_count = len(found.mesh_paths)
    counted = f"{mesh_count} mesh files"
    if len(found.sources) != mesh_count:
        counted += f" ({len(found.sources)} volumes and meshes)"
    report(f"layout {found.layout}{detected}: {counted}, {skipped_total} other files skipped")
    report(up_axis_line(up_axes_of(config, found)))
    if config.expected:
        mismatches = count_mismatches(config.expected, found_counts(found))
        if mismatches:
            report(
                f"warning: this copy differs from a complete {config.recipe or 'dataset'} "
                f"({'; '.join(mismatches)}): an incomplete download?"
            )
    all_units = units_of(held)
    part = parse_part(config.part) if config.part is not None else None
    mine = units_of_part(all_units, *part) if part else all_units
    records = done_records(folder, mine, plan_sha256)
    todo = [unit for unit in mine if unit.name not in records]
    if records:
        report(f"resuming: {len(records)} finished units kept")
        if not todo:
            report(f"nothing left to do: {folder} already holds {'this part' if part else 'this run'}")

    def save(complete: bool) -> dict:
        seconds = time.perf_counter() - started
        manifest = build_manifest(config, found, all_units, records, complete=complete, seconds=seconds)
        shards.write_json_atomic(folder / shards.MANIFEST, manifest)
        return manifest

    if part is None:
        save(complete=False)
    settings = Settings(
        root=str(config.input_dir.resolve()),
        resolution=config.resolution,
        mode=config.mode,
        padding=config.padding,
        up_axis=config.up_axis,
        max_faces=config.max_faces,
        grid_coords=config.grid_coords,
        scale=config.scale,
        mat_key=config.mat_key,
    )
    headers = {
        split: shards.ShardHeader(
            resolution=config.resolution,
            mode=config.mode,
            split=split,
            class_names=tuple(held["classes"]),
            recipe=config.recipe,
            up_axis="z",
        )
        for split in held["units"]
    }
    from tqdm import tqdm

    if todo:  # compile (or load) the numba loops once, here: workers inherit them, the bar is not cut
        compiled_kernels()
    files = sum(len(unit.sources) for unit in todo)
    bar = tqdm(total=files, unit="mesh", file=sys.stderr, disable=not progress or not todo, mininterval=0.5)
    errors = 0
    try:
        for result in unit_results(config, settings, todo, bar.update):
            unit = result.unit
            records[unit.name] = commit(folder, headers[unit.split], result, plan_sha256)
            errors += len(result.errors)
            bar.set_postfix(errors=errors, refresh=False)
    finally:
        bar.close()
    if part is not None:
        samples = sum(r["shard"]["count"] for r in records.values() if r["shard"] is not None)
        report(
            f"part {config.part}: its {len(mine)} of the {len(all_units)} units are done ({len(todo)} now, "
            f"{samples} samples in all); when every part has ended, run the same command without --part "
            "to finish and write the manifest"
        )
        return None
    manifest = save(complete=True)
    samples = sum(info["count"] for info in manifest["splits"].values())
    sources = len(found.sources)
    assert samples + len(manifest["errors"]) == sources, (samples, len(manifest["errors"]), sources)
    listed = {entry["file"] for info in manifest["splits"].values() for entry in info["shards"]}
    clear_run_files(folder, listed | {shards.MANIFEST, PLAN} | {f"{UNITS}/{u.name}.json" for u in all_units})
    if samples == 0:
        first = manifest["errors"][0] if manifest["errors"] else {"source": "", "reason": "no file"}
        raise VoxganError(
            f"no sample written: all {len(found.sources)} inputs failed "
            f"({first['source']}: {first['reason']}); "
            f"see {folder / shards.MANIFEST}"
        )
    write_preview(folder, manifest)
    return manifest
