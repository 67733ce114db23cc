"""Finding a run's inputs: the mesh and volume files under INPUT_DIR (:mod:`voxgan.ingest.layouts`), the
sources they hold (a file, or one volume of a stack), each kept source's class and split, and the
errors known before voxelizing (:class:`Inputs`)."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

from voxgan.ingest import layouts
from voxgan.ingest.config import VoxelizeConfig
from voxgan.ingest.formats import MESH_EXTENSIONS, VOXEL_EXTENSIONS, volume_sources
from voxgan.ingest.recipes import shapenet_class_map


@dataclass
class Inputs:
    """The input files found: the layout, every input file (and its size), every source to account for (a
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


def find_inputs(config: VoxelizeConfig) -> Inputs:
    """Find the mesh files, detect the layout, give each file a class and split."""
    root = config.input_dir.resolve()
    files = layouts.find_mesh_files(
        root, mesh_extensions(), config.include, exclude_dirs=(config.output_dir,)
    )
    sources = volume_sources(root, files.mesh_paths, config.mat_key)
    layout = layouts.detect_layout(files.mesh_paths) if config.layout == "auto" else config.layout
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
    sizes = [(root / source).stat().st_size for source in files.mesh_paths]
    return Inputs(
        layout=layout,
        mesh_paths=files.mesh_paths,
        sizes=sizes,
        sources=sources,
        skipped=files.skipped,
        entries=kept,
        class_names=class_names,
        errors=errors,
        fingerprint=fingerprint_of(files.mesh_paths, sizes),
    )


def found_counts(inputs: Inputs) -> dict[str, int]:
    """Counts to compare with a recipe's ``[expected]``: files per split and in total (of the classes
    taken, one per ShapeNet model), and the number of classes."""
    counts = Counter(entry.split for entry in inputs.entries)
    counts["total"] = len(inputs.entries)
    counts["classes"] = len({e.class_name for e in inputs.entries if e.class_name is not None})
    return dict(counts)
