"""OUTPUT_DIR's bookkeeping: its ``plan.json`` written or checked (:func:`open_folder`), the manifest built
from the finished units' records (:func:`build_manifest`), and a run's files told apart from the others
and cleared (:func:`clear_run_files`)."""

from __future__ import annotations

from pathlib import Path

from voxgan import __version__, shards
from voxgan.errors import ConfigError, VoxganError
from voxgan.ingest.config import VoxelizeConfig, config_record
from voxgan.ingest.frame import assumed_up_axes
from voxgan.ingest.info import INFO_PAGE, PREVIEW
from voxgan.ingest.inputs import Inputs
from voxgan.ingest.plan import PLAN, Unit, claim, difference
from voxgan.ingest.units import UNITS


def build_manifest(
    config: VoxelizeConfig,
    inputs: Inputs,
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
    errors = list(inputs.errors)
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
        "layout": inputs.layout,
        "recipe": recipe,
        "classes": list(inputs.class_names),
        "splits": splits,
        "errors": [{"source": source, "reason": reason} for source, reason in sorted(errors)],
        "skipped": inputs.skipped,
        "up_axes": up_axes_of(config, inputs),
        "config": config_record(config),
        "inputs": {"mesh_files": len(inputs.mesh_paths), "sha256": inputs.fingerprint},
        "seconds": round(seconds, 3),
        "voxgan_version": __version__,
    }


def up_axes_of(config: VoxelizeConfig, inputs: Inputs) -> dict[str, str]:
    """The up axis each input format was read with (the manifest's ``up_axes``): ``{".obj": "z"}``."""
    return assumed_up_axes((Path(source).suffix.lower() for source in inputs.mesh_paths), config.up_axis)


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
    plan = claim(folder, wanted)
    differs = difference(plan, wanted)
    if differs is not None:
        option, words = differs
        message = f"{folder}: {words}; use --overwrite to start afresh, or choose another OUTPUT_DIR"
        raise ConfigError(option, message) if option else VoxganError(message)
    return plan, shards.file_sha256(folder / PLAN)
