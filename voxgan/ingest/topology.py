"""Mesh topology: is a mesh closed, which faces are doubles, its connected parts, caps over its holes.

Faces are index arrays (F, 3) int; only :func:`hole_caps` looks at positions.
"""

from __future__ import annotations

import numpy as np

from voxgan.ingest.kernels import compiled_kernels
from voxgan.ingest.overlap import all_axes, any_axis


def is_closed(faces: np.ndarray) -> bool:
    """Whether every directed edge (a, b) appears as often as its reverse (b, a).

    faces : (F, 3) int. Such a mesh bounds its volume: its winding number is an integer that only
    changes across the surface. Holes, open edges and mixed orientation make this False.
    """
    return len(unmatched_edges(faces)) == 0


def unmatched_edges(faces: np.ndarray) -> np.ndarray:
    """Each use of a directed edge (a, b) beyond the uses of its reverse (b, a): the edges along holes,
    seams and flips of orientation.

    faces : (F, 3) int  ->  (U, 2) int64 rows (a, b), an edge used k times more than its reverse k times.
    Compiled: the edges listed by first corner, each list sorted by second corner, the rows by first
    corner (:func:`voxgan.ingest.kernels.unmatched_edges_loop`); else numpy's sort of the edges.
    """
    faces = np.ascontiguousarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(faces) and faces.min() < 0:
        raise ValueError("face indices must not be negative")
    kernels = compiled_kernels()
    if kernels is not None:
        unmatched = np.empty((3 * len(faces), 2), dtype=np.int64)
        return unmatched[: kernels.unmatched(faces, unmatched)]
    tails, heads = faces.reshape(-1), faces[:, [1, 2, 0]].reshape(-1)
    base = int(faces.max()) + 1 if len(faces) else 1
    keys, uses = np.unique(tails * base + heads, return_counts=True)
    reverse = (keys % base) * base + keys // base
    at = np.minimum(np.searchsorted(keys, reverse), max(len(keys) - 1, 0))
    extra = uses - np.where(keys[at] == reverse, uses[at], 0) if len(keys) else uses
    unmatched = np.repeat(keys, np.maximum(extra, 0))
    return np.stack([unmatched // base, unmatched % base], axis=1)


def front_faces(faces: np.ndarray) -> np.ndarray:
    """Which faces to keep so that no face is cancelled by a copy with its corners in reverse order.

    faces : (F, 3) int  ->  (F,) bool. Double-sided meshes hold each face twice, once per side; the
    two solid angles cancel and the winding number is 0 everywhere. Among faces with the same three
    corners in both orders only the first in file order is kept, which restores the orientation of
    meshes written front face first. Faces repeated in the same order are all kept.
    """
    count = len(faces)
    corners = np.sort(faces, axis=1)
    base = int(corners[:, 2].max()) + 1 if count else 1
    if base < 1 << 20:  # three corners in one int64: a quick answer when no two faces share all three
        keys = np.sort((corners[:, 0] * base + corners[:, 1]) * base + corners[:, 2])
        if not (keys[1:] == keys[:-1]).any():
            return np.ones(count, dtype=bool)
    forward = all_axes(faces == corners) | all_axes(faces == corners[:, [1, 2, 0]])
    forward |= all_axes(faces == corners[:, [2, 0, 1]])
    order = np.lexsort((np.arange(count), corners[:, 2], corners[:, 1], corners[:, 0]))
    sorted_corners = corners[order]
    starts = np.flatnonzero(np.concatenate([[True], any_axis(sorted_corners[1:] != sorted_corners[:-1])]))
    has_forward = np.logical_or.reduceat(forward[order], starts)
    has_backward = np.logical_or.reduceat(~forward[order], starts)
    group = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, count)))
    first_in_group = np.zeros(count, dtype=bool)
    first_in_group[starts] = True
    keep_sorted = ~(has_forward & has_backward)[group] | first_in_group
    keep = np.empty(count, dtype=bool)
    keep[order] = keep_sorted
    return keep


def vertex_parts(faces: np.ndarray) -> tuple[int, np.ndarray]:
    """Connected parts of the vertices 0..max(faces), linked by the faces' edges.

    faces : (F, 3) int, non-empty  ->  (parts, part_of_vertex : (V,) int in [0, parts)); a vertex no
    face uses is a part of its own.
    """
    count = int(faces.max()) + 1
    kernels = compiled_kernels()
    if kernels is not None:
        part_of_vertex = np.empty(count, dtype=np.int64)
        parts = kernels.parts(np.ascontiguousarray(faces, dtype=np.int64), part_of_vertex)
        return int(parts), part_of_vertex
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    links = coo_matrix(
        (np.ones(2 * len(faces)), (faces[:, [0, 0]].T.reshape(-1), faces[:, 1:].T.reshape(-1))),
        shape=(count, count),
    )
    return connected_components(links.tocsr(), directed=False)


def welded_faces(triangles: np.ndarray) -> np.ndarray:
    """Corner indices that give corners at exactly the same position one vertex.

    triangles : (F, 3, 3)  ->  faces : (F, 3) int64. A triangle soup (three corners of its own per face,
    as STL stores) or a mesh split along its seams (glTF and OBJ split vertices where normals or texture
    coordinates change) shares no edge across the split and looks open; welded, it is the closed mesh
    it is. No triangle changes. Positions are compared bit for bit, so nothing different is merged (+0.0
    and -0.0 stay apart). Compiled: one pass through a hash table; else numpy's sort of the rows.
    """
    bits = np.ascontiguousarray(triangles, dtype=np.float64).reshape(-1, 3).view(np.uint64)
    kernels = compiled_kernels()
    if kernels is not None:  # one pass through a hash table
        index = np.empty(len(bits), dtype=np.int64)
        kernels.weld(bits, index)
        return index.reshape(-1, 3)
    order = np.lexsort(bits.T[::-1])
    ordered = bits[order]
    starts = np.ones(len(ordered), dtype=bool)
    starts[1:] = any_axis(ordered[1:] != ordered[:-1])
    index = np.empty(len(ordered), dtype=np.int64)
    index[order] = np.cumsum(starts) - 1
    return index.reshape(-1, 3)


def hole_caps(triangles: np.ndarray, faces: np.ndarray, unmatched: np.ndarray | None = None) -> np.ndarray:
    """Triangles that close an open mesh: with them every directed edge is matched by its reverse.

    triangles : (F, 3, 3); faces : (F, 3) int, their corner indices; unmatched : (U, 2) int, the faces'
    :func:`unmatched_edges` where known  ->  caps : (C, 3, 3), C <= U. The unmatched edges join into
    loops (:func:`hole_loops`), each spanned by halves (:func:`spanning_corners`): most caps are short
    and lie along the hole's rim, so a winding sum counts them by groups (a fan from one corner would
    make every cap as long as the hole). The winding number of the mesh is then that of mesh + caps (an
    integer, :func:`column_winding`) minus that of the caps.
    """
    unmatched = unmatched_edges(faces) if unmatched is None else unmatched
    if len(unmatched) == 0:
        return np.zeros((0, 3, 3))
    position = np.empty((int(faces.max()) + 1, 3))
    position[faces.reshape(-1)] = triangles.reshape(-1, 3)
    return position[spanning_corners(*hole_loops(unmatched))]


def hole_loops(unmatched: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The unmatched edges joined head to tail into loops.

    unmatched : (U, 2) int, edges (a, b)  ->  (corners : (U,) int, starts : (L + 1,) int): loop l visits
    corners[starts[l]:starts[l + 1]] in the edges' direction and returns to its first. At a vertex with
    several edges in and out, the k-th edge in (by index) goes on with the k-th edge out. Loops are
    found by pointer jumping, O(U log U). As many unmatched edges enter each vertex as leave it (each
    face enters and leaves each of its corners once, and matched pairs cancel), so every edge is on a loop.
    """
    tails, heads = unmatched[:, 0], unmatched[:, 1]
    count = len(tails)
    if count == 0:
        return tails, np.zeros(1, dtype=np.int64)
    by_tail, by_head = np.argsort(tails, kind="stable"), np.argsort(heads, kind="stable")
    assert np.array_equal(tails[by_tail], heads[by_head]), "unmatched edges that do not form loops"
    following = np.empty(count, dtype=np.int64)
    following[by_head] = by_tail  # the edge that goes on from each edge's head
    rounds = int(np.ceil(np.log2(max(count, 2)))) + 1
    leader, jump = np.arange(count), following.copy()
    for _ in range(rounds):  # each edge learns the smallest edge index on its loop
        leader, jump = np.minimum(leader, leader[jump]), jump[jump]
    last = following == leader  # the loop's last edge, before its leader again
    step = np.where(last, np.arange(count), following)
    to_last = (~last).astype(np.int64)
    for _ in range(rounds):  # list ranking: each edge learns how many edges follow it on its loop
        to_last, step = to_last + to_last[step], step[step]
    order = np.lexsort((-to_last, leader))
    starts = np.flatnonzero(np.concatenate([[True], leader[order][1:] != leader[order][:-1], [True]]))
    return tails[order], starts


def spanning_corners(corners: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Triangles spanning each loop against its direction, halving it: (U,), (L + 1,)  ->  (T, 3) corner
    indices, T = U - 2 L over the loops of at least three corners.

    A loop c_0 .. c_{n-1} gets (c_0, c_{2n/3}, c_{n/3}), then each stretch c_i .. c_j of it (j > i + 1)
    gets (c_j, c_m, c_i), m halfway, and its two halves go on. The triangles' sizes halve with each
    step, so few of them are long (where a fan from one corner makes every one as long as the hole).
    """
    size = np.diff(starts)
    first, size = starts[:-1][size >= 3], size[size >= 3]
    third, two_thirds = size // 3, 2 * size // 3
    spans = [np.stack([first, first + two_thirds, first + third], axis=1)]
    loop_first, loop_size = np.tile(first, 3), np.tile(size, 3)
    low = np.concatenate([np.zeros_like(size), third, two_thirds])
    high = np.concatenate([third, two_thirds, size])
    while len(low):
        keep = high - low >= 2
        loop_first, loop_size, low, high = loop_first[keep], loop_size[keep], low[keep], high[keep]
        middle = (low + high) // 2
        spans.append(np.stack([loop_first + high % loop_size, loop_first + middle, loop_first + low], axis=1))
        loop_first, loop_size = np.tile(loop_first, 2), np.tile(loop_size, 2)
        low, high = np.concatenate([low, middle]), np.concatenate([middle, high])
    return corners[np.concatenate(spans)]
