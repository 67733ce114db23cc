"""``voxgan info``: a shard folder's summary (samples per class and split, errors, skipped files), its
shards checked against the manifest (sha256 and headers), and an optional picture of a few samples per
class (PNG) or page (HTML: the samples in 3D with the counts and the errors, :mod:`voxgan.pages`);
``voxgan info --verify``: the checks alone, one line."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from voxgan import shards
from voxgan.errors import VoxganError
from voxgan.ingest.frame import up_axis_line

PREVIEW = "preview.png"  # written by voxgan voxelize next to the manifest
INFO_PAGE = "info.html"  # written by voxgan info --html next to the manifest


def class_counts(folder: Path, manifest: dict) -> dict[str, Counter]:
    """Samples per class name for each split, read from the shards' labels (missing shards count 0)."""
    import h5py

    names = manifest.get("classes", [])
    counts: dict[str, Counter] = {}
    for split, info in manifest["splits"].items():
        counter: Counter = Counter()
        for entry in info["shards"]:
            path = Path(folder) / entry["file"]
            if not path.is_file():
                continue
            try:
                with h5py.File(path, "r") as f:
                    labels = f["labels"][:]
            except (OSError, KeyError):
                continue
            for label, count in zip(*np.unique(labels, return_counts=True), strict=True):
                counter[names[label] if 0 <= label < len(names) else "(no class)"] += int(count)
        counts[split] = counter
    return counts


def format_summary(folder: Path, manifest: dict, *, max_errors: int = 5) -> str:
    """A text table: samples per class and split, errors (first few), skipped files, seconds."""
    counts = class_counts(folder, manifest)
    splits = list(manifest["splits"])
    rows = list(manifest.get("classes", [])) or ["(no class)"]
    if any("(no class)" in c for c in counts.values()) and "(no class)" not in rows:
        rows.append("(no class)")
    width = max([len("class"), *map(len, rows)])
    column = max([6, *map(len, splits)])
    recipe = manifest.get("recipe")
    recipe = (recipe.get("name") if isinstance(recipe, dict) else recipe) or "none"
    r = manifest["resolution"]
    lines = [
        f"{folder}: {r}x{r}x{r} {manifest.get('mode', 'solid')}, layout {manifest.get('layout', '?')}, "
        f"recipe {recipe}, "
        f"{len(manifest.get('classes', []))} classes",
        "class".ljust(width) + "".join(s.rjust(column + 2) for s in splits) + "total".rjust(column + 2),
    ]
    for name in rows:
        values = [counts[s].get(name, 0) for s in splits]
        lines.append(
            name.ljust(width)
            + "".join(str(v).rjust(column + 2) for v in values)
            + str(sum(values)).rjust(column + 2)
        )
    totals = [manifest["splits"][s]["count"] for s in splits]
    lines.append(
        "total".ljust(width)
        + "".join(str(v).rjust(column + 2) for v in totals)
        + str(sum(totals)).rjust(column + 2)
    )
    shard_count = sum(len(info["shards"]) for info in manifest["splits"].values())
    lines.append(f"shards: {shard_count}")
    errors = manifest.get("errors", [])
    lines.append(f"errors: {len(errors)}")
    for error in errors[:max_errors]:
        lines.append(f"  {error['source']}: {error['reason']}")
    if len(errors) > max_errors:
        lines.append(f"  ... {len(errors) - max_errors} more in manifest.json")
    skipped = manifest.get("skipped", {})
    listed = ", ".join(f"{ext} {n}" for ext, n in skipped.items()) if skipped else "none"
    lines.append(f"skipped: {sum(skipped.values())} ({listed})")
    if manifest.get("up_axes"):
        lines.append(up_axis_line(manifest["up_axes"]))
    if (Path(folder) / PREVIEW).is_file():
        lines.append(f"preview: {Path(folder) / PREVIEW} (samples across classes, +z up: check they stand)")
    if "seconds" in manifest:
        samples = sum(totals) + len(errors)
        rate = samples / manifest["seconds"] if manifest["seconds"] > 0 else 0.0
        lines.append(f"seconds: {manifest['seconds']:.1f} ({rate:.1f} meshes/s)")
    return "\n".join(lines)


def preview_volumes(folder: Path, manifest: dict, per_class: int = 4, limit: int = 48):
    """Samples across classes, for a picture: up to ``per_class`` of each class (fewer when there are
    many classes), at most ``limit`` in all, in label order; only the rows picked are unpacked.

    Returns (volumes (N, R, R, R) bool, N titles naming each sample's class).
    """
    import h5py

    names = manifest.get("classes", [])
    per_class = max(1, min(per_class, limit // max(1, len(names))))
    taken: Counter = Counter()
    picked: list[tuple[int, np.ndarray]] = []
    for info in manifest["splits"].values():
        for entry in info["shards"]:
            with h5py.File(Path(folder) / entry["file"], "r") as f:
                rows, labels = [], []
                for row, label in enumerate(f["labels"][:].tolist()):
                    if taken[label] < per_class and (label in taken or len(taken) < limit):
                        taken[label] += 1
                        rows.append(row)
                        labels.append(label)
                if rows:
                    grids = shards.unpack(f["voxels"][rows], manifest["resolution"])
                    picked += zip(labels, grids, strict=True)
    picked.sort(key=lambda pair: pair[0])
    if not picked:
        raise VoxganError(f"{folder}: no sample to preview")
    picked = picked[:limit]
    titles = [names[label] if 0 <= label < len(names) else "sample" for label, _ in picked]
    return np.stack([grid for _, grid in picked]), titles


def write_preview(folder: Path, manifest: dict, path: Path | None = None) -> Path:
    """Draw samples across classes (+z up, see :func:`preview_volumes`) as a PNG; ``folder/preview.png``
    by default, next to the manifest. Returns the path written."""
    from voxgan.render import render_volumes

    path = Path(folder) / PREVIEW if path is None else Path(path)
    volumes, titles = preview_volumes(folder, manifest)
    render_volumes(volumes, path, titles=titles, ncols=min(len(volumes), 8))
    return path


def write_info_page(
    folder: Path, manifest: dict, problems: list[str], path: Path | None = None, shards_whole: bool = True
) -> Path:
    """The folder as a page (``folder/info.html`` by default): its summary, the problems found, every
    error of the manifest, and samples across classes in 3D (left out unless ``shards_whole``: every
    shard present and as the manifest says). Returns the path written."""
    from voxgan.pages import Cell, Gallery, escape, html_table, write_page

    folder = Path(folder)
    path = folder / INFO_PAGE if path is None else Path(path)
    sections = [f"<pre>{escape(format_summary(folder, manifest))}</pre>"]
    if problems:
        items = "".join(f"<li>{escape(problem)}</li>" for problem in problems)
        sections.append(f'<h2>Problems</h2><ul id="problems">{items}</ul>')
    if shards_whole:
        volumes, titles = preview_volumes(folder, manifest, per_class=6, limit=64)
        cells = [
            Cell(volume, title, f"{int(volume.sum())} voxels")
            for volume, title in zip(volumes, titles, strict=True)
        ]
        note = "A few samples of each class, +z up: check that they stand upright and nothing is clipped."
        sections.append(Gallery("Samples across classes", cells, note=note))
    errors = manifest.get("errors", [])
    sections.append(f"<h2>Errors ({len(errors)})</h2>")
    if errors:
        sections.append(html_table(["source", "reason"], [[e["source"], e["reason"]] for e in errors]))
    r = manifest["resolution"]
    subtitle = f"{folder.resolve()}: {r}³ {manifest['mode']}, layout {manifest['layout']}"
    return write_page(path, f"{folder.resolve().name}: shard folder", sections, subtitle=subtitle)


def run_info(folder: Path, preview: Path | None = None, page: Path | None = None) -> tuple[str, list[str]]:
    """Summarise a shard folder and verify each shard's sha256; optionally write a preview PNG and a page
    (:func:`write_info_page`, written even when shards are missing or corrupt, naming them).

    Returns (summary text, problems): one problem line per missing or corrupt shard or per shard whose
    header disagrees with the manifest (:func:`voxgan.shards.shard_problem`), and one when the run that
    made the folder did not finish.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise VoxganError(f"{folder}: no such folder")
    manifest = shards.read_manifest(folder)
    problems = shards.verify(folder)
    shards_whole = not problems
    if not manifest.get("complete", True):
        problems.append("the voxelize run did not finish (re-run the same voxgan voxelize command to resume)")
    summary = format_summary(folder, manifest)
    if preview is not None and shards_whole:
        write_preview(folder, manifest, preview)
    if page is not None:
        write_info_page(folder, manifest, problems, page, shards_whole)
    return summary, problems


def run_verify(folder: Path) -> str:
    """``voxgan info --verify``: every listed shard exists, has the manifest's sha256 and a header that
    agrees with it (:func:`voxgan.shards.shard_problem`). Returns ``"verified N shards, M samples"``;
    VoxganError naming the first bad file otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VoxganError(f"{folder}: no such folder")
    problems = shards.verify(folder, first=True)
    if problems:
        raise VoxganError(f"{folder}/{problems[0]}; re-run voxgan voxelize")
    splits = shards.read_manifest(folder)["splits"].values()
    count = sum(len(info["shards"]) for info in splits)
    return f"verified {count} shards, {sum(info['count'] for info in splits)} samples"
