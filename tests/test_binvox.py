"""voxgan.binvox: the one binvox codec, written and parsed back, read by trimesh, refusing bad bytes."""

import numpy as np
import pytest
import trimesh

from tests import meshfiles
from tests.results.sources import ball
from voxgan.binvox import BinvoxError, binvox_bytes, parse_binvox


def test_written_voxels_parse_back_and_read_the_same_with_trimesh(tmp_path):
    volume = ball(16, 6.0, (7, 8, 9))
    volume[0, 0, :] = True  # a long run, longer than one byte can count
    path = tmp_path / "ball.binvox"
    path.write_bytes(binvox_bytes(volume))
    occupancy, voxel_to_file = parse_binvox(path.read_bytes())
    assert np.array_equal(occupancy, volume) and occupancy.flags.c_contiguous
    np.testing.assert_array_equal(voxel_to_file, np.eye(4))  # scale R over R voxels: one unit per voxel
    assert np.array_equal(np.asarray(trimesh.load(path).matrix, bool), volume)


def test_the_header_carries_the_corner_and_side_as_the_shortest_numbers():
    data = binvox_bytes(meshfiles.asymmetric_occupancy(4), translate=(0.5, -2.0, 0.0), scale=0.8)
    assert data.startswith(b"#binvox 1\ndim 4 4 4\ntranslate 0.5 -2 0\nscale 0.8\ndata\n")
    _, voxel_to_file = parse_binvox(data)
    np.testing.assert_allclose(voxel_to_file[:3, 3], [0.5, -2.0, 0.0])
    np.testing.assert_allclose(np.diag(voxel_to_file)[:3], [0.2] * 3)


def test_an_independent_writer_s_file_parses_to_its_voxels_and_frame(tmp_path):
    expected = meshfiles.asymmetric_occupancy(6)
    path = meshfiles.write_binvox(tmp_path / "l.binvox", expected, translate=(0.5, -1.0, 2.0), scale=3.0)
    occupancy, voxel_to_file = parse_binvox(path.read_bytes())
    np.testing.assert_array_equal(occupancy, expected)
    np.testing.assert_allclose(voxel_to_file[:3, 3], [0.5, -1.0, 2.0])
    np.testing.assert_allclose(np.diag(voxel_to_file)[:3], [0.5] * 3)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"#binvox 1\ndim 2 2 2\ndata\n" + bytes([1, 7]), "runs cover 7 voxels"),
        (b"#binvox 1\ndim 2 2 3\ndata\n" + bytes([1, 12]), "not cubic"),
        (b"#binvox 1\ndim 2 2 2\nscale nan\ndata\n" + bytes([1, 8]), "finite"),
        (b"#binvox 1\ndim 2 2 2\n", "no 'data' line"),
        (b"not binvox", "no '#binvox' header"),
    ],
)
def test_bad_bytes_are_refused_in_one_line(data, reason):
    with pytest.raises(BinvoxError, match=reason) as error:
        parse_binvox(data)
    assert "\n" not in str(error.value)
