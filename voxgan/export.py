"""Volumes back to files: meshes (OBJ, STL, PLY, GLB, OFF), voxel files (binvox, npy) and pictures.

The mesh frame is the grid frame of the shards: voxel (i, j, k) spans [i, i+1) × [j, j+1) × [k, k+1),
so a mesh of an R³ volume lies in [0, R]³ with +z up, one unit per voxel. Voxelizing a mesh again in
this frame (``voxgan voxelize --grid-coords``) gives the volume back: exactly for ``blocks`` meshes,
within IoU 0.9 for ``smooth`` ones. Both kinds are watertight, consistently wound with outward normals
and free of duplicate vertices: where two voxels touch only along an edge or at a corner, the surface
is pinched apart by :data:`PINCH` voxel so that every edge joins exactly two faces.

Volumes come from a trained generator (a run folder or a checkpoint) or from a shard folder.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voxgan.errors import VoxganError

MESH_FORMATS = ("obj", "stl", "ply", "glb", "off")
FORMATS = (*MESH_FORMATS, "binvox", "npy", "png", "gif")
MESH_KINDS = ("smooth", "blocks")
PINCH = 0.01  # how far, in voxels, the copies of a vertex shared by voxels touching at an edge move apart
GENERATE_BATCH = 64
SMOOTH_SUPERSAMPLE = 3  # odd, so that a voxel centre is a fine sample
SMOOTH_SIGMA = 1.0  # in fine samples
SMOOTH_LEVEL = 0.25


# --- meshes ---------------------------------------------------------------------------------------


def occupancy_of(volume: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """(R, R, R) bool or float  ->  (R, R, R) bool: bool volumes as they are, others ``> threshold``."""
    volume = np.asarray(volume)
    return volume.copy() if volume.dtype == bool else volume > threshold


def boundary_quads(occupancy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The faces between occupied voxels and empty ones (or the outside), as outward-facing quads.

    occupancy : (R, R, R) bool  ->  quads (Q, 4) int lattice-point ids ``x*(R+1)² + y*(R+1) + z``,
    counter-clockwise seen from outside; inside (Q, 3) int the occupied voxel of each quad;
    normals (Q, 3) int its outward unit normal (inside + normal is the empty voxel across it).
    """
    resolution = occupancy.shape[0]
    side = resolution + 1
    padded = np.pad(occupancy, 1)
    quads, inside, normals = [], [], []
    for axis in range(3):
        u = np.eye(3, dtype=np.int64)[(axis + 1) % 3]
        v = np.eye(3, dtype=np.int64)[(axis + 2) % 3]
        for sign in (1, -1):
            normal = sign * np.eye(3, dtype=np.int64)[axis]
            neighbour = [slice(1, -1)] * 3
            neighbour[axis] = slice(1 + sign, resolution + 1 + sign)
            cells = np.argwhere(occupancy & ~padded[tuple(neighbour)])  # (Q, 3)
            if sign > 0:
                base = cells + normal
                ring = (base, base + u, base + u + v, base + v)
            else:
                ring = (cells, cells + v, cells + u + v, cells + u)
            quads.append(np.stack(ring, axis=1) @ np.array([side * side, side, 1]))  # (Q, 4)
            inside.append(cells)
            normals.append(np.broadcast_to(normal, cells.shape))
    return np.concatenate(quads), np.concatenate(inside), np.concatenate(normals)


def pairing_keys(
    low: np.ndarray, high: np.ndarray, inside: np.ndarray, outside: np.ndarray, padded: np.ndarray
) -> np.ndarray:
    """Which faces to join in pairs across each edge: faces with equal keys on the same edge.

    low, high : (E,) int lattice ids of each face-edge's ends, sorted so each edge's faces are
    consecutive; inside, outside : (E, 3) int padded-grid cells on either side of the face;
    padded : (R+2, R+2, R+2) bool. Returns (E,) int keys. At an edge with four faces (two occupied
    voxels touching only along it) the faces of one voxel go together (the voxels are pinched
    apart), unless the two voxels also meet through occupied voxels just beyond one end of the
    edge: then the faces around one empty voxel go together, so the surface stays a manifold there.
    """
    shape = padded.shape
    keys = np.ravel_multi_index(inside.T, shape)
    starts = np.flatnonzero(np.r_[True, (low[1:] != low[:-1]) | (high[1:] != high[:-1])])
    sizes = np.diff(np.r_[starts, len(low)])
    crowded = starts[sizes == 4]
    if len(crowded) == 0:
        return keys
    side = shape[0] - 1
    ends = np.stack(np.unravel_index(high[crowded], (side,) * 3), axis=1)
    ends = ends - np.stack(np.unravel_index(low[crowded], (side,) * 3), axis=1)
    group = crowded[:, None] + np.arange(4)  # (G, 4)
    in_keys, out_keys = keys[group], np.ravel_multi_index(outside.T, shape)[group]  # (G, 4) each
    # the two occupied voxels and the two empty ones around each crowded edge, as (G, 3) cells
    solids = [np.stack(np.unravel_index(pick(in_keys, axis=1), shape), axis=1) for pick in (np.min, np.max)]
    empties = [np.stack(np.unravel_index(pick(out_keys, axis=1), shape), axis=1) for pick in (np.min, np.max)]
    joined = np.zeros(len(crowded), bool)
    for step in (ends, -ends):
        beyond = [padded[tuple((cells + step).T)] for cells in (*solids, *empties)]
        joined |= beyond[0] & beyond[1] & (beyond[2] | beyond[3])
    outside_keys = np.ravel_multi_index(outside.T, shape)
    keys[group[joined]] = outside_keys[group[joined]]
    return keys


def split_pinched_vertices(
    faces: np.ndarray, inside: np.ndarray, outside: np.ndarray, padded: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Give each fan of faces around a lattice point its own vertex, so every edge joins two faces.

    faces : (F, 3) int lattice-point ids, consistently wound; inside, outside : (F, 3) int padded-grid
    cells on either side of each face; padded : (R+2, R+2, R+2) bool occupancy.
    Returns (faces (F, 3) int new vertex ids, points (V,) int the lattice point of each new vertex).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    count = len(faces)
    slots = np.arange(3 * count).reshape(count, 3)
    start, end = faces.reshape(-1), faces[:, [1, 2, 0]].reshape(-1)
    start_slot, end_slot = slots.reshape(-1), slots[:, [1, 2, 0]].reshape(-1)
    low, high = np.minimum(start, end), np.maximum(start, end)
    low_slot = np.where(start < end, start_slot, end_slot)
    high_slot = np.where(start < end, end_slot, start_slot)
    inside, outside = np.repeat(inside, 3, axis=0), np.repeat(outside, 3, axis=0)
    order = np.lexsort((high, low))
    low, high, inside, outside = low[order], high[order], inside[order], outside[order]
    low_slot, high_slot = low_slot[order], high_slot[order]
    keys = pairing_keys(low, high, inside, outside, padded)
    order = np.lexsort((keys, high, low))
    low, high, low_slot, high_slot = low[order], high[order], low_slot[order], high_slot[order]
    assert np.array_equal(low[0::2], low[1::2]) and np.array_equal(high[0::2], high[1::2]), "open surface"
    rows = np.concatenate([low_slot[0::2], high_slot[0::2]])
    cols = np.concatenate([low_slot[1::2], high_slot[1::2]])
    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(3 * count, 3 * count))
    _, component = connected_components(graph, directed=False)
    points = np.zeros(component.max() + 1, np.int64)
    points[component] = faces.reshape(-1)
    return component.reshape(count, 3), points


def blocks_mesh(occupancy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The voxel cubes merged into one surface: only faces between occupied and empty voxels.

    occupancy : (R, R, R) bool  ->  vertices (V, 3) float64 in grid coordinates, faces (F, 3) int64
    with outward normals. Empty volumes give no faces.
    """
    occupancy = np.asarray(occupancy, bool)
    resolution = occupancy.shape[0]
    quads, inside, normals = boundary_quads(occupancy)
    if len(quads) == 0:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    faces = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    inside = np.concatenate([inside, inside]) + 1  # padded-grid cells
    normals = np.concatenate([normals, normals])
    faces, points = split_pinched_vertices(faces, inside, inside + normals, np.pad(occupancy, 1))
    vertices = np.stack(np.unravel_index(points, (resolution + 1,) * 3), axis=1).astype(np.float64)
    return pinch_apart(vertices, faces, np.pad(occupancy, 1)), faces


def pinch_directions() -> np.ndarray:
    """(26, 3) float: the directions a split vertex may move in: corner diagonals, edges, then axes."""
    steps = np.stack(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1], indexing="ij"), axis=-1).reshape(-1, 3)
    steps = steps[np.abs(steps).sum(axis=1) > 0]
    steps = steps[np.argsort(-np.abs(steps).sum(axis=1), kind="stable")]
    return steps / np.linalg.norm(steps, axis=1, keepdims=True)


def triangles_enter_boxes(triangles: np.ndarray, box_low: np.ndarray) -> np.ndarray:
    """Separating-axis test of closed triangles against open unit boxes.

    triangles : (N, 3, 3) float; box_low : (N, 3) the boxes' low corners  ->  (N,) bool, True where
    the triangle passes through the open box (touching its boundary does not count).
    """
    centre = box_low + 0.5
    corners = triangles - centre[:, None, :]  # (N, 3, 3) relative to the box centre
    edges = corners[:, [1, 2, 0]] - corners
    axes = np.concatenate(
        [
            np.broadcast_to(np.eye(3), (len(corners), 3, 3)),
            np.cross(edges[:, 0], edges[:, 1])[:, None, :],
            np.cross(edges[:, :, None, :], np.eye(3)[None, None]).reshape(-1, 9, 3),
        ],
        axis=1,
    )  # (N, 13, 3)
    projections = (axes[:, :, None, :] * corners[:, None, :, :]).sum(axis=3)  # (N, 13, 3)
    radius = 0.5 * np.abs(axes).sum(axis=2)  # (N, 13)
    degenerate = np.abs(axes).sum(axis=2) < 1e-12
    low, high = projections.min(axis=2), projections.max(axis=2)
    # touching counts as separate only when exact and along a face plane (faces on grid planes); any
    # other touch counts as a crossing, so that a voxelizer with a looser tolerance finds none either
    separated = (low >= radius + 1e-9) | (high <= -radius - 1e-9)
    exact = (np.abs(low - radius) <= 1e-12) | (np.abs(high + radius) <= 1e-12)
    separated[:, :4] |= exact[:, :4]  # on the box's face planes or the triangle's own plane
    return ~(separated & ~degenerate).any(axis=1)


def bad_triangles(corners: np.ndarray, padded: np.ndarray) -> np.ndarray:
    """corners : (T, 3, 3) triangles in grid coordinates  ->  (T,) bool: does it pass through an empty voxel?

    padded : (R+2, R+2, R+2) bool occupancy with an empty border. Checks the 27 voxels around the lattice
    point nearest each triangle's low corner: enough for the near-unit triangles of a blocks mesh.
    """
    offsets = np.stack(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1], indexing="ij"), axis=-1).reshape(-1, 3)
    base = np.rint(corners.min(axis=1)).astype(np.int64)  # the lattice point nearest the low corner
    boxes = base[:, None, :] + offsets[None]  # (T, 27, 3) low corners of the voxels to check
    cells = np.clip(boxes + 1, 0, padded.shape[0] - 1)
    empty = ~padded[cells[..., 0], cells[..., 1], cells[..., 2]]  # (T, 27)
    low, high = corners.min(axis=1)[:, None, :], corners.max(axis=1)[:, None, :]
    empty &= ((low < boxes + 1) & (high > boxes)).all(axis=2)  # open bounding boxes overlap
    rows, which = np.nonzero(empty)
    hits = triangles_enter_boxes(corners[rows], boxes[rows, which].astype(np.float64))
    return np.bincount(rows[hits], minlength=len(corners)) > 0


def pinch_apart(vertices: np.ndarray, faces: np.ndarray, padded: np.ndarray) -> np.ndarray:
    """Move each copy of a split lattice point by :data:`PINCH` voxel so that the copies differ.

    vertices : (V, 3) float64 lattice points, faces : (F, 3) int, padded : (R+2, R+2, R+2) bool
    occupancy  ->  (V, 3) float64. Each copy takes the first direction (:func:`pinch_directions`)
    for which none of its triangles enters an empty voxel, so voxelizing the mesh again still gives
    the volume back; copies with no such direction, or whose move spoils a triangle once all copies
    have moved, stay on the lattice point.
    """
    _, inverse, copies = np.unique(vertices, axis=0, return_inverse=True, return_counts=True)
    split = np.flatnonzero(copies[inverse.reshape(-1)] > 1)
    if len(split) == 0:
        return vertices
    moved = vertices.copy()
    directions = pinch_directions()  # (D, 3)
    fan_face, fan_corner = np.nonzero(np.isin(faces, split))  # every (triangle, corner) at a split vertex
    fan_vertex = faces[fan_face, fan_corner]
    waiting = np.ones(len(fan_face), bool)  # fan entries whose vertex has no direction yet
    for direction in directions:
        entries = np.flatnonzero(waiting)
        if len(entries) == 0:
            break
        trial = moved[faces[fan_face[entries]]]  # (M, 3, 3)
        trial[np.arange(len(entries)), fan_corner[entries]] = (
            vertices[fan_vertex[entries]] + PINCH * direction
        )
        spoiled = np.unique(fan_vertex[entries[bad_triangles(trial, padded)]])
        settled = np.setdiff1d(fan_vertex[entries], spoiled)
        moved[settled] = vertices[settled] + PINCH * direction
        waiting &= ~np.isin(fan_vertex, settled)
    touched = np.flatnonzero(np.isin(faces, split).any(axis=1))
    while True:  # a later move may spoil a triangle an earlier one checked: undo moves until none is bad
        bad = touched[bad_triangles(moved[faces[touched]], padded)]
        if len(bad) == 0:
            return moved
        undo = np.intersect1d(faces[bad].reshape(-1), split)
        moved[undo] = vertices[undo]


def smooth_mesh(occupancy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A smooth surface that stays inside the occupied voxels and encloses each of their centres.

    occupancy : (R, R, R) bool  ->  vertices (V, 3) float64 in grid coordinates, faces (F, 3) int64
    with outward normals. Empty volumes give no faces.

    Marching cubes (level :data:`SMOOTH_LEVEL`) on the occupancy sampled :data:`SMOOTH_SUPERSAMPLE`
    times finer per axis, blurred by a Gaussian of :data:`SMOOTH_SIGMA` fine samples and set to zero
    on every fine sample next to an empty voxel. The surface therefore never enters an empty voxel,
    while every occupied voxel's centre (whose whole fine neighbourhood is occupied) stays inside, so
    voxelizing the mesh again gives the volume back; the price is a surface about 0.3 voxel inside
    the blocks' faces.
    """
    from scipy.ndimage import binary_erosion, gaussian_filter
    from skimage.measure import marching_cubes

    occupancy = np.asarray(occupancy, bool)
    if not occupancy.any():
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    k = SMOOTH_SUPERSAMPLE
    fine = np.pad(occupancy, 1)
    for axis in range(3):
        fine = np.repeat(fine, k, axis=axis)
    deep = binary_erosion(fine, np.ones((3, 3, 3), bool), border_value=0)
    field = gaussian_filter(fine.astype(np.float32), SMOOTH_SIGMA) * deep
    vertices, faces, _, _ = marching_cubes(field, level=SMOOTH_LEVEL, allow_degenerate=False)
    vertices = (
        vertices.astype(np.float64) + 0.5
    ) / k - 1.0  # fine sample n: centre (n + 0.5) / k, minus padding
    faces = faces.astype(np.int64)
    if signed_volume(vertices, faces) < 0:
        faces = faces[:, ::-1].copy()
    return vertices, faces


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Volume enclosed by a closed mesh, positive when its normals point outward."""
    a, b, c = (vertices[faces[:, n]] for n in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6)


def volume_mesh(volume: np.ndarray, kind: str = "smooth", threshold: float = 0.5):
    """One volume as a ``trimesh.Trimesh`` in grid coordinates (see the module docstring).

    volume : (R, R, R) bool or float in [0, 1]; kind : "smooth" (marching cubes) or "blocks".
    """
    import trimesh

    if kind not in MESH_KINDS:
        raise VoxganError(f"unknown mesh kind {kind!r}; use one of {', '.join(MESH_KINDS)}")
    occupancy = occupancy_of(volume, threshold)
    vertices, faces = (blocks_mesh if kind == "blocks" else smooth_mesh)(occupancy)
    return trimesh.Trimesh(vertices=vertices, faces=faces, process=False)


def mesh_warning(occupancy: np.ndarray, name: str) -> str | None:
    """A one-line warning for a volume that makes no useful mesh (empty, or every voxel filled)."""
    if not occupancy.any():
        return f"{name}: the volume is empty (no voxel above the threshold); no mesh written"
    if occupancy.all():
        return f"{name}: every voxel is filled; the mesh is the grid's bounding cube"
    return None


# --- files ----------------------------------------------------------------------------------------


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def mesh_bytes(mesh, file_format: str) -> bytes:
    """A ``trimesh.Trimesh`` encoded as OBJ, STL (binary), PLY (binary), GLB or OFF."""
    data = mesh.export(file_type=file_format)
    return data.encode() if isinstance(data, str) else bytes(data)


def binvox_bytes(occupancy: np.ndarray) -> bytes:
    """A binvox file of ``occupancy`` : (R, R, R) bool [x, y, z], in the grid frame.

    The header says ``translate 0 0 0`` and ``scale R``, so voxel (i, j, k) spans [i, i+1)³ as in the
    shards; the data are run-length pairs (value, count <= 255) in binvox's x-z-y order (y fastest).
    """
    occupancy = np.asarray(occupancy, bool)
    resolution = occupancy.shape[0]
    values = occupancy.transpose(0, 2, 1).reshape(-1).astype(np.uint8)  # [x, z, y], y fastest
    change = np.flatnonzero(np.diff(values)) + 1
    starts = np.r_[0, change]
    lengths = np.diff(np.r_[starts, len(values)])
    run_values = values[starts]
    pieces = -(-lengths // 255)  # runs longer than 255 become several pairs
    pair_values = np.repeat(run_values, pieces)
    pair_counts = np.full(pieces.sum(), 255, np.int64)
    last_piece = np.cumsum(pieces) - 1
    pair_counts[last_piece] = lengths - 255 * (pieces - 1)
    header = (
        f"#binvox 1\ndim {resolution} {resolution} {resolution}\ntranslate 0 0 0\nscale {resolution}\ndata\n"
    )
    pairs = np.stack([pair_values, pair_counts.astype(np.uint8)], axis=1).astype(np.uint8)
    return header.encode() + pairs.tobytes()


def read_binvox(data: bytes) -> np.ndarray:
    """Parse binvox bytes back into (R, R, R) bool [x, y, z] (the inverse of :func:`binvox_bytes`)."""
    head, _, body = data.partition(b"\ndata\n")
    fields = dict(line.split(maxsplit=1) for line in head.decode().splitlines()[1:] if line.strip())
    dims = [int(v) for v in fields["dim"].split()]
    pairs = np.frombuffer(body, np.uint8).reshape(-1, 2)
    values = np.repeat(pairs[:, 0], pairs[:, 1]).astype(bool)
    return values.reshape(dims[0], dims[2], dims[1]).transpose(0, 2, 1)


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


# --- where volumes come from ------------------------------------------------------------------------


@dataclass
class VolumeSet:
    """Volumes to export: (N, R, R, R) float in [0, 1] or bool, with labels and a name for files."""

    volumes: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    name: str
    description: str
    generator: object = None
    latents: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


def newest_run(runs_dir: Path = Path("runs")) -> Path:
    """The newest run under ``runs_dir`` (what ``voxgan export`` uses when given no source)."""
    from voxgan.train import find_latest_run

    return find_latest_run(Path(runs_dir))


def class_index(class_names: tuple[str, ...], class_name: str | None) -> int | None:
    """Index of ``class_name`` in ``class_names`` (None for None); VoxganError naming them if unknown."""
    if class_name is None:
        return None
    if class_name not in class_names:
        known = ", ".join(class_names) if class_names else "none: this source has no classes"
        raise VoxganError(f"unknown class {class_name!r}; the classes are: {known}")
    return class_names.index(class_name)


def latent_batch(count: int, latent_dim: int, seed: int) -> np.ndarray:
    """(count, latent_dim) float32 standard-normal latents drawn from ``seed`` alone."""
    return np.random.default_rng(seed).standard_normal((count, latent_dim)).astype(np.float32)


def run_generator(
    generator, latents: np.ndarray, labels: np.ndarray | None, device: str = "cpu"
) -> np.ndarray:
    """Volumes of ``generator`` for latents (N, Z) and labels (N,) or None  ->  (N, R, R, R) float32."""
    import torch

    outputs = []
    with torch.no_grad():
        for start in range(0, len(latents), GENERATE_BATCH):
            z = torch.from_numpy(latents[start : start + GENERATE_BATCH]).to(device)
            y = (
                None
                if labels is None
                else torch.from_numpy(labels[start : start + GENERATE_BATCH]).to(device)
            )
            volumes = generator(z, y)
            assert volumes.shape[1] == 1 and volumes.shape[2] == generator.resolution, volumes.shape
            outputs.append(volumes[:, 0].float().cpu().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0,) + (generator.resolution,) * 3, np.float32)


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
    path: Path, num: int, seed: int = 0, class_name: str | None = None, device: str = "cpu"
) -> VolumeSet:
    """``num`` volumes from the EMA generator of a run folder or checkpoint file."""
    from voxgan.train import load_checkpoint, load_generator

    path = Path(path)
    generator, config = load_generator(path, device=device)
    class_names = tuple(config.get("class_names") or ())
    labels = generator_labels(generator.num_classes, num, class_index(class_names, class_name))
    latents = latent_batch(num, generator.latent_dim, seed)
    step = load_checkpoint(path).get("step", "?")
    name = (path.name if path.is_dir() else path.stem) + (f"-{class_name}" if class_name else "")
    return VolumeSet(
        volumes=run_generator(generator, latents, labels, device),
        labels=np.full(num, -1, np.int64) if labels is None else labels,
        class_names=class_names,
        name=name,
        description=f"{'run' if path.is_dir() else 'checkpoint'} {path} (step {step})",
        generator=generator,
        latents=latents,
    )


def split_volumes(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Every volume of ``split`` in a shard folder: (N, R, R, R) bool, (N,) int64 labels, class names."""
    from voxgan.shards import read_manifest, read_shard

    folder = Path(folder)
    manifest = read_manifest(folder)
    splits = manifest.get("splits", {})
    if split not in splits:
        raise VoxganError(f"{folder}: no split {split!r}; it has {', '.join(splits) or 'none'}")
    shards = [read_shard(folder / entry["file"]) for entry in splits[split]["shards"]]
    resolution = int(manifest["resolution"])
    if not shards:
        return (
            np.zeros((0,) + (resolution,) * 3, bool),
            np.zeros(0, np.int64),
            tuple(manifest.get("classes", ())),
        )
    class_names = shards[0].header.class_names
    return (
        np.concatenate([s.occupancy for s in shards]),
        np.concatenate([s.labels for s in shards]),
        tuple(class_names),
    )


def dataset_volumes(
    folder: Path, split: str = "test", num: int = 16, seed: int = 0, class_name: str | None = None
) -> VolumeSet:
    """``num`` volumes of a shard folder's ``split`` (a seeded random choice, in file order)."""
    folder = Path(folder)
    volumes, labels, class_names = split_volumes(folder, split)
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


# --- animations -------------------------------------------------------------------------------------


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


# --- the command -------------------------------------------------------------------------------------


@dataclass
class ExportConfig:
    """The options of ``voxgan export``."""

    format: str
    run: Path | None = None
    checkpoint: Path | None = None
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


@dataclass
class ExportResult:
    """What an export wrote: the files, the source it used, and warnings (one line each)."""

    files: list[Path]
    source: str
    warnings: list[str]


def check_export_config(config: ExportConfig) -> None:
    """VoxganError for options that cannot work together."""
    if config.format not in FORMATS:
        raise VoxganError(f"unknown format {config.format!r}; use one of {', '.join(FORMATS)}")
    if config.mesh not in MESH_KINDS:
        raise VoxganError(f"unknown mesh kind {config.mesh!r}; use one of {', '.join(MESH_KINDS)}")
    if sum(x is not None for x in (config.run, config.checkpoint, config.data)) > 1:
        raise VoxganError("give at most one source: --run, --checkpoint or --data")
    if config.num < 1:
        raise VoxganError(f"--num must be at least 1, got {config.num}")
    if not 0.0 <= config.threshold <= 1.0:
        raise VoxganError(f"--threshold must be in [0, 1], got {config.threshold}")


def load_volumes(config: ExportConfig) -> VolumeSet:
    """The volumes ``config`` asks for: from --data, --run, --checkpoint, or the newest run."""
    if config.data is not None:
        return dataset_volumes(config.data, config.split, config.num, config.seed, config.class_name)
    source = config.run or config.checkpoint
    notes = []
    if source is None:
        source = newest_run(config.runs_dir)
        notes.append(f"no source given: using the newest run, {source}")
    volumes = generated_volumes(source, config.num, config.seed, config.class_name, config.device)
    volumes.notes.extend(notes)
    return volumes


def tile_titles(volume_set: VolumeSet) -> list[str] | None:
    """Class names under the tiles of a picture, when the volumes have classes."""
    if not volume_set.class_names or (volume_set.labels < 0).all():
        return None
    return [volume_set.class_names[label] if label >= 0 else "" for label in volume_set.labels]


def animation_frames(volume_set: VolumeSet, threshold: float, device: str) -> tuple[str, list[np.ndarray]]:
    """("walk", frames) through the generator's latent space, or ("turntable", frames) of the first volume."""
    from voxgan.render import render_volume

    if volume_set.generator is not None:
        keys = volume_set.latents[: max(2, min(len(volume_set.latents), 8))]
        if len(keys) < 2:
            keys = np.concatenate([keys, latent_batch(1, keys.shape[1], 1 + len(keys))])
        walk = latent_walk(keys)
        label = volume_set.labels[0] if volume_set.labels[0] >= 0 else None
        labels = None if label is None else np.full(len(walk), label, np.int64)
        volumes = run_generator(volume_set.generator, walk, labels, device)
        return "walk", [render_volume(v, threshold=threshold) for v in volumes]
    volumes = turntable(volume_set.volumes[0].astype(np.float32))
    return "turntable", [render_volume(v, threshold=0.5) for v in volumes]


def export_volumes(config: ExportConfig) -> ExportResult:
    """Run ``voxgan export``: write ``config.num`` volumes in ``config.format`` to ``config.out``.

    Meshes and binvox files: one file per volume, ``{name}-{index:04d}.{format}``; npy: one
    ``{name}.npy`` holding (N, R, R, R) bool; png: one image grid ``{name}.png``; gif: ``{name}-walk.gif``
    (a loop through latent space) or ``{name}-turntable.gif`` (a shard volume turning about z).
    """
    from tqdm import tqdm

    check_export_config(config)
    volume_set = load_volumes(config)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    warnings, files = list(volume_set.notes), []
    occupancy = np.stack([occupancy_of(v, config.threshold) for v in volume_set.volumes])
    name = volume_set.name
    if config.format == "png":
        from voxgan.render import render_volumes

        files.append(out / f"{name}.png")
        render_volumes(occupancy, files[-1], titles=tile_titles(volume_set))
    elif config.format == "gif":
        kind, frames = animation_frames(volume_set, config.threshold, config.device)
        files.append(out / f"{name}-{kind}.gif")
        write_bytes_atomic(files[-1], gif_bytes(frames))
    elif config.format == "npy":
        files.append(out / f"{name}.npy")
        write_bytes_atomic(files[-1], npy_bytes(occupancy))
    else:
        for index, volume in enumerate(tqdm(occupancy, desc="export", unit="volume", leave=False)):
            path = out / f"{name}-{index:04d}.{config.format}"
            warning = mesh_warning(volume, path.name)
            if warning:
                warnings.append(warning)
                if not volume.any():
                    continue
            if config.format == "binvox":
                write_bytes_atomic(path, binvox_bytes(volume))
            else:
                write_bytes_atomic(path, mesh_bytes(volume_mesh(volume, config.mesh), config.format))
            files.append(path)
    return ExportResult(files=files, source=volume_set.description, warnings=warnings)
