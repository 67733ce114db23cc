"""The options of a ``voxgan voxelize`` run: :class:`VoxelizeConfig`, built by :func:`make_config` (defaults,
then a recipe, then the options given) and checked once by :func:`check_config`, which raises a
:class:`ConfigError` naming the option (the CLI turns it into a usage error)."""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from voxgan.axes import UP_AXES
from voxgan.errors import ConfigError
from voxgan.ingest import layouts
from voxgan.ingest.plan import parse_part
from voxgan.ingest.recipes import Recipe
from voxgan.shards import MODES

__all__ = ["ConfigError", "VoxelizeConfig", "check_config", "config_record", "make_config"]

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
