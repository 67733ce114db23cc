"""Fixed work units and the plan file: a voxelize run's output does not depend on who did which unit.

The voxelized files of each split, in the order of the sorted input list, are cut into units of
``shard_size`` files. Unit ``i`` of a split becomes shard ``{split}-{i:05d}.h5`` (no file when none of
its files gives a sample; a stack file gives one sample per volume, so a unit may hold more samples
than files); :mod:`voxgan.ingest.units` does one unit. Any process may do any unit: the
process pool of one machine, ``--part K/N`` on many machines, or Ray tasks.

``plan.json`` in the output folder records the input list (each mesh file's path, size, split and
label), the unit boundaries and the options that change the output. The first run writes it; every
later run, a part or the completion run, must find the same plan or stops.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path

from voxgan import __version__, shards
from voxgan.atomic import write_once
from voxgan.errors import VoxganError

PLAN = "plan.json"
# Options that never change the output, so a later run or another part may choose them freely. The
# folders' paths may differ between machines; the split file acts through the files' splits, recorded;
# ``expected`` (a complete dataset's counts) only warns.
RUN_ONLY = ("workers", "overwrite", "part", "engine", "ray_address")
RUN_ONLY += ("input_dir", "output_dir", "split_file", "expected")


@dataclass(frozen=True)
class Unit:
    """One work unit: its files' sources (relative paths; a stack's volumes as ``file.npy#7``) and their
    ``labels``; shard ``index`` of ``split``."""

    split: str
    index: int
    sources: tuple[str, ...]
    labels: tuple[int, ...]

    @property
    def name(self) -> str:
        """``{split}-{index:05d}``: the stem of the unit's shard and of its record."""
        return f"{self.split}-{self.index:05d}"


def boundaries(count: int, size: int) -> list[int]:
    """Unit boundaries over ``count`` files in units of ``size``: [0, size, 2 size, ..., count]."""
    return [*range(0, count, size), count]


def make_plan(
    options: dict, layout: str, classes, files: list[list], splits: list[str], shard_size: int
) -> dict:
    """The plan of a run (what ``plan.json`` holds).

    options : the options that change the output; files : one ``[source, size, split, label]`` row per
    mesh file found, sorted by source (split and label None for a file refused before voxelizing); a
    stack of volumes has ``[source, size, split, label, [volume indices]]`` instead, one row per split
    its volumes fall in; splits : the split names in unit order. A unit counts rows (files), so it may
    hold more samples than files.
    """
    counts = {split: sum(row[2] == split for row in files) for split in splits}
    return {
        "schema_version": shards.SCHEMA_VERSION,
        "voxgan_version": __version__,
        "options": {key: value for key, value in options.items() if key not in RUN_ONLY},
        "layout": layout,
        "classes": list(classes),
        "units": {split: boundaries(counts[split], shard_size) for split in splits},
        "files": files,
    }


def units_of(plan: dict) -> list[Unit]:
    """The plan's units in order: each split's (in the plan's order), by index."""
    per_split: dict[str, list] = {}
    for row in plan["files"]:
        file, _size, split, label = row[:4]
        if split is not None:
            sources = (file,) if len(row) == 4 else tuple(f"{file}#{index}" for index in row[4])
            per_split.setdefault(split, []).append((sources, label))
    units = []
    for split, cuts in plan["units"].items():
        for index, (start, stop) in enumerate(itertools.pairwise(cuts)):
            chunk = per_split[split][start:stop]
            sources = tuple(source for group, _ in chunk for source in group)
            labels = tuple(label for group, label in chunk for _ in group)
            units.append(Unit(split, index, sources, labels))
    return units


def plan_text(plan: dict) -> str:
    """``plan`` as JSON text with one line per input file (readable, and diff-able between runs)."""
    head = json.dumps({key: value for key, value in plan.items() if key != "files"}, indent=2)
    rows = ",\n".join("    " + json.dumps(row) for row in plan["files"])
    return f'{head[:-2]},\n  "files": [\n{rows}\n  ]\n}}\n'


def read_plan(folder: Path) -> dict:
    """Read ``folder/plan.json``; VoxganError when it cannot be read."""
    path = Path(folder) / PLAN
    try:
        plan = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as error:
        text = " ".join(str(error).split())[:200]
        raise VoxganError(f"{path}: unreadable plan ({text}); use --overwrite to start afresh") from None
    files = plan.get("files") if isinstance(plan, dict) else None
    if (
        not isinstance(files, list)
        or not isinstance(plan.get("options"), dict)
        or not all(isinstance(row, list) and len(row) >= 2 and isinstance(row[0], str) for row in files)
    ):
        raise VoxganError(
            f"{path}: a damaged plan (no options or files list); use --overwrite to start afresh"
        )
    return plan


def claim(folder: Path, plan: dict) -> dict:
    """Write ``plan`` as ``folder/plan.json`` unless the folder has a plan; return the folder's plan.

    Of several processes starting at once exactly one writes it (see :func:`voxgan.atomic.write_once`).
    """
    if write_once(Path(folder) / PLAN, plan_text(plan).encode()):
        return plan
    return read_plan(folder)


def input_changes(old: list[list], new: list[list]) -> str:
    """Which input files were added, removed or resized between two plans' file lists, in words."""
    before = {row[0]: row[1] for row in old}
    after = {row[0]: row[1] for row in new}
    changes = {
        "added": sorted(after.keys() - before.keys()),
        "removed": sorted(before.keys() - after.keys()),
        "changed size": sorted(s for s in before.keys() & after.keys() if before[s] != after[s]),
    }
    said = [f"{len(found)} {what} (first: {found[0]})" for what, found in changes.items() if found]
    if not said:
        return "the input files now get other splits or classes (another --split-file or recipe?)"
    return "the input files changed since plan.json was written: " + ", ".join(said)


def difference(old: dict, new: dict) -> tuple[str | None, str] | None:
    """How ``new`` differs from a folder's plan ``old``, first difference only; None when they agree.

    Returns (the option to blame as ``--name``, or None when the input or the voxgan version
    changed; the difference in words).
    """
    if (old.get("schema_version"), old.get("voxgan_version")) != (
        new["schema_version"],
        new["voxgan_version"],
    ):
        return None, f"plan.json was written by voxgan {old.get('voxgan_version')}, this is {__version__}"
    before, after = old.get("options", {}), new["options"]
    changed = sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))
    if changed:
        said = ", ".join(f"{key} {before.get(key)!r}, now {after.get(key)!r}" for key in changed)
        return "--" + changed[0].replace("_", "-"), f"it was planned with other options ({said})"
    if old.get("files") != new["files"]:
        return None, input_changes(old.get("files", []), new["files"])
    if old != new:
        return None, "the plan's layout, classes or units differ (another recipe?)"
    return None


def parse_part(text: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N), part K (0-based) of N; ValueError with a one-line reason otherwise."""
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if match is None:
        raise ValueError(f"part {text!r} is not K/N (part K of N, counted from 0: 0/4 1/4 2/4 3/4)")
    k, n = int(match[1]), int(match[2])
    if n < 1 or k >= n:
        raise ValueError(f"part {text!r}: K counts from 0 to N-1 and N is at least 1 (0/4 1/4 2/4 3/4)")
    return k, n


def units_of_part(units: list[Unit], k: int, n: int) -> list[Unit]:
    """The units part ``k`` of ``n`` does: every n-th from the k-th, so each part gets every split alike."""
    return units[k::n]
