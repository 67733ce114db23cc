"""voxgan.axes: the up-axis rotations both ways (reading turns a file's up axis to +z, writing turns it
back), and glTF's fixed +y."""

import numpy as np
import pytest

from voxgan.axes import FORMAT_UP_AXES, UP_AXES, signed, up_to_z, z_to_up
from voxgan.errors import VoxganError


@pytest.mark.parametrize("axis", UP_AXES)
def test_z_to_up_is_the_inverse_rotation_of_up_to_z(axis):
    there, back = up_to_z(axis), z_to_up(axis)
    np.testing.assert_array_equal(there @ back, np.eye(4))  # exact: signed permutations
    assert np.linalg.det(back[:3, :3]) == pytest.approx(1.0)  # a rotation, never a mirror
    up = np.zeros(3)
    up[" xyz".index(axis[-1]) - 1] = -1.0 if axis.startswith("-") else 1.0
    np.testing.assert_array_equal(back[:3, :3] @ [0, 0, 1], up)  # +z goes to the file's up axis


def test_gltf_is_y_up_and_the_grid_front_faces_gltf_front():
    assert FORMAT_UP_AXES == {".glb": "y", ".gltf": "y"} and signed("y") == "+y" and signed("-x") == "-x"
    rotation = z_to_up("y")[:3, :3]
    np.testing.assert_array_equal(rotation @ [0, 0, 1], [0, 1, 0])  # grid up -> glTF up
    np.testing.assert_array_equal(rotation @ [0, -1, 0], [0, 0, 1])  # grid front (-y) -> glTF front (+z)
    np.testing.assert_array_equal(rotation @ [1, 0, 0], [1, 0, 0])
    with pytest.raises(VoxganError, match="unknown up axis"):
        z_to_up("w")
