"""voxgan.results.meshing: blocks and smooth meshes are watertight, outward and round-trip through the
voxelizer, on shapes, noise and every corner configuration."""

import itertools

import numpy as np
import pytest

from tests.results.sources import assert_closed_outward, ball, synthetic_shapes
from voxgan.ingest.voxelize import surface_voxels, voxelize
from voxgan.results.meshing import blocks_mesh, smooth_mesh, volume_mesh, without_specks
from voxgan.results.metrics import piece_counts


def pinched():
    """Two voxels touching along an edge, one touching the first at a corner, and a solid block."""
    volume = np.zeros((8, 8, 8), bool)
    volume[2, 2, 2] = volume[3, 3, 2] = volume[4, 4, 3] = True
    volume[1:4, 5:7, 4:7] = True
    return volume


VOLUMES = {
    "ball": ball(),
    "pinched": pinched(),
    "shapes": synthetic_shapes(8)[0],
}


@pytest.mark.parametrize("kind", ["blocks", "smooth"])
@pytest.mark.parametrize("name", ["ball", "pinched", "shapes"])
def test_meshes_are_watertight_with_outward_normals(kind, name):
    volumes = VOLUMES[name] if name == "shapes" else [VOLUMES[name]]
    for volume in volumes:
        if volume.any():
            assert_closed_outward(volume_mesh(volume, kind))


@pytest.mark.parametrize("name", ["ball", "pinched", "shapes"])
def test_blocks_round_trip_is_exact(name):
    volumes = VOLUMES[name] if name == "shapes" else [VOLUMES[name]]
    for volume in volumes:
        vertices, faces = blocks_mesh(volume)
        assert np.array_equal(voxelize(vertices, faces, len(volume)), volume)


@pytest.mark.parametrize("name", ["ball", "pinched", "shapes"])
def test_smooth_round_trip_iou(name):
    volumes = VOLUMES[name] if name == "shapes" else [VOLUMES[name]]
    for volume in volumes:
        vertices, faces = smooth_mesh(volume)
        back = voxelize(vertices, faces, len(volume))
        assert (back & volume).sum() / (back | volume).sum() >= 0.9


def test_blocks_mesh_encloses_the_voxel_volume_in_grid_coordinates():
    volume = np.zeros((16, 16, 16), bool)
    volume[2:6, 3:8, 4:10] = True
    mesh = volume_mesh(volume, "blocks")
    assert mesh.volume == pytest.approx(volume.sum())
    assert np.allclose(mesh.bounds, [[2, 3, 4], [6, 8, 10]])


def noise(resolution, fill, seed):
    """Independent random voxels, like the samples of an untrained generator."""
    return np.random.default_rng(seed).random((resolution,) * 3) < fill


def enclosed_cavities(volume):
    """(R, R, R) bool: empty voxels cut off from the outside (through faces and edges) by occupied ones."""
    from scipy import ndimage

    regions, _ = ndimage.label(~np.pad(volume, 1), ndimage.generate_binary_structure(3, 2))
    return (regions != regions[0, 0, 0])[1:-1, 1:-1, 1:-1]


def assert_blocks_round_trip(volume):
    """Exact, but for some enclosed cavities, whose wall shares a sheet with the outer surface and fills."""
    vertices, faces = blocks_mesh(volume)
    back = voxelize(vertices, faces, len(volume))
    cavities = enclosed_cavities(volume)
    assert np.array_equal(back & volume, volume)  # nothing lost
    assert not (back & ~volume & ~cavities).any()  # no empty voxel gained outside a cavity
    if not cavities.any():
        assert np.array_equal(back, volume)


@pytest.mark.parametrize("fill", [0.2, 0.5, 0.8])
def test_blocks_mesh_of_noise_is_closed_and_round_trips(fill):
    for seed in range(3):
        volume = noise(16, fill, seed)
        mesh = volume_mesh(volume, "blocks")
        assert_closed_outward(mesh)
        assert mesh.volume == pytest.approx(volume.sum(), abs=1e-3 * len(mesh.faces))
        assert_blocks_round_trip(volume)


def test_blocks_mesh_of_noise_at_32_is_closed_and_crosses_no_empty_voxel():
    """The surface half of the round trip (voxelize's inside test takes about a minute on 32³ noise)."""
    volume = noise(32, 0.5, 7)
    mesh = volume_mesh(volume, "blocks")
    assert_closed_outward(mesh)
    assert mesh.volume == pytest.approx(volume.sum(), abs=1e-3 * len(mesh.faces))
    crossed = surface_voxels(mesh.vertices, mesh.faces, 32)
    assert crossed.any() and not (crossed & ~volume).any()


def test_blocks_mesh_of_every_corner_configuration():
    """All 255 non-empty 2×2×2 occupancies around one lattice point: edge and corner pinches included."""
    for code in range(1, 256):
        volume = np.zeros((4, 4, 4), bool)
        for bit, (x, y, z) in enumerate(itertools.product((0, 1), repeat=3)):
            volume[1 + x, 1 + y, 1 + z] = bool(code >> bit & 1)
        assert_closed_outward(volume_mesh(volume, "blocks"))
        vertices, faces = blocks_mesh(volume)
        assert np.array_equal(voxelize(vertices, faces, 4), volume), code


@pytest.mark.parametrize("middle", ["diagonal", "anti-diagonal"])
def test_blocks_mesh_splits_an_edge_whose_two_sheets_share_both_ends(middle):
    """Two voxels touching along an edge and joined at both of its ends: the edge's sides need midpoints."""
    volume = np.zeros((5, 5, 5), bool)
    volume[1:3, 1:3, 1] = volume[1:3, 1:3, 3] = True
    if middle == "diagonal":
        volume[1, 1, 2] = volume[2, 2, 2] = True
    else:
        volume[1, 2, 2] = volume[2, 1, 2] = True
    vertices, faces = blocks_mesh(volume)
    mesh = volume_mesh(volume, "blocks")
    assert_closed_outward(mesh)
    assert mesh.volume == pytest.approx(10, abs=1e-2)
    assert np.array_equal(voxelize(vertices, faces, 5), volume)
    on_edge = np.isclose(vertices[:, 2] % 1, 0.5) & np.isclose(vertices[:, :2], 2, atol=0.01).all(axis=1)
    assert on_edge.sum() == 2  # one midpoint per voxel along the shared edge


def test_without_specks_takes_out_the_small_pieces_and_nothing_else():
    """A piece under 5% of its volume's largest goes; a larger detached part, a voxel touching the shape
    only at a corner, two equal pieces and an empty volume stay as they are."""
    volumes = np.zeros((3, 16, 16, 16), bool)
    volumes[0, 2:10, 2:10, 2:10] = True  # the shape: 512 voxels
    volumes[0, 10, 10, 10] = True  # touches the shape at a corner: part of it
    volumes[0, 12:15, 12:14, 0:5] = True  # a detached part of 30 voxels (5.8% of 513): kept
    volumes[0, 12:14, 0:2, 10:15] = True  # a detached crumb of 20 voxels (3.9%): a speck
    volumes[0, 0, 15, 15] = True  # a loose voxel: a speck
    volumes[1, 1:4, 1:4, 1:4] = volumes[1, 10:13, 10:13, 10:13] = True  # two equal pieces
    before = volumes.copy()
    expected = volumes.copy()
    expected[0, 12:14, 0:2, 10:15] = expected[0, 0, 15, 15] = False
    cleaned = without_specks(volumes)
    assert np.array_equal(cleaned, expected)
    assert np.array_equal(volumes, before)  # the input is left alone
    assert np.array_equal(without_specks(expected), expected)  # nothing more to take
    assert list(piece_counts(cleaned)) == [2, 2, 0]
