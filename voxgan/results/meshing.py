"""Volumes -> watertight meshes: the voxel cubes' outer surface (``blocks``) or a rounded one (``smooth``).

The mesh frame is the grid frame of the shards: voxel (i, j, k) spans [i, i+1) × [j, j+1) × [k, k+1),
so a mesh of an R³ volume lies in [0, R]³ with +z up, one unit per voxel. Voxelizing a mesh again in
this frame (``voxgan voxelize --grid-coords``) gives the volume back: exactly for ``blocks`` meshes,
within IoU 0.9 for ``smooth`` ones, except that empty regions enclosed by the volume come back filled
(voxelize reverses every closed part with a negative volume, which a cavity's shell is). Both kinds are
watertight, consistently wound with outward normals and free of duplicate vertices: where two voxels
touch only along an edge or at a corner, the surface is pinched apart by :data:`PINCH` voxel so that
every edge joins exactly two faces, without entering any empty voxel.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

from voxgan.errors import VoxganError

MESH_KINDS = ("smooth", "blocks")
PINCH = 1e-3  # how far, in voxels, the copies of a lattice point shared by separate sheets of surface move
OTHER_AXES = ((1, 2), (0, 2), (0, 1))  # the in-plane axes of a face, by its normal axis
CROSSING_AXIS = (1, 0, 0)  # by a face's normal axis: the in-plane axis along which a copy may leave the face
SMOOTH_SUPERSAMPLE = 3  # odd, so that a voxel centre is a fine sample
SMOOTH_SIGMA = 1.0  # in fine samples
SMOOTH_LEVEL = 0.25
SPECK_SHARE = 0.05  # a piece with fewer voxels than this share of its volume's largest piece is a speck
TOUCHING = np.ones((3, 3, 3), bool)  # voxels touching at a face, an edge or a corner are one piece


def occupancy_of(volume: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """(R, R, R) bool or float  ->  (R, R, R) bool: bool volumes as they are, others ``> threshold``."""
    volume = np.asarray(volume)
    return volume.copy() if volume.dtype == bool else volume > threshold


def pieces(occupancy: np.ndarray) -> tuple[np.ndarray, int]:
    """(R, R, R) bool  ->  (piece of each voxel : (R, R, R) int, 0 where empty, 1.. in a piece; count).
    Voxels touching at a face, an edge or a corner are one piece."""
    from scipy import ndimage

    return ndimage.label(occupancy, TOUCHING)


def without_specks(occupancy: np.ndarray, share: float = SPECK_SHARE) -> np.ndarray:
    """(N, R, R, R) bool  ->  the same volumes without their specks: the pieces with fewer voxels than
    ``share`` of their volume's largest piece (loose voxels a generator leaves, detached crumbs)."""
    cleaned = np.array(occupancy, dtype=bool, copy=True)
    for volume in cleaned:
        labels, count = pieces(volume)
        if count > 1:
            sizes = np.bincount(labels.ravel())
            sizes[0] = 0
            volume[sizes[labels] < share * sizes.max()] = False
    return cleaned


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
