"""Volumes back to files: meshes (OBJ, STL, PLY, GLB, OFF), voxel files (binvox, npy) and pictures.

The mesh frame is the grid frame of the shards: voxel (i, j, k) spans [i, i+1) × [j, j+1) × [k, k+1),
so a mesh of an R³ volume lies in [0, R]³ with +z up, one unit per voxel. Voxelizing a mesh again in
this frame (``voxgan voxelize --grid-coords``) gives the volume back: exactly for ``blocks`` meshes,
within IoU 0.9 for ``smooth`` ones, except that empty regions enclosed by the volume come back filled
(voxelize reverses every closed part with a negative volume, which a cavity's shell is). Both kinds are
watertight, consistently wound with outward normals and free of duplicate vertices: where two voxels
touch only along an edge or at a corner, the surface is pinched apart by :data:`PINCH` voxel so that
every edge joins exactly two faces, without entering any empty voxel.

Volumes come from a trained generator (a run folder or a checkpoint) or from a shard folder.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voxgan.atomic import atomic_open
from voxgan.errors import VoxganError

MESH_FORMATS = ("obj", "stl", "ply", "glb", "off")
FORMATS = (*MESH_FORMATS, "binvox", "npy", "png", "gif")
MESH_KINDS = ("smooth", "blocks")
PINCH = 1e-3  # how far, in voxels, the copies of a lattice point shared by separate sheets of surface move
OTHER_AXES = ((1, 2), (0, 2), (0, 1))  # the in-plane axes of a face, by its normal axis
CROSSING_AXIS = (1, 0, 0)  # by a face's normal axis: the in-plane axis along which a copy may leave the face
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


def corner_faces() -> list[tuple[int, tuple[int, int, int], tuple[int, int, int]]]:
    """The 12 unit faces meeting at a lattice point, as (normal axis, octant below, octant above).

    Octant ``(ox, oy, oz)`` in {0, 1}³ is the voxel whose low corner is the lattice point plus
    ``(ox, oy, oz) - 1``. Face ``a*4 + ob*2 + oc`` lies between the two octants that differ only along
    axis ``a`` and sit at ``(ob, oc)`` along the two other axes, taken in increasing order.
    """
    faces = []
    for axis in range(3):
        b, c = OTHER_AXES[axis]
        for ob in (0, 1):
            for oc in (0, 1):
                below = [0, 0, 0]
                below[b], below[c] = ob, oc
                above = below.copy()
                above[axis] = 1
                faces.append((axis, tuple(below), tuple(above)))
    return faces


def octant_bit(octant: tuple[int, int, int]) -> int:
    """The bit of octant ``(ox, oy, oz)`` in a lattice point's occupancy code: ``ox*4 + oy*2 + oz``."""
    return octant[0] * 4 + octant[1] * 2 + octant[2]


def corner_copies(occupied: list[bool]) -> list[int]:
    """occupied : 8 bools by :func:`octant_bit`  ->  12 ints: the copy of the lattice point each face
    of :func:`corner_faces` uses, -1 for faces not on the surface.

    Faces on the surface are joined in fans around the six lattice edges leaving the point: where an edge
    has two surface faces they join; where it has four (two occupied voxels touching only along it)
    the two faces of each occupied voxel join, so that voxels touching along an edge or at a corner
    are kept apart. Each resulting fan (a closed loop of faces around the point) is one copy.
    """
    faces = corner_faces()
    on_surface = [occupied[octant_bit(below)] != occupied[octant_bit(above)] for _, below, above in faces]
    solid = [below if occupied[octant_bit(below)] else above for _, below, above in faces]
    parent = list(range(12))

    def root(face: int) -> int:
        while parent[face] != face:
            face = parent[face]
        return face

    for axis in range(3):
        for side in (0, 1):
            fan = [n for n, (a, below, _) in enumerate(faces) if a != axis and below[axis] == side]
            fan = [n for n in fan if on_surface[n]]
            for n in fan:
                for m in fan:
                    if n < m and (len(fan) == 2 or solid[n] == solid[m]):
                        parent[root(n)] = root(m)
    labels: dict[int, int] = {}
    return [labels.setdefault(root(n), len(labels)) if on_surface[n] else -1 for n in range(12)]


def copy_steps(occupied: list[bool], copies: list[int]) -> list[tuple[int, int, int]]:
    """The step in {-1, 0, 1}³ each copy of a lattice point moves by (times :data:`PINCH`).

    occupied : 8 bools by :func:`octant_bit`; copies : 12 ints from :func:`corner_copies`. A lone copy
    stays. Otherwise each copy's step obeys, for every face F of its fan (occupied voxel I, in-plane
    axes b and b'), per axis: along F's normal, zero or into I; along b' (the axis other than
    :data:`CROSSING_AXIS` of F's normal), zero or along F; along b, also out of F if the voxel beyond F's
    side there, next to I, is occupied. All of F's triangles then stay in the closed boxes of I and of
    those occupied neighbours, so they pass through no empty voxel, whatever the other corners do.
    Among the steps allowed, the copies take distinct non-zero ones, the longest first.
    """
    faces = corner_faces()
    count = max(copies) + 1
    if count <= 1:
        return [(0, 0, 0)] * count
    allowed = [[{-1, 0, 1} for _ in range(3)] for _ in range(count)]
    for n, (axis, below, above) in enumerate(faces):
        if copies[n] < 0:
            continue
        solid = below if occupied[octant_bit(below)] else above
        sets = allowed[copies[n]]
        sets[axis] &= {0, 2 * solid[axis] - 1}
        for b in OTHER_AXES[axis]:
            along = 2 * solid[b] - 1
            beyond = list(solid)
            beyond[b] ^= 1
            out = b == CROSSING_AXIS[axis] and occupied[octant_bit(tuple(beyond))]
            sets[b] &= {0, along, -along} if out else {0, along}
    options = []
    for sets in allowed:
        steps = [s for s in itertools.product(*(sorted(x) for x in sets)) if any(s)]
        options.append(sorted(steps, key=lambda s: (-sum(map(abs, s)), s)))
    for choice in itertools.product(*options):
        if len(set(choice)) == count:
            return list(choice)
    raise AssertionError(f"no steps for the copies of occupancy {occupied}")


@functools.cache
def corner_table() -> tuple[np.ndarray, np.ndarray]:
    """Copies and steps of a lattice point for each of its 256 possible 2×2×2 occupancies.

    Returns copies (256, 12) int8 (:func:`corner_copies` of each occupancy code, bits by
    :func:`octant_bit`) and steps (256, 4, 3) int8 (:func:`copy_steps`, zero for unused copies).
    """
    copies = np.full((256, 12), -1, np.int8)
    steps = np.zeros((256, 4, 3), np.int8)
    for code in range(256):
        occupied = [bool(code >> bit & 1) for bit in range(8)]
        copy = corner_copies(occupied)
        copies[code] = copy
        for n, step in enumerate(copy_steps(occupied, copy)):
            steps[code, n] = step
    return copies, steps


def corner_codes(occupancy: np.ndarray) -> np.ndarray:
    """occupancy : (R, R, R) bool  ->  (R+1, R+1, R+1) uint8, the occupancy code of each lattice point."""
    side = occupancy.shape[0] + 1
    padded = np.pad(occupancy, 1).astype(np.uint8)
    codes = np.zeros((side,) * 3, np.uint8)
    for ox, oy, oz in itertools.product((0, 1), repeat=3):
        codes |= padded[ox : ox + side, oy : oy + side, oz : oz + side] << octant_bit((ox, oy, oz))
    return codes


def quad_corner_copies(
    occupancy: np.ndarray, quads: np.ndarray, inside: np.ndarray, normals: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The copy of its lattice point each quad corner uses, and where that copy moves.

    occupancy : (R, R, R) bool; quads, inside, normals from :func:`boundary_quads`. Returns keys
    (Q, 4) int ``lattice id * 4 + copy`` and steps (Q, 4, 3) int8 from :func:`corner_table`.
    """
    side = occupancy.shape[0] + 1
    copies, steps = corner_table()
    codes = corner_codes(occupancy).reshape(-1)[quads]  # (Q, 4)
    corners = np.stack(np.unravel_index(quads, (side,) * 3), axis=-1)  # (Q, 4, 3)
    octants = inside[:, None, :] - corners + 1  # (Q, 4, 3) in {0, 1}: where the quad's voxel sits
    axis = np.abs(normals).argmax(axis=1)  # (Q,)
    other = np.array(OTHER_AXES)[axis]  # (Q, 2)
    in_plane = np.take_along_axis(octants, other[:, None, :], axis=2)  # (Q, 4, 2)
    face = axis[:, None] * 4 + in_plane[..., 0] * 2 + in_plane[..., 1]
    copy = copies[codes, face].astype(np.int64)  # (Q, 4)
    assert (copy >= 0).all(), "a boundary face missing from its corner's fans"
    return quads * 4 + copy, steps[codes, copy]


def blocks_mesh(occupancy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The voxel cubes merged into one surface: only faces between occupied and empty voxels.

    occupancy : (R, R, R) bool  ->  vertices (V, 3) float64 in grid coordinates, faces (F, 3) int64
    with outward normals. Empty volumes give no faces. Every edge joins exactly two faces and no two
    vertices coincide: a lattice point where separate sheets of the surface meet (voxels touching only
    along an edge or at a corner, which are kept apart) has one copy per sheet, each moved by
    :data:`PINCH` voxel (:func:`corner_table`). Where both ends of an edge shared by two such voxels
    still have one copy for both, each voxel's side of the edge gets its own midpoint, moved into
    the voxel, and the faces along it are fanned from their centres.
    """
    occupancy = np.asarray(occupancy, bool)
    assert occupancy.ndim == 3 and len(set(occupancy.shape)) == 1, occupancy.shape
    side = occupancy.shape[0] + 1
    quads, inside, normals = boundary_quads(occupancy)
    if len(quads) == 0:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    keys, steps = quad_corner_copies(occupancy, quads, inside, normals)
    unique_keys, first, ring = np.unique(keys.reshape(-1), return_index=True, return_inverse=True)
    ring = ring.reshape(-1, 4)  # (Q, 4) vertex ids
    lattice = np.stack(np.unravel_index(unique_keys // 4, (side,) * 3), axis=1)
    vertices = lattice + PINCH * steps.reshape(-1, 3)[first]
    ends = np.roll(ring, -1, axis=1)
    sides = np.minimum(ring, ends) * len(vertices) + np.maximum(ring, ends)  # (Q, 4) undirected edges
    _, which, uses = np.unique(sides.reshape(-1), return_inverse=True, return_counts=True)
    assert np.isin(uses, (2, 4)).all(), "a surface edge not shared by two or four faces"
    crowded = (uses[which] == 4).reshape(-1, 4)  # (Q, 4): both ends of the side keep one copy
    plain = ~crowded.any(axis=1)
    faces = [ring[plain][:, [0, 1, 2]], ring[plain][:, [0, 2, 3]]]
    if plain.all():
        return vertices, np.concatenate(faces)
    mids, mid_points = side_midpoints(quads, inside, crowded, side)
    split = np.flatnonzero(~plain)
    centres = len(vertices) + len(mid_points) + np.arange(len(split))
    mid_ids = np.full(quads.shape, -1)
    mid_ids[crowded] = len(vertices) + mids
    for k in range(4):
        start, end, mid = ring[split, k], ring[split, (k + 1) % 4], mid_ids[split, k]
        has = mid >= 0
        faces += [np.stack([centres[~has], start[~has], end[~has]], axis=1)]
        faces += [np.stack([centres[has], start[has], mid[has]], axis=1)]
        faces += [np.stack([centres[has], mid[has], end[has]], axis=1)]
    centre_points = np.stack(np.unravel_index(quads[split], (side,) * 3), axis=-1).mean(axis=1)
    return np.concatenate([vertices, mid_points, centre_points]), np.concatenate(faces).astype(np.int64)


def side_midpoints(
    quads: np.ndarray, inside: np.ndarray, crowded: np.ndarray, side: int
) -> tuple[np.ndarray, np.ndarray]:
    """One midpoint per crowded quad side and voxel, moved :data:`PINCH` voxel into that voxel.

    quads (Q, 4) int lattice ids; inside (Q, 3) int voxels; crowded (Q, 4) bool; side = R + 1.
    Returns ids (C,) int, the midpoint of each crowded side in ``np.nonzero(crowded)`` order, and
    points (M, 3) float64: the two faces of a voxel along an edge share its midpoint.
    """
    rows, k = np.nonzero(crowded)
    start, end = quads[rows, k], quads[rows, (k + 1) % 4]
    voxel = np.ravel_multi_index(inside[rows].T, (side - 1,) * 3)
    keys = np.stack([np.minimum(start, end), np.maximum(start, end), voxel], axis=1)
    unique_keys, first, ids = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    ends = [np.stack(np.unravel_index(unique_keys[:, n], (side,) * 3), axis=1) for n in (0, 1)]
    middle = (ends[0] + ends[1]) / 2
    points = middle + PINCH * np.sign(inside[rows[first]] + 0.5 - middle)
    return ids.reshape(-1), points


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
    with atomic_open(path) as handle:
        handle.write(data)


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
