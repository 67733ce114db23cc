"""``voxgan export``: volumes of a trained generator or of a shard folder, written as files.

Meshes (OBJ, STL, PLY, GLB, OFF; made by :mod:`voxgan.results.meshing`, in the grid frame), voxel files
(binvox, npy), pictures (a PNG grid, a GIF walk through latent space or turntable) and a page (HTML: the
volumes in 3D, each turnable with the mouse, one self-contained file; :mod:`voxgan.pages`). Volumes come from
a trained generator (a run folder or a checkpoint) or from a shard folder. A generator's volumes are written
without their specks (:func:`~voxgan.results.meshing.without_specks`) unless ``--keep-specks``.

Meshes and binvox files are written in the file's frame (:func:`export_transform`): the grid's +z turned
to the format's up axis (GLB: +y, by the glTF specification; the others: ``--up-axis``, +z unless told)
by a rotation about the origin, and ``--scale`` units per voxel (glTF's unit is the metre). ``voxgan
voxelize --grid-coords`` with the same ``--up-axis`` and ``--scale`` undoes exactly that. npy, PNG,
GIF and HTML are the grid itself, +z up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voxgan.atomic import write_bytes_atomic
from voxgan.axes import FORMAT_UP_AXES, UP_AXES, signed, z_to_up
from voxgan.binvox import binvox_bytes, decimal
from voxgan.errors import VoxganError, out_of_space
from voxgan.model.networks import Generator
from voxgan.model.pretrained import pretrained_path
from voxgan.model.runs import LoadedGenerator, find_latest_run, latent_batch, load_generator, run_generator
from voxgan.pages import Cell, Gallery, escape, write_page
from voxgan.render import render_volume, render_volumes
from voxgan.results.meshing import MESH_KINDS, mesh_warning, occupancy_of, volume_mesh, without_specks
from voxgan.shards import read_split

MESH_FORMATS = ("obj", "stl", "ply", "glb", "off")
FORMATS = (*MESH_FORMATS, "binvox", "npy", "png", "gif", "html")
TURNED_FORMATS = (*MESH_FORMATS, "binvox")  # written in a frame that --up-axis and --scale choose


def export_up_axis(file_format: str, chosen: str | None = None) -> str:
    """The up axis ``file_format`` is written with: the format's own (GLB: ``"y"``), else ``chosen`` or z."""
    return FORMAT_UP_AXES.get(f".{file_format}", chosen or "z")


def export_transform(up_axis: str = "z", scale: float = 1.0) -> np.ndarray:
    """The affine (4, 4) from grid coordinates to an export's: +z turned to ``up_axis`` by a rotation about
    the origin (never a mirror), then ``scale`` units per voxel.

    The inverse of :func:`voxgan.ingest.frame.grid_coords_transform` (``voxelize --grid-coords``).
    """
    return np.diag([scale] * 3 + [1.0]) @ z_to_up(up_axis)


def mesh_bytes(mesh, file_format: str) -> bytes:
    """A ``trimesh.Trimesh`` encoded as OBJ, STL (binary), PLY (binary), GLB or OFF."""
    data = mesh.export(file_type=file_format)
    return data.encode() if isinstance(data, str) else bytes(data)


def turned_volume(occupancy: np.ndarray, rotation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A volume turned by a signed-permutation ``rotation`` (3, 3) (one of :func:`voxgan.axes.z_to_up`).

    occupancy : (R, R, R) bool [x, y, z]. Returns (turned (R, R, R) bool, corner (3,) float): the turned
    volume's voxel (a, b, c) spans ``corner + [a, a+1) × [b, b+1) × [c, c+1)`` in the turned frame.
    """
    rotation = np.asarray(rotation)
    source_axes = np.abs(rotation).argmax(axis=1)  # turned axis i is original axis source_axes[i]
    reversed_axes = rotation[np.arange(3), source_axes] < 0
    turned = np.flip(occupancy.transpose(source_axes), tuple(np.flatnonzero(reversed_axes)))
    return np.ascontiguousarray(turned), np.where(reversed_axes, -float(occupancy.shape[0]), 0.0)


def export_binvox(occupancy: np.ndarray, up_axis: str = "z", scale: float = 1.0) -> bytes:
    """A binvox file of ``occupancy`` : (R, R, R) bool [x, y, z], in the frame of :func:`export_transform`.

    By default (+z up, one unit per voxel) the header says ``translate 0 0 0`` and ``scale R``, so voxel
    (i, j, k) spans [i, i+1)³ as in the shards; another up axis turns the voxels and moves ``translate``
    to the turned grid's corner, ``scale`` multiplies both (the codec: :mod:`voxgan.binvox`).
    """
    turned, corner = turned_volume(np.asarray(occupancy, bool), z_to_up(up_axis)[:3, :3])
    return binvox_bytes(turned, scale * corner, scale * turned.shape[0])


def npy_bytes(array: np.ndarray) -> bytes:
    """``np.save`` of ``array`` as bytes."""
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def gif_bytes(frames: list[np.ndarray], seconds_per_frame: float = 0.08) -> bytes:
    """An endlessly looping animated GIF of (H, W, 3) uint8 frames (Pillow, which matplotlib requires)."""
    import io

    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=int(seconds_per_frame * 1000),
        loop=0,
        optimize=False,
    )
    return buffer.getvalue()


@dataclass
class VolumeSet:
    """Volumes to export: (N, R, R, R) float in [0, 1] or bool, with labels and a name for files;
    ``latents`` (N, Z) where a generator made them."""

    volumes: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    name: str
    description: str
    latents: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


def class_index(class_names: tuple[str, ...], class_name: str | None) -> int | None:
    """Index of ``class_name`` in ``class_names`` (None for None); VoxganError naming them if unknown."""
    if class_name is None:
        return None
    if class_name not in class_names:
        known = ", ".join(class_names) if class_names else "none: this source has no classes"
        raise VoxganError(f"unknown class {class_name!r}; the classes are: {known}")
    return class_names.index(class_name)


def generator_labels(num_classes: int, count: int, index: int | None) -> np.ndarray | None:
    """Labels for ``count`` samples: None when unconditional; else ``index``, or the classes in turn."""
    if num_classes == 0:
        if index is not None:
            raise VoxganError("this model is unconditional: it has no classes to choose from; drop --class")
        return None
    if index is not None:
        return np.full(count, index, np.int64)
    return np.arange(count, dtype=np.int64) % num_classes


def generated_volumes(
    loaded: LoadedGenerator,
    path: Path,
    num: int,
    seed: int = 0,
    class_name: str | None = None,
    device: str = "cpu",
) -> VolumeSet:
    """``num`` volumes from ``loaded``, the EMA generator of the run folder or checkpoint file ``path``."""
    path = Path(path)
    generator, class_names = loaded.generator, loaded.config.class_names
    labels = generator_labels(generator.num_classes, num, class_index(class_names, class_name))
    latents = latent_batch(num, generator.latent_dim, seed)
    name = (path.name if path.is_dir() else path.stem) + (f"-{class_name}" if class_name else "")
    return VolumeSet(
        volumes=run_generator(generator, latents, labels, device),
        labels=np.full(num, -1, np.int64) if labels is None else labels,
        class_names=class_names,
        name=name,
        description=f"{'run' if path.is_dir() else 'checkpoint'} {path} (step {loaded.step})",
        latents=latents,
    )


def dataset_volumes(
    folder: Path, split: str = "test", num: int = 16, seed: int = 0, class_name: str | None = None
) -> VolumeSet:
    """``num`` volumes of a shard folder's ``split`` (a seeded random choice, in file order)."""
    folder = Path(folder)
    volumes, labels, class_names = read_split(folder, split)
    index = class_index(class_names, class_name)
    chosen = np.flatnonzero(labels == index) if index is not None else np.arange(len(labels))
    if len(chosen) == 0:
        raise VoxganError(
            f"{folder}: split {split!r} holds no volume{f' of class {class_name}' if class_name else ''}"
        )
    if len(chosen) > num:
        chosen = np.sort(np.random.default_rng(seed).choice(chosen, size=num, replace=False))
    name = f"{folder.resolve().name}-{split}" + (f"-{class_name}" if class_name else "")
    return VolumeSet(
        volumes=volumes[chosen],
        labels=labels[chosen],
        class_names=class_names,
        name=name,
        description=f"shard folder {folder} (split {split}, {len(chosen)} of {len(labels)} volumes)",
    )


def slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation of latents a, b : (Z,) at t : (T,) in [0, 1]  ->  (T, Z)."""
    cos = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if omega < 1e-6:
        return a[None] + t[:, None] * (b - a)[None]
    return (np.sin((1 - t) * omega)[:, None] * a + np.sin(t * omega)[:, None] * b) / np.sin(omega)


def latent_walk(latents: np.ndarray, frames_between: int = 12) -> np.ndarray:
    """A closed loop through keyframe latents (K, Z)  ->  (K * frames_between, Z)."""
    t = np.arange(frames_between) / frames_between
    loop = [slerp(latents[i], latents[(i + 1) % len(latents)], t) for i in range(len(latents))]
    return np.concatenate(loop).astype(np.float32)


def turntable(volume: np.ndarray, frames: int = 36) -> np.ndarray:
    """One volume (R, R, R) turned a full circle about the z axis  ->  (frames, R, R, R) float32."""
    from scipy.ndimage import rotate

    volume = np.asarray(volume, np.float32)
    angles = np.arange(frames) * 360.0 / frames
    return np.stack(
        [rotate(volume, angle, axes=(0, 1), reshape=False, order=1, mode="constant") for angle in angles]
    )


@dataclass
class ExportConfig:
    """The options of ``voxgan export``."""

    format: str
    run: Path | None = None
    checkpoint: Path | None = None
    pretrained: str | None = None  # a generator shipped with voxgan (voxgan.model.pretrained)
    data: Path | None = None
    split: str = "test"
    num: int = 16
    seed: int = 0
    threshold: float = 0.5
    mesh: str = "smooth"
    class_name: str | None = None
    out: Path = Path("exports")
    runs_dir: Path = Path("runs")
    device: str = "cpu"
    up_axis: str | None = None  # formats without a convention (OBJ, STL, PLY, OFF, binvox) [z]
    scale: float = 1.0  # units per voxel of meshes and binvox (glTF: metres)
    keep_specks: bool = False  # generated volumes as made, loose specks and all (meshing.without_specks)


@dataclass
class ExportResult:
    """What an export wrote: the files, the source it used, and warnings (one line each)."""

    files: list[Path]
    source: str
    warnings: list[str]
    frame: str | None = None  # the up axis and unit of meshes and binvox, and how to read them back


def check_export_config(config: ExportConfig) -> None:
    """VoxganError for options that cannot work together."""
    if config.format not in FORMATS:
        raise VoxganError(f"unknown format {config.format!r}; use one of {', '.join(FORMATS)}")
    if config.mesh not in MESH_KINDS:
        raise VoxganError(f"unknown mesh kind {config.mesh!r}; use one of {', '.join(MESH_KINDS)}")
    if sum(x is not None for x in (config.run, config.checkpoint, config.pretrained, config.data)) > 1:
        raise VoxganError("give at most one source: --run, --checkpoint, --pretrained or --data")
    if config.pretrained is not None:
        pretrained_path(config.pretrained)
    if config.num < 1:
        raise VoxganError(f"--num must be at least 1, got {config.num}")
    if not 0.0 <= config.threshold <= 1.0:
        raise VoxganError(f"--threshold must be in [0, 1], got {config.threshold}")
    if not (np.isfinite(config.scale) and config.scale > 0):
        raise VoxganError(f"--scale must be a positive number of units per voxel, got {config.scale}")
    if config.up_axis is not None and config.up_axis not in UP_AXES:
        raise VoxganError(f"unknown up axis {config.up_axis!r}; use one of {', '.join(UP_AXES)}")
    if config.format not in TURNED_FORMATS and (config.up_axis is not None or config.scale != 1):
        raise VoxganError(
            f"{config.format} holds the grid itself, +z up: --up-axis and --scale apply to meshes and binvox"
        )
    fixed = FORMAT_UP_AXES.get(f".{config.format}")
    if fixed and config.up_axis not in (None, fixed):
        raise VoxganError(
            f"{config.format} is {signed(fixed)} up by its specification: drop --up-axis "
            f"(it is for {', '.join(f for f in TURNED_FORMATS if f'.{f}' not in FORMAT_UP_AXES)})"
        )


def frame_line(config: ExportConfig, resolution: int) -> str | None:
    """One line saying the up axis and unit an export was written with and how to read it back unchanged
    (None for npy, PNG and GIF, which are the grid itself)."""
    if config.format not in TURNED_FORMATS:
        return None
    up_axis = export_up_axis(config.format, config.up_axis)
    fixed = f".{config.format}" in FORMAT_UP_AXES
    why = "glTF specification" if fixed else "--up-axis"
    unit = "m" if fixed else "unit"
    options = "" if fixed or up_axis == "z" else f" --up-axis {up_axis}"
    options += "" if config.scale == 1 else f" --scale {decimal(config.scale)}"
    return (
        f"frame: {signed(up_axis)} up ({why}), 1 voxel = {decimal(config.scale)} {unit} (--scale); "
        f"back unchanged: voxgan voxelize {config.out} SHARDS --grid-coords --resolution {resolution}"
        f"{options}"
    )


def load_volumes(config: ExportConfig) -> tuple[VolumeSet, Generator | None]:
    """The volumes ``config`` asks for: from --data, --run, --checkpoint, --pretrained, or the newest run;
    and the generator that made them (None for --data), which a GIF walks the latent space of."""
    if config.data is not None:
        volume_set = dataset_volumes(config.data, config.split, config.num, config.seed, config.class_name)
        return volume_set, None
    source = config.run or config.checkpoint
    if config.pretrained is not None:
        source = pretrained_path(config.pretrained)
    notes = []
    if source is None:
        source = find_latest_run(Path(config.runs_dir))
        notes.append(f"no source given: using the newest run, {source}")
    loaded = load_generator(source, device=config.device)
    volumes = generated_volumes(loaded, source, config.num, config.seed, config.class_name, config.device)
    volumes.notes.extend(notes)
    return volumes, loaded.generator


def class_columns(volume_set: VolumeSet) -> int | None:
    """One column per class where a conditional model made its classes in turn (more volumes than
    classes, no --class); None (about square) otherwise."""
    classes, labels = len(volume_set.class_names), volume_set.labels
    if classes and len(labels) > classes and np.array_equal(labels, np.arange(len(labels)) % classes):
        return classes
    return None


def tile_titles(volume_set: VolumeSet) -> list[str] | None:
    """Class names under the tiles of a picture, when the volumes have classes."""
    if not volume_set.class_names or (volume_set.labels < 0).all():
        return None
    return [volume_set.class_names[label] if label >= 0 else "" for label in volume_set.labels]


def export_command(config: ExportConfig) -> str:
    """The ``voxgan export`` command line that makes this export again (the options that were given)."""
    words = ["voxgan export", f"--format {config.format}"]
    for option, value, default in (
        ("--run", config.run, None),
        ("--checkpoint", config.checkpoint, None),
        ("--pretrained", config.pretrained, None),
        ("--data", config.data, None),
        ("--split", config.split if config.data is not None else "test", "test"),
        ("--class", config.class_name, None),
        ("--num", config.num, 16),
        ("--seed", config.seed, 0),
        ("--threshold", config.threshold, 0.5),
        ("--out", config.out, Path("exports")),
    ):
        if value != default:
            words.append(f"{option} {value}")
    return " ".join(words + ["--keep-specks"] * config.keep_specks)


def write_html(volume_set: VolumeSet, occupancy: np.ndarray, config: ExportConfig, path: Path) -> list[str]:
    """The page of an export: every volume of ``occupancy`` (N, R, R, R) bool in 3D, titled with its class
    where there are classes. Returns a warning for each empty volume (its cell shows the floor only)."""
    titles = tile_titles(volume_set) or [""] * len(occupancy)
    cells, warnings = [], []
    for index, (volume, title) in enumerate(zip(occupancy, titles, strict=True)):
        count = int(volume.sum())
        cells.append(
            Cell(volume, title or f"#{index}", f"#{index} · {count} voxels" if title else f"{count} voxels")
        )
        if count == 0:
            warnings.append(f"{path.name}: volume #{index} is empty at --threshold {config.threshold}")
    resolution = occupancy.shape[1]
    intro = (
        f'<p class="note">Made by <code>{escape(export_command(config))}</code>. '
        f"{len(occupancy)} volumes at {resolution}³, +z up.</p>"
    )
    write_page(
        path,
        f"{volume_set.name}: {len(occupancy)} volumes",
        [intro, Gallery("Volumes", cells)],
        subtitle=volume_set.description,
    )
    return warnings


def animation_frames(
    volume_set: VolumeSet, generator: Generator | None, threshold: float, device: str, keep_specks: bool
) -> tuple[str, list[np.ndarray]]:
    """("walk", frames) through ``generator``'s latent space from the volume set's latents (without their
    specks unless ``keep_specks``), or without a generator ("turntable", frames) of the first volume."""
    if generator is not None:
        keys = volume_set.latents[: max(2, min(len(volume_set.latents), 8))]
        if len(keys) < 2:
            keys = np.concatenate([keys, latent_batch(1, keys.shape[1], 1 + len(keys))])
        walk = latent_walk(keys)
        label = volume_set.labels[0] if volume_set.labels[0] >= 0 else None
        labels = None if label is None else np.full(len(walk), label, np.int64)
        volumes = run_generator(generator, walk, labels, device) > threshold
        volumes = volumes if keep_specks else without_specks(volumes)
        return "walk", [render_volume(v) for v in volumes]
    volumes = turntable(volume_set.volumes[0].astype(np.float32))
    return "turntable", [render_volume(v, threshold=0.5) for v in volumes]


def export_volumes(config: ExportConfig) -> ExportResult:
    """Run ``voxgan export``: write ``config.num`` volumes in ``config.format`` to ``config.out``.

    Meshes and binvox files: one file per volume, ``{name}-{index:04d}.{format}``, in the frame of
    :func:`export_transform` (GLB +y up, the others ``config.up_axis``; ``config.scale`` units per
    voxel); npy: one ``{name}.npy`` holding (N, R, R, R) bool; png: one image grid ``{name}.png``; gif:
    ``{name}-walk.gif`` (a loop through latent space) or ``{name}-turntable.gif`` (a shard volume
    turning about z); html: one page ``{name}.html`` showing every volume in 3D.
    """
    check_export_config(config)
    volume_set, generator = load_volumes(config)
    with out_of_space(config.out, "run the same command again (it writes every file anew)"):
        return _write_exports(config, volume_set, generator)


def _write_exports(config: ExportConfig, volume_set: VolumeSet, generator: Generator | None) -> ExportResult:
    """Write the files of :func:`export_volumes`, each atomically."""
    from tqdm import tqdm

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    warnings, files = list(volume_set.notes), []
    occupancy = np.stack([occupancy_of(v, config.threshold) for v in volume_set.volumes])
    source = volume_set.description
    if generator is not None and not config.keep_specks:
        cleaned = without_specks(occupancy)
        changed = int((cleaned != occupancy).any(axis=(1, 2, 3)).sum())
        source += f"; specks taken out of {changed} of {len(occupancy)} volume(s) (--keep-specks keeps them)"
        occupancy = cleaned
    name = volume_set.name
    if config.format == "png":
        files.append(out / f"{name}.png")
        render_volumes(occupancy, files[-1], ncols=class_columns(volume_set), titles=tile_titles(volume_set))
    elif config.format == "gif":
        kind, frames = animation_frames(
            volume_set, generator, config.threshold, config.device, config.keep_specks
        )
        files.append(out / f"{name}-{kind}.gif")
        write_bytes_atomic(files[-1], gif_bytes(frames))
    elif config.format == "html":
        files.append(out / f"{name}.html")
        warnings += write_html(volume_set, occupancy, config, files[-1])
    elif config.format == "npy":
        files.append(out / f"{name}.npy")
        write_bytes_atomic(files[-1], npy_bytes(occupancy))
    else:
        up_axis = export_up_axis(config.format, config.up_axis)
        to_file = export_transform(up_axis, config.scale)
        for index, volume in enumerate(tqdm(occupancy, desc="export", unit="volume", leave=False)):
            path = out / f"{name}-{index:04d}.{config.format}"
            warning = mesh_warning(volume, path.name)
            if warning:
                warnings.append(warning)
                if not volume.any():
                    continue
            if config.format == "binvox":
                write_bytes_atomic(path, export_binvox(volume, up_axis, config.scale))
            else:
                mesh = volume_mesh(volume, config.mesh).apply_transform(to_file)
                write_bytes_atomic(path, mesh_bytes(mesh, config.format))
            files.append(path)
    frame = frame_line(config, occupancy.shape[1])
    return ExportResult(files=files, source=source, warnings=warnings, frame=frame)
