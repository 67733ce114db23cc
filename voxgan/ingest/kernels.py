"""The voxelizer's inner loops as scalar code that numba compiles (cached on disk after the first call).

:func:`compiled_kernels` compiles them when numba is installed and returns None otherwise, or with
``VOXGAN_NO_NUMBA=1``; every caller then takes its vectorised numpy path, which gives the same occupancy
10-20 times slower. The solid angle of one triangle, the heart of the winding-number sum, is written once
(:func:`solid_angle_terms`, which the numpy path calls on arrays too) and compiled into the loop that
sums it, where the angles of a point's near triangles cost one atan2 (:func:`angle_sum`); the far field
of a group of triangles (its dipole and second-order term) is :func:`far_field_sum`.

Each loop is compiled for the one signature its callers give it (:func:`kernel_signatures`), all at once
on the first call, so a run compiles at one moment it announces on stderr, not file by file in its
workers. numba caches the machine code in the installed package's ``__pycache__``, else (a read-only
install) in ``~/.cache/numba``, or in ``NUMBA_CACHE_DIR`` when set; with no writable folder at all the
loops are compiled in memory on every run. Processes that find the cache empty at once (the tasks of a
job array) take turns: one compiles, the others wait for it and load what it wrote.

The module is long (over 700 lines) because every loop and helper numba compiles lives in it: they are
registered, compiled and cached at one moment from one file, and the numpy paths elsewhere call the same
formulas. It reads in sections: the compiling, the solid angle and its sums, the surface test, the
column crossings, the coarse-to-fine bookkeeping, the winding loop, the moments and parts of meshes, the
number parser.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
import time
import types

import numpy as np

COMPILE_NOTE = "compiling the voxelizer's numba kernels for this machine"
# A cell of at least LOCAL_POINTS points counts the far groups farther than LOCAL_RATIO times its radius
# by the quadratic their far field makes about it (:func:`local_quadratic`), not point by point.
LOCAL_POINTS = 16
LOCAL_RATIO = 6.0
SLACK = 1e-7  # in voxels: the surface test's ranges of voxels are widened by this against rounding
COMPILE_LOCK = "voxgan-kernels.lock"  # in numba's cache folder: one process at a time compiles into it


@functools.cache
def compiled_kernels():
    """The numba-compiled loops (compiled once, cached on disk), or None without numba.

    The loops below are plain Python until then, so numba stays optional; ``VOXGAN_NO_NUMBA=1`` turns them
    off (the numpy paths give the same occupancy, 10-20 times slower). When a loop is not in numba's
    cache yet, one line on stderr says that they compile, where they are cached and how long it took;
    processes that miss the cache at once compile one at a time (:func:`compile_lock`), so all but the
    first load what it wrote.
    """
    if os.environ.get("VOXGAN_NO_NUMBA") == "1":
        return None
    try:
        import numba
        from numba.extending import register_jitable
    except ImportError:
        return None
    for helper in (solid_angle_terms_into, angle_sum):  # a winding sum's inner loops run 1.7× faster
        register_jitable(inline="always")(helper)  # inlined than as numba's out-of-line calls
    helpers = (solid_angle_terms, product_turns, far_field_sum, bounding_sphere, far_from_cell, keep_far)
    helpers += (local_quadratic, quadratic_at, slab_extents)
    for helper in (*helpers, vector_area, edge_side, sign, bilinear, mixed, table_size):
        register_jitable(helper)  # callable from the loops below, compiled into them
    loops = {
        "overlap": overlap_loop,
        "columns": column_crossing_loop,
        "column_inside": column_inside_loop,
        "two_level": two_level_winding_loop,
        "moments": group_moments_loop,
        "parts": vertex_parts_loop,
        "unmatched": unmatched_edges_loop,
        "weld": weld_loop,
        "decimals": decimal_loop,
        "settle": settle_loop,
        "near": blocks_near_loop,
        "holding": blocks_holding_loop,
    }
    signatures = kernel_signatures(numba.types)
    try:
        compiled = {name: numba.njit(cache=True, **jit_options(name))(loop) for name, loop in loops.items()}
    except RuntimeError:  # numba found no writable cache folder: the package's, NUMBA_CACHE_DIR, ~/.cache
        compiled = {name: numba.njit(**jit_options(name))(loop) for name, loop in loops.items()}
        when = "on every run (about 5-10 s): no writable folder for numba's cache; set NUMBA_CACHE_DIR to one"
        compile_announced(compiled, signatures, when)
        return types.SimpleNamespace(**compiled)
    folder = cache_folder(compiled["overlap"])
    if not loaded_from_cache(compiled, signatures):
        with compile_lock(folder):  # another process may have compiled them meanwhile: then they load
            compile_announced(compiled, signatures, f"once (about 5-10 s; cached in {folder})")
    return types.SimpleNamespace(**compiled)


def jit_options(name: str) -> dict:
    """numba's options for the loop ``name``: without the GIL; a division by zero gives inf or NaN as in
    numpy rather than raising (no loop divides by zero, and the check kept loops with a division from
    running several lanes at a time); the winding sum may reorder its running sums (its far-field sum then
    runs four lanes at a time: the sums 20% faster, the same occupancy). Not ``contract`` (fused
    multiply-adds): a point on a triangle's edge would no longer see the exact zero terms that
    :func:`solid_angle_terms_into` sets aside."""
    options = {"nogil": True, "error_model": "numpy"}
    if name == "two_level":
        options["fastmath"] = {"reassoc"}
    return options


def kernel_signatures(nb) -> dict[str, tuple]:
    """The argument types each loop is called with (``nb``: ``numba.types``), one signature per loop."""
    f8_1, f8_2, f8_3 = nb.float64[::1], nb.float64[:, ::1], nb.float64[:, :, ::1]
    i8_1 = nb.int64[::1]
    return {
        "overlap": (f8_3, nb.int64, nb.boolean[:, :, ::1], nb.boolean[:, :, ::1]),
        "columns": (f8_3, nb.int64, nb.int32[:, :, ::1]),
        "column_inside": (nb.int32[:, :, ::1], nb.boolean[:, :, ::1], nb.boolean[:, :, ::1]),
        "two_level": (f8_2, i8_1, f8_2, i8_1, i8_1, f8_2, f8_1, i8_1, i8_1, f8_2, f8_1, f8_1),
        "moments": (f8_3, i8_1, i8_1, f8_2, f8_1),
        "parts": (nb.int64[:, ::1], i8_1),
        "unmatched": (nb.int64[:, ::1], nb.int64[:, ::1]),
        "weld": (nb.uint64[:, ::1], i8_1),
        "decimals": (nb.Array(nb.uint8, 1, "C", readonly=True), f8_1),
        "settle": (i8_1, f8_3, nb.boolean[:, :, ::1], nb.float64, nb.int32[:, :, ::1])
        + (nb.boolean[:, :, ::1],) * 2,
        "near": (nb.int64[:, ::1], i8_1, i8_1, nb.boolean[:, :, ::1]),
        "holding": (nb.boolean[:, :, ::1], i8_1, nb.boolean[:, :, ::1]),
    }


def compile_announced(dispatchers: dict, signatures: dict[str, tuple], when: str) -> None:
    """Compile each dispatcher for its signature, loading it from numba's cache where it is there.

    The first loop that numba really compiles (its ``numba:compile`` event, sent on a cache miss only)
    starts one line on stderr (``when``: once and cached where, or on every run), which ends with the
    seconds taken once all are compiled.
    """
    from numba.core import event

    started: list[float] = []

    class Announce(event.Listener):
        def on_start(self, _):
            if not started:
                started.append(time.perf_counter())
                print(f"voxgan: {COMPILE_NOTE}, {when} ...", end="", file=sys.stderr, flush=True)

        def on_end(self, _):
            pass

    with event.install_listener("numba:compile", Announce()):
        for name, dispatcher in dispatchers.items():
            dispatcher.compile(signatures[name])
    if started:
        print(f" done in {time.perf_counter() - started[0]:.1f} s", file=sys.stderr, flush=True)


class CacheMiss(Exception):
    """numba is about to compile a loop: its machine code is not in the cache."""


def loaded_from_cache(dispatchers: dict, signatures: dict[str, tuple]) -> bool:
    """Load each dispatcher's loop for its signature from numba's cache; False, with the rest not loaded,
    at the first loop that is not there (numba's ``numba:compile`` event, sent on a cache miss only, stops
    it before it compiles)."""
    from numba.core import event

    class Refuse(event.Listener):
        def on_start(self, _):
            raise CacheMiss

        def on_end(self, _):
            pass

    try:
        with event.install_listener("numba:compile", Refuse()):
            for name, dispatcher in dispatchers.items():
                dispatcher.compile(signatures[name])
    except CacheMiss:
        return False
    return True


@contextlib.contextmanager
def compile_lock(folder: str):
    """Hold the lock file ``COMPILE_LOCK`` in ``folder`` (numba's cache folder) for this block, waiting
    (with one line on stderr) while another process holds it. Without ``fcntl`` (Windows) or where the
    file cannot be opened, no lock: each process then compiles for itself, as numba alone would."""
    try:
        import fcntl

        lock = os.open(os.path.join(folder, COMPILE_LOCK), os.O_RDWR | os.O_CREAT, 0o666)
    except (ImportError, OSError):
        yield
        return
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            started = time.perf_counter()
            print(
                f"voxgan: another process is {COMPILE_NOTE}, waiting ...", end="", file=sys.stderr, flush=True
            )
            fcntl.flock(lock, fcntl.LOCK_EX)
            print(f" done in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
        yield
    finally:
        os.close(lock)  # releases the lock


def cache_folder(dispatcher) -> str:
    """The folder numba caches ``dispatcher``'s machine code in (its cache's own record of it)."""
    return str(getattr(getattr(dispatcher, "_cache", None), "_cache_path", "numba's cache folder"))


def solid_angle_terms(ax, ay, az, bx, by, bz, cx, cy, cz):
    """(y, x) such that half the signed solid angle of the triangle a, b, c seen from the origin is
    ``atan2(y, x)`` (Van Oosterom and Strackee 1983). The one copy of this formula: the compiled loops call
    it on scalars (float), :func:`half_solid_angle` on arrays of any shape (numpy)."""
    la = np.sqrt(ax * ax + ay * ay + az * az)
    lb = np.sqrt(bx * bx + by * by + bz * bz)
    lc = np.sqrt(cx * cx + cy * cy + cz * cz)
    det = ax * (by * cz - bz * cy) + ay * (bz * cx - bx * cz) + az * (bx * cy - by * cx)
    dots = (
        la * lb * lc
        + (ax * bx + ay * by + az * bz) * lc
        + (bx * cx + by * cy + bz * cz) * la
        + (cx * ax + cy * ay + cz * az) * lb
    )
    return det, dots


def half_solid_angle(ax, ay, az, bx, by, bz, cx, cy, cz):
    """Half the signed solid angle of the triangle with corners a, b, c seen from the origin (arrays)."""
    det, dots = solid_angle_terms(ax, ay, az, bx, by, bz, cx, cy, cz)
    return np.arctan2(det, dots)


def solid_angle_terms_into(corners, first, last, px, py, pz, xs, ys, count):  # compiled by numba
    """Write the terms (:func:`solid_angle_terms`) of triangles first:last of corners (9, F), seen from
    (px, py, pz), to xs[count:], ys[count:]; return the new count. A point on a corner or an edge has
    terms (0, 0), written (1, 0): angle 0, and a neutral factor for :func:`angle_sum`."""
    for t in range(first, last):
        y, x = solid_angle_terms(
            corners[0, t] - px,
            corners[1, t] - py,
            corners[2, t] - pz,
            corners[3, t] - px,
            corners[4, t] - py,
            corners[5, t] - pz,
            corners[6, t] - px,
            corners[7, t] - py,
            corners[8, t] - pz,
        )
        k = count + t - first
        xs[k] = 1.0 if x == 0.0 and y == 0.0 else x
        ys[k] = y
    return count + last - first


def angle_sum(xs, ys, count):  # compiled by numba
    """Sum of atan2(ys[i], xs[i]) over i < count: one atan2 for the runs of eight, one for each of the rest.

    The angles of complex numbers add as the numbers multiply: eight at a time are multiplied
    (:func:`product_turns`, which counts the turns the argument's range loses), each product, scaled to
    |x| + |y| = 1, into a running product (scaled again), and that product's angle plus the turns is their
    sum, to rounding. Eight whose product lies beyond float range add their eight atan2 instead.
    """
    total, turns, px, py = 0.0, 0.0, 1.0, 0.0
    full = count - count % 8
    for b in range(0, full, 8):
        x01, y01, t01 = product_turns(xs[b], ys[b], xs[b + 1], ys[b + 1])
        x23, y23, t23 = product_turns(xs[b + 2], ys[b + 2], xs[b + 3], ys[b + 3])
        x45, y45, t45 = product_turns(xs[b + 4], ys[b + 4], xs[b + 5], ys[b + 5])
        x67, y67, t67 = product_turns(xs[b + 6], ys[b + 6], xs[b + 7], ys[b + 7])
        x03, y03, t03 = product_turns(x01, y01, x23, y23)
        x47, y47, t47 = product_turns(x45, y45, x67, y67)
        x, y, t07 = product_turns(x03, y03, x47, y47)
        size = abs(x) + abs(y)
        if 1e-250 < size < 1e250:
            px, py, t = product_turns(px, py, x / size, y / size)
            size = abs(px) + abs(py)
            px, py = px / size, py / size
            turns += t01 + t23 + t45 + t67 + t03 + t47 + t07 + t
        else:
            for i in range(b, b + 8):
                total += math.atan2(ys[i], xs[i])
    for i in range(full, count):
        total += math.atan2(ys[i], xs[i])
    return total + math.atan2(py, px) + 2.0 * math.pi * turns


def product_turns(ux, uy, vx, vy):  # compiled by numba
    """(x, y, turns): the product w = x + iy of u and v, and arg u + arg v = arg w + 2π turns (a float).

    Arguments are atan2's, in [-π, π], the sign of y (a zero's too) saying which half: the sum leaves the
    range upward when both lie in the upper half and w in the lower, downward in the opposite case.
    """
    wx, wy = ux * vx - uy * vy, ux * vy + uy * vx
    u, v, w = math.copysign(1.0, uy), math.copysign(1.0, vy), math.copysign(1.0, wy)  # +1 upper, -1 lower
    return wx, wy, ((1 + u) * (1 + v) * (1 - w) - (1 - u) * (1 - v) * (1 + w)) / 8  # no branch to mispredict


def bounding_sphere(points, first, last):  # compiled by numba
    """(x, y, z, radius): the centre and half diagonal of the bounding box of points[first:last]."""
    lx = hx = points[first, 0]
    ly = hy = points[first, 1]
    lz = hz = points[first, 2]
    for n in range(first + 1, last):
        lx, hx = min(lx, points[n, 0]), max(hx, points[n, 0])
        ly, hy = min(ly, points[n, 1]), max(hy, points[n, 1])
        lz, hz = min(lz, points[n, 2]), max(hz, points[n, 2])
    radius = math.sqrt((hx - lx) ** 2 + (hy - ly) ** 2 + (hz - lz) ** 2) / 2
    return (lx + hx) / 2, (ly + hy) / 2, (lz + hz) / 2, radius


def far_from_cell(moments, far_beyond, g, bx, by, bz, radius):  # compiled by numba
    """Whether group g (centre moments[g, :3]) lies farther than far_beyond[g] from every point within
    radius of (bx, by, bz), so that its triangles count by their far field at each of them."""
    dx, dy, dz = moments[g, 0] - bx, moments[g, 1] - by, moments[g, 2] - bz
    return math.sqrt(dx * dx + dy * dy + dz * dz) - radius > far_beyond[g]


def far_field_sum(far_rows, count, px, py, pz):  # compiled by numba
    """The solid angle of the first count far groups seen from p = (px, py, pz), to second order.

    far_rows : (15, G), each group's moments (:func:`group_moments_loop`) as a column. With r = c - p, a
    group contributes (N·r + tr C - 3 rᵀCr / |r|²) / |r|³: its dipole and the next term of the expansion
    of each triangle's A_t·(x - p)/|x - p|³ about c (after Barill et al. 2018).
    """
    total = 0.0
    for i in range(count):
        rx, ry, rz = far_rows[0, i] - px, far_rows[1, i] - py, far_rows[2, i] - pz
        d2 = rx * rx + ry * ry + rz * rz
        dipole = rx * far_rows[3, i] + ry * far_rows[4, i] + rz * far_rows[5, i]
        trace = far_rows[6, i] + far_rows[10, i] + far_rows[14, i]
        crx = far_rows[6, i] * rx + far_rows[7, i] * ry + far_rows[8, i] * rz
        cry = far_rows[9, i] * rx + far_rows[10, i] * ry + far_rows[11, i] * rz
        crz = far_rows[12, i] * rx + far_rows[13, i] * ry + far_rows[14, i] * rz
        total += (dipole + trace - 3.0 * (rx * crx + ry * cry + rz * crz) / d2) / (d2 * math.sqrt(d2))
    return total


def keep_far(far_rows, count, moments, g):  # compiled by numba
    """Append group g's moments (G, 15) to far_rows as a column (:func:`far_field_sum`); return count + 1."""
    for row in range(15):
        far_rows[row, count] = moments[g, row]
    return count + 1


def overlap_loop(triangles, resolution, surface, touched):  # compiled by numba: scalar code on purpose
    """Mark surface (open-box overlap) and touched (closed-box contact) voxels of each triangle in place.

    triangles : (F, 3, 3) float64; surface, touched : (R, R, R) bool. The same rules as
    :func:`voxgan.ingest.overlap.overlap_masks_numpy`: the closed index range, the one-axis shortcut for
    triangles off the grid planes, then the separating-axis test with strict (open) and non-strict
    (closed) bounds. The test runs only where the triangle can reach: in each x slab of its range, on
    the y and z that its part in the slab spans (:func:`slab_extents`), and in each z column on the
    voxels that its plane meets (a plane steep in z) or that its part in the column's y slab spans (a
    plane not steep); a slanted sliver across the grid costs its length, not its bounding box.
    """
    r = resolution
    lo = np.empty(3, np.int64)
    hi = np.empty(3, np.int64)
    rel = np.empty((3, 3))
    edge = np.empty((3, 3))
    extent, column = np.empty(4), np.empty(4)
    corner_low, corner_high, edge_radius = np.empty(3), np.empty(3), np.empty((3, 3))
    for t in range(triangles.shape[0]):
        inside_grid, generic, many = True, True, 0
        for a in range(3):
            low = min(triangles[t, 0, a], triangles[t, 1, a], triangles[t, 2, a])
            high = max(triangles[t, 0, a], triangles[t, 1, a], triangles[t, 2, a])
            first, last = math.ceil(low) - 1.0, math.floor(high)
            if last < 0 or first > r - 1:
                inside_grid = False
                break
            if math.ceil(low) == low or math.floor(high) == high:
                generic = False
            if last > first:
                many += 1
            lo[a], hi[a] = int(max(first, 0.0)), int(min(last, r - 1.0))
        if not inside_grid:
            continue
        if generic and many <= 1:
            for i in range(lo[0], hi[0] + 1):
                for j in range(lo[1], hi[1] + 1):
                    for k in range(lo[2], hi[2] + 1):
                        surface[i, j, k] = True
                        touched[i, j, k] = True
            continue
        for m in range(3):
            for a in range(3):
                edge[m, a] = triangles[t, (m + 1) % 3, a] - triangles[t, m, a]
        nx = edge[0, 1] * edge[1, 2] - edge[0, 2] * edge[1, 1]
        ny = edge[0, 2] * edge[1, 0] - edge[0, 0] * edge[1, 2]
        nz = edge[0, 0] * edge[1, 1] - edge[0, 1] * edge[1, 0]
        normal_radius = 0.5 * (abs(nx) + abs(ny) + abs(nz))
        for a in range(3):
            corner_low[a] = min(triangles[t, 0, a], triangles[t, 1, a], triangles[t, 2, a])
            corner_high[a] = max(triangles[t, 0, a], triangles[t, 1, a], triangles[t, 2, a])
            for m in range(3):
                edge_radius[m, a] = 0.5 * (abs(edge[m, (a + 1) % 3]) + abs(edge[m, (a + 2) % 3]))
        offset = nx * triangles[t, 0, 0] + ny * triangles[t, 0, 1] + nz * triangles[t, 0, 2]
        steep = nz != 0 and 4 * abs(nz) >= abs(nx) + abs(ny)  # the plane meets at most 3 voxels of a z column
        spread = 0.5 * (abs(nx) + abs(ny)) / abs(nz) + SLACK if steep else 0.0
        for i in range(lo[0], hi[0] + 1):
            slab_extents(triangles, t, 0, i, extent)  # y and z of the triangle within x in [i, i + 1]
            for j in range(
                max(int(math.ceil(extent[0] - SLACK)) - 1, lo[1]),
                min(int(math.floor(extent[1] + SLACK)), hi[1]) + 1,
            ):
                low, high = extent[2], extent[3]
                if not steep:  # and the z of the triangle within y in [j, j + 1]
                    slab_extents(triangles, t, 1, j, column)
                    low, high = max(low, column[0]), min(high, column[1])
                first = max(int(math.ceil(low - SLACK)) - 1, lo[2])
                last = min(int(math.floor(high + SLACK)), hi[2])
                if steep:  # the voxels of the column that the triangle's plane meets
                    middle = (offset - nx * (i + 0.5) - ny * (j + 0.5)) / nz
                    first = max(int(math.ceil(middle - spread)) - 1, first)
                    last = min(int(math.floor(middle + spread)), last)
                for k in range(first, last + 1):
                    open_apart = closed_apart = False
                    for a in range(3):  # min(corner - centre) is min(corner) - centre: rounding is monotonic
                        centre = (i, j, k)[a] + 0.5
                        low, high = corner_low[a] - centre, corner_high[a] - centre
                        open_apart |= low >= 0.5 or high <= -0.5
                        closed_apart |= low > 0.5 or high < -0.5
                    for m in range(3):
                        rel[m, 0] = triangles[t, m, 0] - (i + 0.5)
                        rel[m, 1] = triangles[t, m, 1] - (j + 0.5)
                        rel[m, 2] = triangles[t, m, 2] - (k + 0.5)
                    along = rel[0, 0] * nx + rel[0, 1] * ny + rel[0, 2] * nz
                    closed_apart |= abs(along) > normal_radius
                    open_apart |= normal_radius > 0 and abs(along) >= normal_radius
                    for m in range(3):  # edge m × unit axis u: a point v projects to (v × edge)_u
                        if closed_apart:
                            break
                        o = (m + 2) % 3
                        for u in range(3):
                            b, c = (u + 1) % 3, (u + 2) % 3
                            p1 = rel[m, b] * edge[m, c] - rel[m, c] * edge[m, b]
                            p2 = rel[o, b] * edge[m, c] - rel[o, c] * edge[m, b]
                            radius = edge_radius[m, u]
                            low, high = min(p1, p2), max(p1, p2)
                            closed_apart |= low > radius or high < -radius
                            open_apart |= radius > 0 and (low >= radius or high <= -radius)
                    if not closed_apart:
                        touched[i, j, k] = True
                        if not open_apart:
                            surface[i, j, k] = True


def slab_extents(triangles, t, axis, i, extent):  # compiled by numba
    """Write to extent the smallest and largest coordinate along the next axis, then the one after
    (cyclically: y, z for x; z, x for y), of triangle t within the slab i <= coordinate <= i + 1 along
    axis: over its corners in the slab and the points where its edges cross the slab's two planes."""
    a, b = (axis + 1) % 3, (axis + 2) % 3
    extent[0] = extent[2] = math.inf
    extent[1] = extent[3] = -math.inf
    for m in range(3):
        x, y, z = triangles[t, m, axis], triangles[t, m, a], triangles[t, m, b]
        if i <= x <= i + 1:
            extent[0], extent[1] = min(extent[0], y), max(extent[1], y)
            extent[2], extent[3] = min(extent[2], z), max(extent[3], z)
        n = (m + 1) % 3
        x2 = triangles[t, n, axis]
        for plane in (i, i + 1):
            if (x - plane) * (x2 - plane) < 0:  # the edge crosses the plane
                f = (plane - x) / (x2 - x)
                y2 = y + f * (triangles[t, n, a] - y)
                z2 = z + f * (triangles[t, n, b] - z)
                extent[0], extent[1] = min(extent[0], y2), max(extent[1], y2)
                extent[2], extent[3] = min(extent[2], z2), max(extent[3], z2)


def edge_side(x0, y0, x1, y1, px, py):
    """Which side of the directed edge (x0, y0) -> (x1, y1) the point (px + ε, py + ε²) lies on.

    ε is infinitesimal (simulation of simplicity): +1 left, -1 right, 0 only for an edge of zero length,
    so a point exactly on an edge or a corner still falls on one side. The value is computed from the
    endpoints in one canonical order and negated for the other, so the two triangles sharing an edge
    always get exactly opposite answers. Works on floats (compiled) and on arrays (numpy) alike.
    """
    flip = (x1 < x0) | ((x1 == x0) & (y1 < y0))
    forward = (x1 - x0) * (py - y0) - (y1 - y0) * (px - x0)
    backward = (x0 - x1) * (py - y1) - (y0 - y1) * (px - x1)
    first = forward * (1 - flip) + backward * flip  # the canonical edge's value; exact: one term is 0
    tie_x = (y0 - y1) * (1 - 2 * flip)  # its derivative along px, then along py
    tie_y = (x1 - x0) * (1 - 2 * flip)
    side = sign(first)
    side = side + (side == 0) * sign(tie_x)
    side = side + (side == 0) * sign(tie_y)
    return side * (1 - 2 * flip)


def sign(value):
    """-1, 0 or +1 as an int, for a float or an array."""
    return (value > 0) * 1 - (value < 0) * 1


def column_crossing_loop(triangles, resolution, counts):  # compiled by numba
    """Signed crossings of the triangles with the grid's columns, added to counts in place.

    triangles : (F, 3, 3) float64; counts : (R, R, R) int32. Column (i, j) is the line x = i + 0.5,
    y = j + 0.5 (nudged by :func:`edge_side`'s ε, so every crossing counts exactly once); a crossing
    at height z adds ±1 (+1 where the triangle runs counter-clockwise seen from +z) to the highest
    voxel whose centre lies below z. Summed from the top down, counts become the signed crossings of a
    +z ray from each voxel centre: a closed mesh's winding number there.
    """
    r = resolution
    for t in range(triangles.shape[0]):
        x0, y0, z0 = triangles[t, 0, 0], triangles[t, 0, 1], triangles[t, 0, 2]
        x1, y1, z1 = triangles[t, 1, 0], triangles[t, 1, 1], triangles[t, 1, 2]
        x2, y2, z2 = triangles[t, 2, 0], triangles[t, 2, 1], triangles[t, 2, 2]
        i_first = max(math.ceil(min(x0, x1, x2) - 0.5), 0)
        i_last = min(math.floor(max(x0, x1, x2) - 0.5), r - 1)
        j_first = max(math.ceil(min(y0, y1, y2) - 0.5), 0)
        j_last = min(math.floor(max(y0, y1, y2) - 0.5), r - 1)
        for i in range(i_first, i_last + 1):
            px = i + 0.5
            for j in range(j_first, j_last + 1):
                py = j + 0.5
                s0 = edge_side(x0, y0, x1, y1, px, py)
                if s0 == 0 or edge_side(x1, y1, x2, y2, px, py) != s0:
                    continue
                if edge_side(x2, y2, x0, y0, px, py) != s0:
                    continue
                d0 = (x1 - x0) * (py - y0) - (y1 - y0) * (px - x0)  # weights of corners 2, 0, 1
                d1 = (x2 - x1) * (py - y1) - (y2 - y1) * (px - x1)
                d2 = (x0 - x2) * (py - y2) - (y0 - y2) * (px - x2)
                area = d0 + d1 + d2
                if area == 0.0:
                    continue
                below = min(max(math.ceil((d0 * z2 + d1 * z0 + d2 * z1) / area - 0.5), 0), r)
                if below > 0:
                    counts[i, j, below - 1] += s0


def column_inside_loop(counts, skip, inside):  # compiled by numba
    """Mark, in place, the voxels whose +z ray crosses the surface a nonzero signed number of times.

    counts : (R, R, R) int32, crossings added by :func:`column_crossing_loop`; skip, inside : (R, R, R)
    bool. ``inside[i, j, k]`` becomes ``sum(counts[i, j, k:]) != 0 and not skip[i, j, k]``: one pass
    from the top of each column down, where numpy needs a cumulative sum, a comparison and a mask.
    """
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            total = 0
            for k in range(counts.shape[2] - 1, -1, -1):
                total += counts[i, j, k]
                inside[i, j, k] = total != 0 and not skip[i, j, k]


def blocks_near_loop(voxels, first, last, near):  # compiled by numba
    """Mark, in place, the blocks near each listed voxel.

    voxels : (N, 3) int64 voxel indices; first, last : (R,) int64, the first and last block whose grown
    span holds a voxel index (the same along every axis); near : (n, n, n) bool.
    """
    for v in range(voxels.shape[0]):
        x, y, z = voxels[v, 0], voxels[v, 1], voxels[v, 2]
        for a in range(first[x], last[x] + 1):
            for b in range(first[y], last[y] + 1):
                for c in range(first[z], last[z] + 1):
                    near[a, b, c] = True


def blocks_holding_loop(voxels, block_of, holding):  # compiled by numba
    """Mark, in place, the blocks that hold a True voxel: one pass over the grid.

    voxels : (R, R, R) bool; block_of : (R,) int64, the block of each voxel index (the same along every
    axis); holding : (n, n, n) bool.
    """
    for i in range(voxels.shape[0]):
        a = block_of[i]
        for j in range(voxels.shape[1]):
            b = block_of[j]
            for k in range(voxels.shape[2]):
                if voxels[i, j, k]:
                    holding[a, b, block_of[k]] = True


def settle_loop(lattice, sampled, eligible, floor, base, inside, undecided):  # compiled by numba
    """Decide, in place, each undecided voxel whose w, interpolated in a block, is a margin from base ± 0.5.

    lattice : (L,) int64 voxel indices; sampled : (L, L, L) float64, w at the lattice's points; eligible :
    (L-1, L-1, L-1) bool, the blocks to visit; floor : the smallest margin; base : (R, R, R) int32; inside,
    undecided : (R, R, R) bool. Block (a, b, c) spans voxels lattice[a]..lattice[a+1] (both ends) along x,
    and so on; its margin is the spread of its eight corner samples, at least ``floor``, as float32: the
    same rule as :func:`voxgan.ingest.voxelize.settle_numpy` with
    :func:`voxgan.ingest.voxelize.block_margins`.
    """
    n = lattice.shape[0] - 1
    for a in range(n):
        for b in range(n):
            for c in range(n):
                if not eligible[a, b, c]:
                    continue
                low = high = sampled[a, b, c]
                for corner in range(1, 8):
                    value = sampled[a + (corner >> 2), b + ((corner >> 1) & 1), c + (corner & 1)]
                    low, high = min(low, value), max(high, value)
                margin = np.float64(np.float32(max(high - low, floor)))
                for i in range(lattice[a], lattice[a + 1] + 1):
                    tx = (i - lattice[a]) / (lattice[a + 1] - lattice[a])
                    for j in range(lattice[b], lattice[b + 1] + 1):
                        ty = (j - lattice[b]) / (lattice[b + 1] - lattice[b])
                        low_z, high_z = bilinear(sampled, a, b, c, tx, ty)  # the column's two ends
                        for k in range(lattice[c], lattice[c + 1] + 1):
                            if not undecided[i, j, k]:
                                continue
                            tz = (k - lattice[c]) / (lattice[c + 1] - lattice[c])
                            w = low_z * (1 - tz) + high_z * tz
                            below, above = base[i, j, k] - 0.5, base[i, j, k] + 0.5
                            if w - margin > below and w + margin < above:
                                undecided[i, j, k] = False
                            elif w + margin <= below or w - margin >= above:
                                inside[i, j, k] = True
                                undecided[i, j, k] = False


def bilinear(sampled, a, b, c, tx, ty):  # compiled by numba
    """sampled (L, L, L) interpolated in the cell from (a, b, c) at fractions (tx, ty), on its two z faces:
    along x, then y, each as ``low * (1 - t) + high * t`` (exact at t = 0 and 1), like the numpy path; then
    ``low_z * (1 - tz) + high_z * tz`` is the trilinear value at tz."""
    c00 = sampled[a, b, c] * (1 - tx) + sampled[a + 1, b, c] * tx
    c01 = sampled[a, b, c + 1] * (1 - tx) + sampled[a + 1, b, c + 1] * tx
    c10 = sampled[a, b + 1, c] * (1 - tx) + sampled[a + 1, b + 1, c] * tx
    c11 = sampled[a, b + 1, c + 1] * (1 - tx) + sampled[a + 1, b + 1, c + 1] * tx
    return c00 * (1 - ty) + c10 * ty, c01 * (1 - ty) + c11 * ty


def two_level_winding_loop(
    points,
    cell_starts,
    corners,
    large_starts,
    large_ends,
    large_moments,
    large_far,
    starts,
    ends,
    moments,
    far_beyond,
    result,
):  # compiled by numba
    """The clustered winding-number sum (:mod:`voxgan.ingest.winding`); writes (P,) winding numbers to result.

    points : (P, 3), sorted into cells: cell c holds points cell_starts[c]:cell_starts[c + 1]. corners :
    (9, F), triangle t's corners a, b, c as corners[:, t] = (ax, ay, az, bx, ..., cz). Large group g holds
    small groups large_starts[g]:large_ends[g]; small group h holds triangles starts[h]:ends[h]. Each
    group has its moments (:func:`group_moments_loop`) and the distance beyond which it counts as far. A
    cell's points share the decisions: a group far from every one of them counts by its far field
    (:func:`far_field_sum`), the triangles of the others are gathered once and summed exactly at each point
    (:func:`angle_sum`), so no point counts by its far field a group it is near. In a cell of many points
    (``LOCAL_POINTS``) the large groups beyond ``LOCAL_RATIO`` times its radius count together by the
    quadratic their far field makes about the cell (:func:`local_quadratic`): ten sums, not one a point.
    """
    count = corners.shape[1]
    near, xs, ys = np.empty((9, count)), np.empty(count), np.empty(count)
    far_rows = np.empty((15, large_starts.shape[0] + starts.shape[0]))
    distant_rows = np.empty((15, large_starts.shape[0] + starts.shape[0]))
    for c in range(cell_starts.shape[0] - 1):
        first, last = cell_starts[c], cell_starts[c + 1]
        bx, by, bz, radius = bounding_sphere(points, first, last)
        local = last - first >= LOCAL_POINTS  # distant groups by their field's quadratic about the cell
        distant = LOCAL_RATIO * max(radius, 0.5)
        far_count, distant_count, near_count = 0, 0, 0
        for g in range(large_starts.shape[0]):
            if far_from_cell(large_moments, large_far, g, bx, by, bz, radius):
                dx, dy, dz = large_moments[g, 0] - bx, large_moments[g, 1] - by, large_moments[g, 2] - bz
                if local and dx * dx + dy * dy + dz * dz > distant * distant:
                    distant_count = keep_far(distant_rows, distant_count, large_moments, g)
                else:
                    far_count = keep_far(far_rows, far_count, large_moments, g)
                continue
            for h in range(large_starts[g], large_ends[g]):
                if far_from_cell(moments, far_beyond, h, bx, by, bz, radius):
                    far_count = keep_far(far_rows, far_count, moments, h)
                    continue
                for t in range(starts[h], ends[h]):
                    for row in range(9):
                        near[row, near_count] = corners[row, t]
                    near_count += 1
        quadratic = local_quadratic(distant_rows, distant_count, bx, by, bz, max(radius, 0.5))
        for n in range(first, last):
            px, py, pz = points[n, 0], points[n, 1], points[n, 2]
            solid = far_field_sum(far_rows, far_count, px, py, pz)
            if distant_count:
                solid += quadratic_at(quadratic, px - bx, py - by, pz - bz)
            solid_angle_terms_into(near, 0, near_count, px, py, pz, xs, ys, 0)
            result[n] = (solid + 2.0 * angle_sum(xs, ys, near_count)) / (4.0 * math.pi)


def local_quadratic(far_rows, count, bx, by, bz, step):  # compiled by numba
    """The far field of the first count groups of far_rows (:func:`far_field_sum`) about b = (bx, by, bz)
    as a quadratic, from ten samples a step apart: (value, gradient (3), Hessian's xx yy zz xy xz yz)."""
    at = far_field_sum(far_rows, count, bx, by, bz)
    xp = far_field_sum(far_rows, count, bx + step, by, bz)
    xm = far_field_sum(far_rows, count, bx - step, by, bz)
    yp = far_field_sum(far_rows, count, bx, by + step, bz)
    ym = far_field_sum(far_rows, count, bx, by - step, bz)
    zp = far_field_sum(far_rows, count, bx, by, bz + step)
    zm = far_field_sum(far_rows, count, bx, by, bz - step)
    xy = far_field_sum(far_rows, count, bx + step, by + step, bz)
    xz = far_field_sum(far_rows, count, bx + step, by, bz + step)
    yz = far_field_sum(far_rows, count, bx, by + step, bz + step)
    gx, gy, gz = (xp - xm) / (2 * step), (yp - ym) / (2 * step), (zp - zm) / (2 * step)
    hxx, hyy, hzz = (xp - 2 * at + xm) / step**2, (yp - 2 * at + ym) / step**2, (zp - 2 * at + zm) / step**2
    hxy = (xy - at - step * (gx + gy)) / step**2 - (hxx + hyy) / 2
    hxz = (xz - at - step * (gx + gz)) / step**2 - (hxx + hzz) / 2
    hyz = (yz - at - step * (gy + gz)) / step**2 - (hyy + hzz) / 2
    return at, gx, gy, gz, hxx, hyy, hzz, hxy, hxz, hyz


def quadratic_at(q, dx, dy, dz):  # compiled by numba
    """The quadratic of :func:`local_quadratic` at an offset (dx, dy, dz) from its centre."""
    at, gx, gy, gz, hxx, hyy, hzz, hxy, hxz, hyz = q
    squares = 0.5 * (hxx * dx * dx + hyy * dy * dy + hzz * dz * dz)
    return at + gx * dx + gy * dy + gz * dz + squares + hxy * dx * dy + hxz * dx * dz + hyz * dy * dz


def group_moments_loop(triangles, starts, ends, moments, radii):  # compiled by numba
    """Each group's far-field moments and radius, in place.

    triangles : (F, 3, 3); group g is triangles[starts[g]:ends[g]]. moments : (G, 15) gets, for each group,
    its area-weighted centre c (0-2), its vector area N = Σ A_t (3-5) and its second moment C = Σ A_t ⊗
    (x_t - c) (6-14, row-major; A_t a triangle's vector area, x_t its centroid); radii : (G,) the largest
    distance from c to a corner.
    """
    for g in range(starts.shape[0]):
        sx = sy = sz = nx = ny = nz = total = 0.0
        for t in range(starts[g], ends[g]):
            ax, ay, az = vector_area(triangles, t)
            area = math.sqrt(ax * ax + ay * ay + az * az) + 1e-300
            nx += ax
            ny += ay
            nz += az
            total += area
            sx += area * (triangles[t, 0, 0] + triangles[t, 1, 0] + triangles[t, 2, 0]) / 3.0
            sy += area * (triangles[t, 0, 1] + triangles[t, 1, 1] + triangles[t, 2, 1]) / 3.0
            sz += area * (triangles[t, 0, 2] + triangles[t, 1, 2] + triangles[t, 2, 2]) / 3.0
        centre = (sx / total, sy / total, sz / total)
        moments[g, :] = 0.0
        moments[g, 0], moments[g, 1], moments[g, 2] = centre
        moments[g, 3], moments[g, 4], moments[g, 5] = nx, ny, nz
        radius = 0.0
        for t in range(starts[g], ends[g]):
            area_vector = vector_area(triangles, t)
            for j in range(3):
                offset = (triangles[t, 0, j] + triangles[t, 1, j] + triangles[t, 2, j]) / 3.0 - centre[j]
                for i in range(3):
                    moments[g, 6 + 3 * i + j] += area_vector[i] * offset
            for m in range(3):
                dx = triangles[t, m, 0] - centre[0]
                dy = triangles[t, m, 1] - centre[1]
                dz = triangles[t, m, 2] - centre[2]
                radius = max(radius, math.sqrt(dx * dx + dy * dy + dz * dz))
        radii[g] = radius


def vector_area(triangles, t):  # compiled by numba
    """Half the cross product of triangle t's edges: its area times its unit normal, (x, y, z)."""
    ux = triangles[t, 1, 0] - triangles[t, 0, 0]
    uy = triangles[t, 1, 1] - triangles[t, 0, 1]
    uz = triangles[t, 1, 2] - triangles[t, 0, 2]
    vx = triangles[t, 2, 0] - triangles[t, 0, 0]
    vy = triangles[t, 2, 1] - triangles[t, 0, 1]
    vz = triangles[t, 2, 2] - triangles[t, 0, 2]
    return 0.5 * (uy * vz - uz * vy), 0.5 * (uz * vx - ux * vz), 0.5 * (ux * vy - uy * vx)


def vertex_parts_loop(faces, part_of_vertex):  # compiled by numba
    """Union-find over the faces' edges; writes compact part labels to part_of_vertex, returns the count.

    faces : (F, 3) int64; part_of_vertex : (V,) int64 with V > faces.max().
    """
    parent = np.arange(part_of_vertex.shape[0])
    for f in range(faces.shape[0]):
        for m in (1, 2):
            a, b = faces[f, 0], faces[f, m]
            while parent[a] != a:
                parent[a] = parent[parent[a]]
                a = parent[a]
            while parent[b] != b:
                parent[b] = parent[parent[b]]
                b = parent[b]
            if a != b:
                parent[max(a, b)] = min(a, b)
    parts = 0
    for v in range(parent.shape[0]):  # a root is its own lowest vertex, met before its other vertices
        root = v
        while parent[root] != root:
            root = parent[root]
        if root == v:
            part_of_vertex[v] = parts
            parts += 1
        else:
            part_of_vertex[v] = part_of_vertex[root]
    return parts


MIX_A = np.uint64(0xBF58476D1CE4E5B9)  # the multipliers of splitmix64's finaliser
MIX_B = np.uint64(0x94D049BB133111EB)


def mixed(key, value):  # compiled by numba
    """A hash of ``key`` and ``value`` (uint64) together: splitmix64's finaliser of their xor, so that every
    bit of each moves every bit of the result (float bit patterns differ in few bits)."""
    z = key ^ value
    z = (z ^ (z >> np.uint64(30))) * MIX_A
    z = (z ^ (z >> np.uint64(27))) * MIX_B
    return z ^ (z >> np.uint64(31))


def table_size(count):  # compiled by numba
    """(size, shift): a power of two at least twice ``count``, and 64 less its bits (a hash's top bits)."""
    size, bits = 2, 1
    while size < 2 * count:
        size *= 2
        bits += 1
    return size, np.uint64(64 - bits)


def unmatched_edges_loop(faces, unmatched):  # compiled by numba
    """Each use of a directed edge (a, b) beyond the uses of (b, a).

    faces : (F, 3) int64, indices from 0; unmatched : (3F, 2) int64, written from row 0  ->  the rows
    written, by first corner. The edges are listed by their first corner (a counting sort), each list
    sorted by second corner, so an edge's uses are a run in one list and its reverse's a run found by
    bisection in another: O(E log degree), whatever the mesh.
    """
    edges = 3 * faces.shape[0]
    vertices = 0
    for f in range(faces.shape[0]):
        for m in range(3):
            vertices = max(vertices, faces[f, m] + 1)
    starts = np.zeros(vertices + 1, np.int64)
    for f in range(faces.shape[0]):
        for m in range(3):
            starts[faces[f, m] + 1] += 1
    for v in range(vertices):
        starts[v + 1] += starts[v]
    heads = np.empty(edges, np.int64)  # second corners of the edges out of a: heads[starts[a]:starts[a + 1]]
    filled = starts[:-1].copy()
    for f in range(faces.shape[0]):
        for m in range(3):
            a = faces[f, m]
            heads[filled[a]] = faces[f, (m + 1) % 3]
            filled[a] += 1
    for a in range(vertices):
        if starts[a + 1] - starts[a] > 16:
            heads[starts[a] : starts[a + 1]].sort()
            continue
        for n in range(starts[a] + 1, starts[a + 1]):  # an insertion sort: most lists hold about six
            head, m = heads[n], n
            while m > starts[a] and heads[m - 1] > head:
                heads[m] = heads[m - 1]
                m -= 1
            heads[m] = head
    count = 0
    for a in range(vertices):
        n = starts[a]
        while n < starts[a + 1]:
            b = heads[n]
            run = n
            while run < starts[a + 1] and heads[run] == b:
                run += 1
            reverse = 0
            if starts[b + 1] - starts[b] > 16:
                out_of_b = heads[starts[b] : starts[b + 1]]
                reverse = np.searchsorted(out_of_b, a, "right") - np.searchsorted(out_of_b, a, "left")
            else:
                for m in range(starts[b], starts[b + 1]):
                    reverse += heads[m] == a
            for _ in range(run - n - reverse):
                unmatched[count, 0], unmatched[count, 1] = a, b
                count += 1
            n = run
    return count


def weld_loop(bits, index):  # compiled by numba
    """Number equal rows of bits (N, 3) uint64 (corner positions, bit for bit) in order of first use.

    index : (N,) int64, written: row n's vertex  ->  the count of distinct rows.
    """
    size, shift = table_size(bits.shape[0])
    mask = size - 1
    first = np.full(size, -1, np.int64)  # the first row of each slot's position
    count = 0
    for n in range(bits.shape[0]):
        slot = np.int64(mixed(mixed(mixed(bits[n, 0], np.uint64(0)), bits[n, 1]), bits[n, 2]) >> shift)
        while True:
            row = first[slot]
            if row == -1:
                first[slot] = n
                index[n] = count
                count += 1
                break
            if bits[row, 0] == bits[n, 0] and bits[row, 1] == bits[n, 1] and bits[row, 2] == bits[n, 2]:
                index[n] = index[row]
                break
            slot = (slot + 1) & mask
    return count


POWERS_OF_TEN = np.array([10.0**n for n in range(23)])  # exact in float64


def decimal_loop(text, values):  # compiled by numba
    """Parse whitespace-separated plain decimals (``-12``, ``.5``, ``1.5e-3``) from text (B,) uint8 into
    values; returns how many, or -1 for anything else (the caller then uses numpy's parser).

    Correctly rounded like ``float()``: a mantissa below 2^53 times or over an exact power of ten up to
    10^22 (Clinger's fast path); other numbers return -1 too.
    """
    count, n, size = 0, 0, text.shape[0]
    while n < size:
        if text[n] <= 32:
            n += 1
            continue
        negative = text[n] == 45
        if text[n] == 45 or text[n] == 43:
            n += 1
        mantissa, digits, fraction, seen_dot = 0, 0, 0, False
        while n < size and text[n] > 32:
            c = text[n]
            if 48 <= c <= 57:
                mantissa = mantissa * 10 + (c - 48)
                digits += 1
                fraction += seen_dot
            elif c == 46 and not seen_dot:
                seen_dot = True
            else:
                break
            n += 1
        if digits == 0 or digits > 15 and mantissa >= 1 << 53:
            return -1
        exponent = 0
        if n < size and (text[n] == 101 or text[n] == 69):
            n += 1
            exponent_negative = n < size and text[n] == 45
            if n < size and (text[n] == 45 or text[n] == 43):
                n += 1
            powers = 0
            while n < size and 48 <= text[n] <= 57 and powers < 4:
                exponent = exponent * 10 + (text[n] - 48)
                powers += 1
                n += 1
            if powers == 0 or powers == 4:
                return -1
            if exponent_negative:
                exponent = -exponent
        if n < size and text[n] > 32:
            return -1
        scale = exponent - fraction
        if scale > 22 or scale < -22 or digits > 18:
            return -1
        value = mantissa * POWERS_OF_TEN[scale] if scale >= 0 else mantissa / POWERS_OF_TEN[-scale]
        values[count] = -value if negative else value
        count += 1
    return count
