"""Doing one work unit: its files' outcomes -> its shard and its record. Every engine takes this path.

An engine turns a unit's files into outcomes (:mod:`voxgan.ingest.sample`, one file each): the process
pool file by file, a Ray task with :func:`voxelize_unit`. :func:`unit_result` gathers them and
:func:`commit` writes the unit's shard (when a file gave a sample) and then its record
``units/{split}-{index:05d}.json``, which says the unit is done and holds its errors. A unit whose
record is missing, names another plan, or whose shard's sha256 differs from the record is done again,
so a process killed at any moment leaves nothing that a later run trusts by mistake.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voxgan import shards
from voxgan.atomic import write_json_atomic
from voxgan.ingest.plan import Unit
from voxgan.ingest.sample import Outcome, Settings, voxelize_source

UNITS = "units"  # the records' folder inside the output folder


@dataclass
class UnitResult:
    """A unit's samples (``packed`` rows (R³/8,) uint8, ``labels``, ``sources``, ``matrices`` (4, 4))
    and its files' ``errors`` as (source, reason)."""

    unit: Unit
    packed: list[np.ndarray] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    matrices: list[np.ndarray] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)


def unit_result(unit: Unit, outcomes: Iterable[Outcome]) -> UnitResult:
    """Gather the outcomes of ``unit``'s files, given in the unit's order."""
    result = UnitResult(unit)
    for source, label, outcome in zip(unit.sources, unit.labels, outcomes, strict=True):
        assert outcome.source == source, (outcome.source, source)
        if outcome.packed is None:
            result.errors.append((source, str(outcome.reason)))
            continue
        result.packed.append(outcome.packed)
        result.labels.append(label)
        result.sources.append(source)
        result.matrices.append(outcome.mesh_to_grid)
    return result


def voxelize_unit(settings: Settings, unit: Unit) -> UnitResult:
    """Do ``unit`` in this process, one file after the other (what a Ray task runs)."""
    return unit_result(unit, (voxelize_source(settings, source) for source in unit.sources))


def record_path(folder: Path, unit: Unit) -> Path:
    """Where ``unit``'s record lives: ``folder/units/{split}-{index:05d}.json``."""
    return Path(folder) / UNITS / f"{unit.name}.json"


def commit(folder: Path, header: shards.ShardHeader, result: UnitResult, plan_sha256: str) -> dict:
    """Write the unit's shard (when it has a sample), then its record; return the record.

    The record is ``{"plan": sha256 of plan.json, "shard": the manifest entry or None, "errors":
    [[source, reason], ...]}``; both files are written atomically, the record last.
    """
    unit = result.unit
    entry = None
    if result.sources:
        entry = shards.write_shard(
            Path(folder) / shards.shard_name(unit.split, unit.index),
            header,
            np.stack(result.packed),
            np.asarray(result.labels),
            result.sources,
            np.stack(result.matrices),
        )
    record = {"plan": plan_sha256, "shard": entry, "errors": [list(error) for error in result.errors]}
    path = record_path(folder, unit)
    path.parent.mkdir(exist_ok=True)
    write_json_atomic(path, record)
    return record


def record_fits(record: dict, unit: Unit) -> bool:
    """True when a unit record has the form :func:`commit` writes for ``unit``: its own shard's name and a
    count that, with its errors (each ``[source, reason]`` of the unit's sources), covers the unit."""
    errors, entry = record.get("errors"), record.get("shard")
    if not isinstance(errors, list) or not all(
        isinstance(e, list) and len(e) == 2 and e[0] in unit.sources and isinstance(e[1], str) for e in errors
    ):
        return False
    if entry is None:
        return len(errors) == len(unit.sources) or not unit.sources
    return (
        isinstance(entry, dict)
        and entry.get("file") == shards.shard_name(unit.split, unit.index)
        and isinstance(entry.get("count"), int)
        and not isinstance(entry.get("count"), bool)
        and isinstance(entry.get("sha256"), str)
        and entry["count"] + len(errors) == len(unit.sources)
    )


def done_records(folder: Path, units: list[Unit], plan_sha256: str) -> dict[str, dict]:
    """The records of the units already done for this plan (their shard whole), by unit name."""
    done = {}
    for unit in units:
        try:
            record = json.loads(record_path(folder, unit).read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(record, dict) or record.get("plan") != plan_sha256 or not record_fits(record, unit):
            continue  # a damaged record: the unit is done again
        entry = record.get("shard")
        if entry is not None:
            shard = Path(folder) / entry["file"]
            if not shard.is_file() or shards.file_sha256(shard) != entry["sha256"]:
                continue
        done[unit.name] = record
    return done
