"""Mesh folder -> voxel shards: the resumable, parallel run behind ``voxgan voxelize``.

A run: find the mesh files (:mod:`voxgan.ingest.layouts`), give each a class and split, cut each split's
files into fixed work units (:mod:`voxgan.ingest.plan`, recorded in ``plan.json``), do the units not
done yet (:mod:`voxgan.ingest.units`: each becomes one shard and one record) on a process pool or on Ray,
and write ``manifest.json``. ``--part K/N`` does part K of the units only and writes no manifest, so N
machines can share a folder; the same command without ``--part`` then does whatever is missing. Who did
which unit never changes the output, and a run killed at any moment resumes where it stopped. Every mesh
file found ends as a sample or as an entry in the manifest's ``errors``.

The run's options are :mod:`voxgan.ingest.config`, finding its inputs :mod:`voxgan.ingest.inputs`, the
engines :mod:`voxgan.ingest.pool_engine` and :mod:`voxgan.ingest.ray_engine`, OUTPUT_DIR's bookkeeping
(``plan.json``, the manifest, clearing) :mod:`voxgan.ingest.folder`; this module holds the run's steps.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator

from voxgan import shards
from voxgan.atomic import write_json_atomic
from voxgan.errors import ConfigError, VoxganError, out_of_space
from voxgan.ingest import layouts
from voxgan.ingest.config import VoxelizeConfig, check_config, config_record, make_config
from voxgan.ingest.folder import build_manifest, clear_run_files, open_folder, up_axes_of
from voxgan.ingest.formats import VOXEL_EXTENSIONS, extension_of
from voxgan.ingest.formats.volumes import split_source
from voxgan.ingest.frame import up_axis_line
from voxgan.ingest.info import write_preview
from voxgan.ingest.inputs import Inputs, find_inputs, found_counts, mesh_extensions
from voxgan.ingest.kernels import compiled_kernels
from voxgan.ingest.plan import PLAN, Unit, make_plan, parse_part, units_of, units_of_part
from voxgan.ingest.pool_engine import pool_results
from voxgan.ingest.recipes import count_mismatches
from voxgan.ingest.sample import Settings
from voxgan.ingest.units import UNITS, UnitResult, commit, done_records

__all__ = ["ConfigError", "VoxelizeConfig", "check_config", "make_config", "run_voxelize"]

SPLIT_ORDER = ("train", "val", "test")


def ordered_splits(names) -> list[str]:
    """Split names in the order train, val, test, then the others sorted."""
    rank = {name: index for index, name in enumerate(SPLIT_ORDER)}
    return sorted(set(names), key=lambda s: (rank.get(s, len(rank)), s))


def plan_of(config: VoxelizeConfig, inputs: Inputs) -> dict:
    """The work plan of this run (see :func:`voxgan.ingest.plan.make_plan`)."""
    assigned = {e.source: (e.split, layouts.label_of(e, inputs.class_names)) for e in inputs.entries}
    volumes_of: dict[str, list[int | None]] = {}
    for source in inputs.sources:
        file, index = split_source(source)
        volumes_of.setdefault(file, []).append(index)
    files = []
    for file, size in zip(inputs.mesh_paths, inputs.sizes, strict=True):
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
    splits = ordered_splits(entry.split for entry in inputs.entries)
    record = config_record(config)
    return make_plan(record, inputs.layout, inputs.class_names, files, splits, config.shard_size)


def unit_results(
    config: VoxelizeConfig, settings: Settings, todo: list[Unit], tick: Callable[[int], object]
) -> Iterator[UnitResult]:
    """The results of the units ``todo`` in unit order, from the engine ``config`` names."""
    if config.engine == "ray":
        from voxgan.ingest.ray_engine import ray_results

        return ray_results(settings, todo, address=config.ray_address, cpus=config.workers, tick=tick)
    return pool_results(settings, todo, config.workers, tick)


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
    inputs = find_inputs(config)
    if not inputs.mesh_paths:
        extensions = ", ".join(sorted(mesh_extensions()))
        raise VoxganError(
            f"{config.input_dir}: no mesh file found ({extensions}; "
            f"{sum(inputs.skipped.values())} other files skipped)"
        )
    folder = config.output_dir
    plan, plan_sha256 = open_folder(config, plan_of(config, inputs))
    report_inputs(config, inputs, report)
    all_units = units_of(plan)
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
        manifest = build_manifest(config, inputs, all_units, records, complete=complete, seconds=seconds)
        write_json_atomic(folder / shards.MANIFEST, manifest)
        return manifest

    if part is None:
        save(complete=False)
    do_units(config, plan, plan_sha256, todo, records, progress)
    if part is not None:
        samples = sum(r["shard"]["count"] for r in records.values() if r["shard"] is not None)
        report(
            f"part {config.part}: its {len(mine)} of the {len(all_units)} units are done ({len(todo)} now, "
            f"{samples} samples in all); when every part has ended, run the same command without --part "
            "to finish and write the manifest"
        )
        return None
    return finish(config, inputs, all_units, save(complete=True))


def report_inputs(config: VoxelizeConfig, inputs: Inputs, report: Callable[[str], None]) -> None:
    """Report the layout and the files found, the up axis each format is read with, and how the counts
    differ from a complete copy's (``config.expected``)."""
    detected = " (detected)" if config.layout == "auto" else ""
    mesh_count = len(inputs.mesh_paths)
    counted = f"{mesh_count} mesh files"
    if len(inputs.sources) != mesh_count:
        counted += f" ({len(inputs.sources)} volumes and meshes)"
    report(f"layout {inputs.layout}{detected}: {counted}, {sum(inputs.skipped.values())} other files skipped")
    report(up_axis_line(up_axes_of(config, inputs)))
    if config.expected:
        mismatches = count_mismatches(config.expected, found_counts(inputs))
        if mismatches:
            report(
                f"warning: this copy differs from a complete {config.recipe or 'dataset'} "
                f"({'; '.join(mismatches)}): an incomplete download?"
            )


def settings_of(config: VoxelizeConfig) -> Settings:
    """What a worker needs to voxelize one source (picklable, sent to every worker)."""
    return Settings(
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


def headers_of(config: VoxelizeConfig, plan: dict) -> dict[str, shards.ShardHeader]:
    """The shard header of each split of ``plan``."""
    return {
        split: shards.ShardHeader(
            resolution=config.resolution,
            mode=config.mode,
            split=split,
            class_names=tuple(plan["classes"]),
            recipe=config.recipe,
            up_axis="z",
        )
        for split in plan["units"]
    }


def is_mesh(source: str) -> bool:
    """Whether ``source`` is a mesh file, which needs the numba loops (volumes are only resampled)."""
    return extension_of(source) not in VOXEL_EXTENSIONS


def do_units(
    config: VoxelizeConfig,
    plan: dict,
    plan_sha256: str,
    todo: list[Unit],
    records: dict[str, dict],
    progress: bool,
) -> None:
    """Do the units ``todo`` on the engine ``config`` names, committing each (its shard, then its record,
    added to ``records`` by unit name) in unit order; progress : a tqdm bar on stderr."""
    settings = settings_of(config)
    headers = headers_of(config, plan)
    from tqdm import tqdm

    if any(map(is_mesh, (source for unit in todo for source in unit.sources))):
        compiled_kernels()  # compiled (or loaded) once, here: workers inherit them, the bar is not cut
    files = sum(len(unit.sources) for unit in todo)
    bar = tqdm(total=files, unit="mesh", file=sys.stderr, disable=not progress or not todo, mininterval=0.5)
    errors = 0
    try:
        for result in unit_results(config, settings, todo, bar.update):
            unit = result.unit
            records[unit.name] = commit(config.output_dir, headers[unit.split], result, plan_sha256)
            errors += len(result.errors)
            bar.set_postfix(errors=errors, refresh=False)
    finally:
        bar.close()


def finish(config: VoxelizeConfig, inputs: Inputs, all_units: list[Unit], manifest: dict) -> dict:
    """After the complete manifest is written: check every source is accounted for, clear what the run no
    longer needs, raise VoxganError when no sample was written, else draw the preview. Returns
    ``manifest``."""
    folder = config.output_dir
    samples = sum(info["count"] for info in manifest["splits"].values())
    sources = len(inputs.sources)
    assert samples + len(manifest["errors"]) == sources, (samples, len(manifest["errors"]), sources)
    listed = {entry["file"] for info in manifest["splits"].values() for entry in info["shards"]}
    clear_run_files(folder, listed | {shards.MANIFEST, PLAN} | {f"{UNITS}/{u.name}.json" for u in all_units})
    if samples == 0:
        first = manifest["errors"][0] if manifest["errors"] else {"source": "", "reason": "no file"}
        raise VoxganError(
            f"no sample written: all {len(inputs.sources)} inputs failed "
            f"({first['source']}: {first['reason']}); "
            f"see {folder / shards.MANIFEST}"
        )
    write_preview(folder, manifest)
    return manifest
