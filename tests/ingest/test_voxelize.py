"""voxgan.ingest.voxelize: occupancy against the exact reference, and every kind of mesh datasets hold."""

import numpy as np
import pytest
import trimesh
from scipy import ndimage

from tests.accuracy_set import accuracy_set, box, inverted, join, to_grid
from tests.reference_voxelize import iou, reference_inside, reference_voxelize
from voxgan.errors import VoxganError
from voxgan.ingest import topology
from voxgan.ingest.kernels import compiled_kernels
from voxgan.ingest.topology import is_closed, unmatched_edges, welded_faces
from voxgan.ingest.voxelize import (
    OPEN_MARGIN,
    block_margins,
    blocks_holding,
    blocks_holding_numpy,
    blocks_near,
    blocks_near_numpy,
    blocks_spanning,
    inside_voxels,
    resample_axis_aligned,
    resample_by_points,
    resample_occupancy,
    settle_numpy,
    surface_voxels,
    voxel_list,
    voxelize,
)
from voxgan.ingest.winding import open_winding_function, winding_numbers

ACCURACY_SET = accuracy_set()
# The reference sums every triangle at every voxel centre: at 32³ and 64³ a few small meshes.
SHAPES_BY_RESOLUTION = {
    16: sorted(ACCURACY_SET),
    32: ["box", "open_box", "chair", "duplicate_faces", "thin_plate", "thin_legs_table", "mixed_parts"],
    64: ["box", "open_box", "chair", "thin_legs_table"],
}


def grid_box(low, high):
    """Box mesh with corners ``low`` and ``high`` given directly in grid coordinates."""
    low, high = np.asarray(low, float), np.asarray(high, float)
    mesh = box(high - low, (low + high) / 2)
    return mesh.vertices, mesh.faces


def block(resolution, low, high):
    """(R, R, R) bool, True on voxels low..high-1 along each axis."""
    grid = np.zeros((resolution,) * 3, dtype=bool)
    grid[low[0] : high[0], low[1] : high[1], low[2] : high[2]] = True
    return grid


@pytest.mark.parametrize("resolution", sorted(SHAPES_BY_RESOLUTION))
def test_the_accuracy_set_matches_the_exact_reference(resolution):
    scores = {}
    for name in SHAPES_BY_RESOLUTION[resolution]:
        vertices, faces = ACCURACY_SET[name]
        grid = to_grid(vertices, resolution)
        ours = voxelize(grid, faces, resolution)
        scores[name] = iou(ours, reference_voxelize(grid, faces, resolution))
    assert np.mean(list(scores.values())) >= 0.98, scores
    assert min(scores.values()) >= 0.9, scores


def test_surface_mode_matches_the_reference_surface():
    for name in ["sphere", "torus", "open_box", "thin_legs_table", "box_aligned"]:
        vertices, faces = ACCURACY_SET[name]
        grid = to_grid(vertices, 16)
        ours = voxelize(grid, faces, 16, mode="surface")
        assert np.array_equal(ours, reference_voxelize(grid, faces, 16, mode="surface")), name


def test_inside_voxels_matches_the_reference_winding_number():
    vertices, faces = ACCURACY_SET["torus"]
    grid = to_grid(vertices, 16)
    assert np.array_equal(inside_voxels(grid, faces, 16), reference_inside(grid, faces, 16))


def test_a_face_on_a_grid_plane_marks_no_extra_layer():
    vertices, faces = grid_box((4, 4, 4), (12, 12, 12))
    assert np.array_equal(voxelize(vertices, faces, 16), block(16, (4, 4, 4), (12, 12, 12)))
    flat = np.array([[2.0, 2.0, 8.0], [13.0, 2.0, 8.0], [2.0, 13.0, 8.0]])
    assert not surface_voxels(flat, np.array([[0, 1, 2]]), 16).any()
    lifted = surface_voxels(flat + [0, 0, 0.5], np.array([[0, 1, 2]]), 16)
    assert lifted[:, :, 8].sum() > 50 and lifted.sum() == lifted[:, :, 8].sum()


def test_an_edge_along_a_grid_line_marks_only_the_voxels_it_passes_through():
    triangle = np.array([[2.0, 4.0, 4.0], [12.0, 4.0, 4.0], [2.0, 4.5, 4.5]])
    marked = surface_voxels(triangle, np.array([[0, 1, 2]]), 16)
    assert marked.sum() == 10 and marked[2:12, 4, 4].all()


def test_a_plate_and_a_leg_thinner_than_a_voxel_survive():
    plate = grid_box((4.2, 4.2, 8.3), (11.8, 11.8, 8.31))
    assert np.array_equal(voxelize(*plate, 16), block(16, (4, 4, 8), (12, 12, 9)))
    leg = grid_box((8.3, 8.3, 2.2), (8.34, 8.34, 13.7))
    assert np.array_equal(voxelize(*leg, 16), block(16, (8, 8, 2), (9, 9, 14)))
    table = to_grid(*ACCURACY_SET["thin_legs_table"][:1], 32), ACCURACY_SET["thin_legs_table"][1]
    occupancy = voxelize(*table, 32)
    legs_level = occupancy[:, :, 8]
    assert ndimage.label(legs_level)[1] == 4  # four separate legs, each still there


def test_an_open_box_is_filled():
    closed = voxelize(*grid_box((3.3, 3.3, 3.3), (12.7, 12.7, 12.7)), 16)
    vertices, faces = grid_box((3.3, 3.3, 3.3), (12.7, 12.7, 12.7))
    top = np.isclose(vertices[faces][:, :, 2], 12.7).all(axis=1)
    open_box = voxelize(vertices, faces[~top], 16)
    assert open_box[8, 8, 8] and open_box[8, 8, 4]
    assert open_box.sum() >= 0.9 * closed.sum() and not (open_box & ~closed).any()


def test_an_inverted_mesh_fills_like_the_outward_one():
    vertices, faces = grid_box((3.3, 4.1, 5.7), (12.7, 11.2, 10.4))
    assert np.array_equal(voxelize(vertices, faces[:, ::-1], 16), voxelize(vertices, faces, 16))
    sphere = trimesh.creation.icosphere(subdivisions=3)
    grid = sphere.vertices * 6.3 + 8.1
    assert np.array_equal(voxelize(grid, inverted(sphere).faces, 16), voxelize(grid, sphere.faces, 16))


def test_overlapping_parts_give_the_union_of_the_parts():
    a = box((6.4, 6.4, 6.4), (6.2, 8.1, 8.1))
    b = box((6.4, 6.4, 6.4), (9.9, 8.1, 8.1))
    union = voxelize(a.vertices, a.faces, 16) | voxelize(b.vertices, b.faces, 16)
    both = join(a, b)
    assert np.array_equal(voxelize(both.vertices, both.faces, 16), union)
    one_inverted = join(a, inverted(b))
    assert np.array_equal(voxelize(one_inverted.vertices, one_inverted.faces, 16), union)


def test_duplicate_faces_change_nothing():
    vertices, faces = grid_box((3.3, 4.1, 5.7), (12.7, 11.2, 10.4))
    doubled = np.concatenate([faces, faces, faces[:5]])
    assert np.array_equal(voxelize(vertices, doubled, 16), voxelize(vertices, faces, 16))


def test_surface_mode_is_a_closed_shell_of_the_solid():
    for name in ["sphere", "torus", "chair", "mug"]:
        vertices, faces = ACCURACY_SET[name]
        grid = to_grid(vertices, 32) + 0.0137  # no face exactly on a grid plane (the chair's seat is)
        solid, shell = voxelize(grid, faces, 32), voxelize(grid, faces, 32, mode="surface")
        interior = solid & ~shell
        assert not (shell & ~solid).any() and interior.any(), name
        reach_of_outside = ndimage.binary_dilation(~solid)  # 6-connected step from any empty voxel
        assert not (reach_of_outside & interior).any(), name


def test_empty_input_gives_an_empty_grid():
    empty = voxelize(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), 16)
    assert empty.shape == (16, 16, 16) and empty.dtype == bool and not empty.any()
    assert not voxelize(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), 16, mode="surface").any()


def test_geometry_outside_the_grid_is_clipped():
    assert not voxelize(*grid_box((20.2, 3.3, 3.3), (30.7, 12.7, 12.7)), 16).any()
    partly = voxelize(*grid_box((-5.5, 3.3, 3.3), (6.5, 12.7, 12.7)), 16)
    assert np.array_equal(partly, block(16, (0, 3, 3), (7, 13, 13)))
    larger_than_grid = voxelize(*grid_box((-3.5, -3.5, -3.5), (20.5, 20.5, 20.5)), 16)
    assert larger_than_grid.all()


def test_triangles_with_nan_corners_are_left_out():
    vertices, faces = grid_box((3.3, 4.1, 5.7), (12.7, 11.2, 10.4))
    with_nan = np.concatenate([vertices, [[np.nan, 1.0, 1.0]]])
    extra = np.concatenate([faces, [[0, 1, len(vertices)]]])
    assert np.array_equal(voxelize(with_nan, extra, 16), voxelize(vertices, faces, 16))


def test_bad_arguments_raise_a_one_line_error():
    vertices, faces = grid_box((3.3, 4.1, 5.7), (12.7, 11.2, 10.4))
    with pytest.raises(VoxganError, match="mode"):
        voxelize(vertices, faces, 16, mode="hollow")
    with pytest.raises(VoxganError, match="face indices"):
        voxelize(vertices, faces + 100, 16)
    with pytest.raises(VoxganError, match="resolution"):
        voxelize(vertices, faces, 0)


def test_resample_keeps_a_grid_at_the_same_resolution():
    source = np.random.default_rng(0).random((16, 16, 16)) < 0.3
    assert np.array_equal(resample_occupancy(source, np.eye(4), 16), source)
    swap = np.eye(4)[[1, 0, 2, 3]]  # x <-> y, as binvox's axis order needs
    assert np.array_equal(resample_occupancy(source, swap, 16), source.transpose(1, 0, 2))
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = 16
    assert np.array_equal(resample_occupancy(source, flip, 16), source[::-1])


def test_resample_keeps_thin_parts_when_downsampling():
    source = np.zeros((64, 64, 64), dtype=bool)
    source[10:54, 10:54, 33] = True  # a one-voxel plate
    source[40, 40, 0:33] = True  # a one-voxel leg
    small = resample_occupancy(source, np.diag([0.25, 0.25, 0.25, 1.0]), 16)
    assert np.array_equal(small[:, :, 8], block(16, (2, 2, 0), (14, 14, 1))[:, :, 0])
    assert small[10, 10, 0:9].all() and small.sum() == 144 + 8


def test_resample_by_points_is_the_same_rule_as_the_axis_aligned_path():
    rng = np.random.default_rng(3)
    source = rng.random((12, 10, 14)) < 0.2
    for _ in range(12):  # scales on both sides of one, turns, flips, any shift
        linear = np.eye(3)[rng.permutation(3)] * rng.choice([-1, 1], 3) * rng.uniform(0.3, 2.5, 3)
        shift = 8 - linear @ [6, 5, 7] + rng.uniform(-3, 3, 3)  # the source's middle near the grid's
        aligned = resample_axis_aligned(source, linear, shift, 16)
        assert aligned.any()
        assert np.array_equal(resample_by_points(source, linear, shift, 16), aligned)


def test_resample_with_a_general_affine_upsamples_by_centres_and_keeps_a_tilted_leg_in_one_piece():
    from scipy import ndimage

    leg = np.zeros((20, 20, 20), dtype=bool)
    leg[10, 10, 2:18] = True  # one voxel thick along z
    angle = np.radians(30)
    turn = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    for scale in (0.4, 0.7, 1.3):
        affine = np.eye(4)
        affine[:3, :3] = scale * turn
        affine[:3, 3] = 16 - affine[:3, :3] @ [10.5, 10.5, 10.0]  # the leg's middle to the grid's
        grid = resample_occupancy(leg, affine, 32)
        assert ndimage.label(grid, np.ones((3, 3, 3)))[1] == 1, scale
        if scale > 1:  # every voxel's centre lies in the leg, which stays one or two voxels thick
            centres = (np.argwhere(grid) + 0.5 - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
            assert (np.floor(centres[:, :2]) == 10).all()
            assert len(np.unique(np.argwhere(grid)[:, 0])) <= 2  # across the leg, out of its plane


def test_a_double_sided_mesh_is_filled():
    vertices, faces = grid_box((3.3, 4.1, 5.7), (12.7, 11.2, 10.4))
    solid = voxelize(vertices, faces, 16)
    for double_sided in (np.concatenate([faces, faces[:, ::-1]]), np.stack([faces, faces[:, ::-1]], 1)):
        assert np.array_equal(voxelize(vertices, double_sided.reshape(-1, 3), 16), solid)
    open_faces = faces[2:]  # a box missing one side, each face written twice
    open_box = voxelize(vertices, open_faces, 16)
    assert open_box.sum() > 0.9 * solid.sum()
    twice = np.stack([open_faces, open_faces[:, ::-1]], 1).reshape(-1, 3)
    assert np.array_equal(voxelize(vertices, twice, 16), open_box)


def test_a_hollow_shape_keeps_its_cavity_empty():
    """An outward shell around an inward one is a hollow ball: the cavity stays empty, as in the reference."""
    outer, inner = trimesh.creation.icosphere(3, radius=7.0), trimesh.creation.icosphere(3, radius=4.0)
    vertices = np.vstack([outer.vertices, inner.vertices]) + 8.0
    faces = np.vstack([outer.faces, inner.faces[:, ::-1] + len(outer.vertices)])
    occupancy = voxelize(vertices, faces, 16)
    assert not occupancy[8, 8, 8] and occupancy[8, 8, 2]
    assert np.array_equal(occupancy, reference_voxelize(vertices, faces, 16))


def test_a_dense_open_mesh_matches_the_exact_winding_number_away_from_one_half():
    # 5120 faces at 16³: the two-level dipole sum and the coarse lattice of samples are both in use
    sphere = trimesh.creation.icosphere(subdivisions=4)
    keep = sphere.triangles_center @ np.array([0.3, 0.2, 0.93]) < 0.5
    grid = to_grid(sphere.vertices, 16)
    faces = sphere.faces[keep]
    centres = np.stack(np.meshgrid(*[np.arange(16) + 0.5] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    exact = np.abs(winding_numbers(centres, grid[faces])).reshape(16, 16, 16)
    clear = np.abs(exact - 0.5) > 0.03  # where neither sum may be wrong
    surface = surface_voxels(grid, faces, 16)
    ours = inside_voxels(grid, faces, 16, surface=surface)
    assert np.array_equal(ours[clear & ~surface], (exact >= 0.5)[clear & ~surface])
    assert (exact >= 0.5)[clear & ~surface].sum() > 300  # the open sphere is mostly filled
    off_surface = ~surface.reshape(-1)
    summed = open_winding_function(grid[faces], cell=2.0)(centres[off_surface])
    signed = winding_numbers(centres[off_surface], grid[faces])
    assert np.abs(summed - signed).max() < 0.02


def test_a_triangle_soup_with_shuffled_orientation_matches_the_reference():
    sphere = trimesh.creation.icosphere(subdivisions=2)
    corners = to_grid(sphere.vertices, 16)[sphere.faces]  # (F, 3, 3): no shared vertices at all
    flipped = np.random.default_rng(0).random(len(corners)) < 0.5
    corners[flipped] = corners[flipped][:, ::-1]
    vertices, faces = corners.reshape(-1, 3), np.arange(3 * len(corners)).reshape(-1, 3)
    assert iou(voxelize(vertices, faces, 16), reference_voxelize(vertices, faces, 16)) >= 0.99


def test_the_compiled_and_the_numpy_settle_decide_the_same_voxels():
    """Blocks with and without a margin, values near and far from base ± 0.5, voxels on lattice planes."""
    kernels = compiled_kernels()
    if kernels is None:
        pytest.skip("numba is not installed: only the numpy path exists")
    rng = np.random.default_rng(3)
    for resolution, stride in [(16, 2), (23, 4), (32, 8)]:
        lattice = np.unique(np.append(np.arange(0, resolution, stride), resolution - 1))
        n = len(lattice) - 1
        sampled = rng.normal(0.5, 0.6, (n + 1,) * 3)
        eligible = rng.random((n,) * 3) < 0.8
        base = rng.integers(-1, 2, (resolution,) * 3).astype(np.int32)
        undecided = rng.random((resolution,) * 3) < 0.8
        results = []
        for settle in (kernels.settle, settle_numpy):
            inside, left = np.zeros_like(undecided), undecided.copy()
            if settle is settle_numpy:
                settle(inside, left, sampled, block_margins(sampled, eligible), lattice, base)
            else:
                settle(lattice.astype(np.int64), sampled, eligible, OPEN_MARGIN, base, inside, left)
            results.append((inside, left))
        (inside_a, left_a), (inside_b, left_b) = results
        assert np.array_equal(left_a, left_b) and np.array_equal(inside_a, inside_b), resolution
        assert 0 < left_a.sum() < undecided.sum()  # some voxels decided, some not


@pytest.mark.parametrize("resolution", [16, 40, 136])
def test_blocks_near_a_surface_are_those_within_their_grown_span_in_both_paths(resolution):
    """A block takes its voxels' w from its corners only when no surface voxel lies within ``grow`` of it:
    the compiled and the numpy marking must find exactly the blocks a plain scan finds, on lattices whose
    last block is short (40 and 136 are not multiples of the stride)."""
    rng = np.random.default_rng(resolution)
    surface = rng.random((resolution,) * 3) < 0.002
    voxels = voxel_list(surface)
    kernels = compiled_kernels()
    stride = 2
    while stride <= max(2, resolution // 8):
        lattice = np.unique(np.append(np.arange(0, resolution, stride), resolution - 1))
        grow, n = stride // 2 - 1, len(lattice) - 1
        expected = np.zeros((n,) * 3, dtype=bool)
        for a, b, c in np.ndindex(n, n, n):
            span = tuple(slice(max(lattice[q] - grow, 0), lattice[q + 1] + grow + 1) for q in (a, b, c))
            expected[a, b, c] = surface[span].any()
        first, last = blocks_spanning(lattice, grow)
        for mark in [blocks_near_numpy] + ([] if kernels is None else [kernels.near]):
            near = np.zeros((n,) * 3, dtype=bool)
            mark(voxels, first, last, near)
            assert np.array_equal(near, expected), (stride, mark)
        assert np.array_equal(blocks_near(voxels, lattice, grow), expected)
        stride *= 2


def test_the_compiled_and_the_numpy_block_reductions_agree():
    """Which blocks still hold undecided voxels decides where the next lattice samples."""
    rng = np.random.default_rng(3)
    for resolution, stride in [(16, 2), (40, 4), (136, 16)]:
        voxels = rng.random((resolution,) * 3) < 0.0005
        lattice = np.unique(np.append(np.arange(0, resolution, stride), resolution - 1))
        expected = blocks_holding_numpy(voxels, lattice)
        assert expected.any() and not expected.all()
        assert np.array_equal(blocks_holding(voxels, lattice), expected)


@pytest.mark.parametrize("compiled", [True, False])
def test_symmetric_soups_weld_into_one_vertex_per_position(compiled, monkeypatch):
    """Corners mirrored through the origin differ in a few bits (signs): each position is still one vertex."""
    if not compiled:
        monkeypatch.setattr(topology, "compiled_kernels", lambda: None)
    sphere = trimesh.creation.icosphere(subdivisions=2)  # centred: every corner has its mirror images
    soup = sphere.vertices[sphere.faces]
    welded = welded_faces(soup)
    assert welded.max() + 1 == len(sphere.vertices) == len(np.unique(soup.reshape(-1, 3), axis=0))
    positions = np.zeros((welded.max() + 1, 3))
    positions[welded.reshape(-1)] = soup.reshape(-1, 3)
    assert np.array_equal(positions[welded], soup)  # one position per vertex
    assert is_closed(welded)


def test_compiled_and_numpy_unmatched_edges_agree(monkeypatch):
    """Holes, flipped faces, doubled faces, a fan around one vertex: every unmatched use of an edge, once."""
    rng = np.random.default_rng(5)
    sphere = trimesh.creation.icosphere(subdivisions=2)
    flipped = sphere.faces.copy()
    flipped[::5] = flipped[::5, ::-1]
    fan = np.stack([np.zeros(40, int), np.arange(1, 41), np.arange(2, 42)], axis=1)
    cases = {
        "holes": sphere.faces[rng.random(len(sphere.faces)) > 0.1],
        "flipped": flipped,
        "doubled": np.concatenate([sphere.faces, sphere.faces[:30]]),
        "fan": np.concatenate([fan, fan[:3], fan[5:9, ::-1]]),
        "random": rng.integers(0, 30, (400, 3)),
    }
    for name, faces in cases.items():
        compiled = unmatched_edges(faces)
        with monkeypatch.context() as patched:
            patched.setattr(topology, "compiled_kernels", lambda: None)
            expected = unmatched_edges(faces)
        assert len(expected) > 0, name
        assert sorted(map(tuple, compiled)) == sorted(map(tuple, expected)), name
    assert len(unmatched_edges(sphere.faces)) == 0
    with pytest.raises(ValueError, match="negative"):  # the compiled pass indexes by them
        unmatched_edges(np.array([[0, 1, -2]]))


def test_soups_and_meshes_split_at_seams_are_welded_closed_without_changing_a_triangle():
    torus = trimesh.creation.torus(5.0, 2.0, major_sections=24, minor_sections=12)
    vertices, faces = torus.vertices + 8.0, torus.faces
    assert is_closed(faces)
    seamed = faces.copy()  # every second face on copies of its vertices, as glTF splits seams
    seamed[1::2] += len(vertices)
    split = np.concatenate([vertices, vertices])
    soup = vertices[faces].reshape(-1, 3)
    for mesh_vertices, mesh_faces in [(split, seamed), (soup, np.arange(len(soup)).reshape(-1, 3))]:
        assert not is_closed(mesh_faces)
        welded = welded_faces(mesh_vertices[mesh_faces])
        assert is_closed(welded)
        assert welded.max() + 1 == len(vertices)  # one vertex per position, as the torus has
        assert np.array_equal(voxelize(mesh_vertices, mesh_faces, 16), voxelize(vertices, faces, 16))
