"""Dataset layouts: which files under INPUT_DIR are meshes, and each mesh's class and split.

Layouts (paths are relative to INPUT_DIR, ``/``-separated):

- ``modelnet``: ``.../<class>/{train,test}/<file>``; the split comes from the folder (a resolution folder
  between them is passed over: 3D ShapeNets' ``<class>/30/{train,test}/<file>.mat``).
- ``shapenet``: ``.../<synset>/<model>/.../<file>`` where ``<synset>`` is an 8-digit WordNet id (v1:
  ``<synset>/<model>/model.obj``, v2: ``<synset>/<model>/models/model_normalized.obj``). One model per
  model folder: ``models/model_normalized.obj``, else ``model.obj``, else the first mesh file in sorted
  order is taken; every other mesh file of that folder becomes an error entry saying which one was taken.
  The split comes from the official split file when given, else from the hash of the path.
- ``folder``: the class is the first directory under INPUT_DIR; the split comes from the hash of the path.
- ``flat``: no classes (label -1); the split comes from the hash of the path.

Discovery is sorted and deterministic. Hidden files and folders (name starting with ``.``, and
``__MACOSX``) are skipped, and so are files whose extension is not a mesh extension or which no include
pattern matches; skipped files are counted by extension.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from voxgan.errors import VoxganError

LAYOUTS = ("modelnet", "shapenet", "folder", "flat")
MODELNET_SPLITS = ("train", "test")
SYNSET = re.compile(r"^\d{8}$")
SHAPENET_PREFERRED = ("models/model_normalized.obj", "model.obj")
HIDDEN_KEY = "(hidden)"
NO_EXTENSION_KEY = "(none)"


@dataclass(frozen=True)
class MeshEntry:
    """One mesh file to voxelize: its path relative to INPUT_DIR, class name (None: no class) and split."""

    source: str
    class_name: str | None
    split: str


@dataclass
class Discovery:
    """What :func:`find_mesh_files` found: mesh paths (sorted) and skipped-file counts by extension."""

    mesh_paths: list[str]
    skipped: dict[str, int]


def extension_key(name: str) -> str:
    """The key a skipped file is counted under: its lower-case extension with the dot, e.g. ``.mtl``."""
    suffix = PurePosixPath(name).suffix.lower()
    return suffix if suffix else NO_EXTENSION_KEY


def matches_include(source: str, include: tuple[str, ...]) -> bool:
    """True when ``source`` (relative posix path) matches a pattern, matched from the right, any case.

    ``*.obj`` matches every OBJ; ``models/model_normalized.obj`` matches ShapeNet v2's model files.
    """
    if not include:
        return True
    parts = source.lower().split("/")
    for pattern in include:
        pattern_parts = pattern.lower().strip("/").split("/")
        if len(pattern_parts) > len(parts):
            continue
        tail = parts[len(parts) - len(pattern_parts) :]
        if all(fnmatch.fnmatchcase(p, q) for p, q in zip(tail, pattern_parts, strict=True)):
            return True
    return False


def find_mesh_files(
    root: Path,
    extensions: frozenset[str] | set[str] | tuple[str, ...],
    include: tuple[str, ...] = (),
    exclude_dirs: tuple[Path, ...] = (),
) -> Discovery:
    """List the mesh files under ``root`` in sorted order; count the others by extension.

    extensions : lower-case suffixes with the dot (``.obj``); include : patterns (see
    :func:`matches_include`), empty takes every mesh file; exclude_dirs : folders not to enter (the
    output folder when it lies inside the input folder). Symbolic links to folders are not followed.
    """
    root = Path(root)
    wanted = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    excluded = {os.path.realpath(d) for d in exclude_dirs}
    mesh_paths: list[str] = []
    skipped: Counter[str] = Counter()
    for folder, dirs, files in os.walk(root):
        hidden_dirs = [d for d in dirs if d.startswith(".") or d == "__MACOSX"]
        for name in hidden_dirs:
            skipped[HIDDEN_KEY] += sum(len(f) for _, _, f in os.walk(os.path.join(folder, name)))
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in hidden_dirs and os.path.realpath(os.path.join(folder, d)) not in excluded
        )
        relative_folder = Path(folder).relative_to(root).as_posix()
        for name in sorted(files):
            source = name if relative_folder == "." else f"{relative_folder}/{name}"
            if name.startswith("."):
                skipped[HIDDEN_KEY] += 1
            elif extension_key(name) in wanted and matches_include(source, include):
                mesh_paths.append(source)
            else:
                skipped[extension_key(name)] += 1
    mesh_paths.sort()
    return Discovery(mesh_paths=mesh_paths, skipped=dict(sorted(skipped.items())))


def modelnet_parts(source: str) -> tuple[str, str] | None:
    """(class, split) of a ModelNet path ``.../<class>/{train,test}/<file>``, or None when it is not one.

    A folder of digits between class and split is a resolution, as in the 3D ShapeNets volumes
    ``volumetric_data/<class>/30/{train,test}/<file>.mat``: the class is the folder above it.
    """
    parts = source.split("/")
    if len(parts) >= 3 and parts[-2].lower() in MODELNET_SPLITS:
        if len(parts) >= 4 and parts[-3].isdigit():
            return parts[-4], parts[-2].lower()
        return parts[-3], parts[-2].lower()
    return None


def shapenet_parts(source: str) -> tuple[str, str] | None:
    """(synset, model folder path) of a ShapeNet path ``.../<synset>/<model>/.../<file>``, or None."""
    parts = source.split("/")
    for index, part in enumerate(parts[:-2]):
        if SYNSET.match(part):
            return part, "/".join(parts[: index + 2])
    return None


def detect_layout(mesh_paths: list[str]) -> str:
    """Guess the layout of a list of relative mesh paths (see the module docstring).

    ``modelnet`` when every path has a ``train``/``test`` parent folder, ``shapenet`` when every path
    lies in a model folder under a synset folder, ``folder`` when every path lies in a first-level folder
    and there are at least two of them, ``flat`` otherwise.
    """
    if not mesh_paths:
        return "flat"
    if all(modelnet_parts(p) for p in mesh_paths):
        return "modelnet"
    if all(shapenet_parts(p) for p in mesh_paths):
        return "shapenet"
    first_dirs = {p.split("/")[0] for p in mesh_paths if "/" in p}
    if all("/" in p for p in mesh_paths) and len(first_dirs) >= 2:
        return "folder"
    return "flat"


def hash_split(source: str, test_fraction: float) -> str:
    """``test`` for a stable ``test_fraction`` of paths (by the sha256 of the path), else ``train``."""
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    position = int.from_bytes(digest[:8], "big") / 2.0**64
    return "test" if position < test_fraction else "train"


def read_shapenet_split_file(path: Path) -> dict[str, str]:
    """Map model id -> split from ShapeNet's official split CSV (columns ``modelId`` and ``split``)."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise VoxganError(f"{path}: cannot read the split file ({error.strerror})") from None
    if not rows or "modelId" not in rows[0] or "split" not in rows[0]:
        raise VoxganError(
            f"{path}: not a ShapeNet split file (expected CSV columns modelId and split, as in all.csv)"
        )
    return {row["modelId"].strip(): row["split"].strip().lower() for row in rows}


def pick_shapenet_models(mesh_paths: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Keep one mesh file per ShapeNet model folder; return (taken, [(source, reason) for the others])."""
    by_model: dict[str, list[str]] = {}
    for source in mesh_paths:
        parts = shapenet_parts(source)
        if parts is not None:
            by_model.setdefault(parts[1], []).append(source)
    taken, dropped = [], []
    for source in mesh_paths:
        parts = shapenet_parts(source)
        if parts is None:
            taken.append(source)  # assign_entries reports it as not fitting the layout
            continue
        candidates = by_model[parts[1]]
        choice = preferred_model_file(parts[1], candidates)
        if source == choice:
            taken.append(source)
        else:
            dropped.append((source, f"model folder {parts[1]} already gives {choice} (one model per folder)"))
    return taken, dropped


def preferred_model_file(model_folder: str, candidates: list[str]) -> str:
    """The file taken for a ShapeNet model: v2's, else v1's, else the first in sorted order."""
    for preferred in SHAPENET_PREFERRED:
        if f"{model_folder}/{preferred}" in candidates:
            return f"{model_folder}/{preferred}"
    return sorted(candidates)[0]


def assign_entries(
    mesh_paths: list[str],
    layout: str,
    *,
    test_fraction: float = 0.2,
    class_map: dict[str, str] | None = None,
    split_table: dict[str, str] | None = None,
) -> tuple[list[MeshEntry], list[tuple[str, str]]]:
    """Give each mesh path its class and split under ``layout``.

    class_map : raw class (folder name or synset id) -> class name; raw names not in it are kept as they
    are. split_table : ShapeNet model id -> split (official split file); models it lacks fall back to
    the hash split. Returns (entries in the order of ``mesh_paths``, [(source, reason)] for the paths
    that do not fit the layout).
    """
    if layout not in LAYOUTS:
        raise VoxganError(f"unknown layout {layout!r}; use one of auto, {', '.join(LAYOUTS)}")
    class_map = class_map or {}
    errors: list[tuple[str, str]] = []
    if layout == "shapenet":
        mesh_paths, errors = pick_shapenet_models(mesh_paths)
    entries = []
    for source in mesh_paths:
        if layout == "modelnet":
            parts = modelnet_parts(source)
            if parts is None:
                errors.append((source, "does not fit the modelnet layout <class>/{train,test}/<file>"))
                continue
            raw_class, split = parts
        elif layout == "shapenet":
            parts = shapenet_parts(source)
            if parts is None:
                errors.append((source, "does not fit the shapenet layout <synset>/<model>/.../<file>"))
                continue
            raw_class = parts[0]
            model_id = parts[1].split("/")[-1]
            split = (split_table or {}).get(model_id) or hash_split(source, test_fraction)
        elif layout == "folder":
            if "/" not in source:
                errors.append((source, "does not fit the folder layout <class>/.../<file> (no class folder)"))
                continue
            raw_class, split = source.split("/")[0], hash_split(source, test_fraction)
        else:
            raw_class, split = None, hash_split(source, test_fraction)
        class_name = None if raw_class is None else class_map.get(raw_class, raw_class)
        entries.append(MeshEntry(source=source, class_name=class_name, split=split))
    return entries, errors


def class_names_of(entries: list[MeshEntry], fixed: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The class list labels index into: ``fixed`` (a recipe's list) if given, else those found, sorted."""
    if fixed:
        return tuple(fixed)
    return tuple(sorted({e.class_name for e in entries if e.class_name is not None}))


def label_of(entry: MeshEntry, class_names: tuple[str, ...]) -> int:
    """Index of the entry's class in ``class_names``; -1 for no class; ValueError when it is not listed."""
    if entry.class_name is None:
        return -1
    return class_names.index(entry.class_name)
