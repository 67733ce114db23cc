"""Up axes: their names, the rotation that turns one to +z and back, and the formats that fix theirs.

Shards and the grid frame are +z up. glTF 2.0 is +y up by its specification ("Coordinate System and
Units", where the unit is also fixed: the metre); OBJ, OFF, STL, PLY and binvox have no convention, so the
user says which (``--up-axis``). Reading turns a file's up axis to +z with :func:`up_to_z`; writing turns
+z back to the file's up axis with :func:`z_to_up`, its inverse: one rotation, used both ways, so that
an export read back with the same up axis is the grid it came from. On the ground because both
``ingest`` (reading) and ``results`` (writing) use it.
"""

from __future__ import annotations

import numpy as np

from voxgan.errors import VoxganError

UP_AXES = ("x", "y", "z", "-x", "-y", "-z")
FORMAT_UP_AXES = {".glb": "y", ".gltf": "y"}  # glTF 2.0 spec, "Coordinate System and Units": +Y up
_AXES = {"x": 0, "y": 1, "z": 2}


def signed(axis: str) -> str:
    """An axis name with its sign: ``"y"`` -> ``"+y"``, ``"-x"`` stays."""
    return axis if axis.startswith(("+", "-")) else f"+{axis}"


def up_to_z(up_axis: str) -> np.ndarray:
    """The proper rotation taking a dataset's up axis to +z.

    ``"z"`` is the identity; ``"y"`` (ShapeNet) maps y → z, z → -y, x → x; ``"x"`` maps x → z, z → -x,
    y → y; ``"-y"``, ``"-x"``, ``"-z"`` turn the negative axis up.

    Returns
    -------
    rotation : (4, 4) float64 with det +1, a signed permutation (so applying it is exact)
    """
    name = up_axis.strip().lower()
    sign = -1.0 if name.startswith("-") else 1.0
    name = name.lstrip("+-")
    if name not in _AXES:
        raise VoxganError(f"unknown up axis {up_axis!r}: use x, y, z, -x, -y or -z")
    axis = _AXES[name]
    rotation = np.eye(4)
    if axis == 2:
        if sign < 0:  # half turn about x
            rotation[:3, :3] = np.diag([1.0, -1.0, -1.0])
        return rotation
    # a quarter turn about the third axis ``other`` that takes ``up`` to +z and +z to -up
    up = np.zeros(3)
    up[axis] = sign
    z = np.array([0.0, 0.0, 1.0])
    other = np.cross(up, z)  # stays fixed
    columns = np.zeros((3, 3))
    for source in range(3):
        unit = np.eye(3)[source]
        columns[:, source] = (unit @ up) * z - (unit @ z) * up + (unit @ other) * other / (other @ other)
    rotation[:3, :3] = columns
    assert np.isclose(np.linalg.det(columns), 1.0)
    return rotation


def z_to_up(up_axis: str) -> np.ndarray:
    """The inverse of :func:`up_to_z`: the proper rotation (4, 4) taking +z to ``up_axis``.

    ``"y"`` (glTF) maps z → y, y → -z, x → x: the grid's front (-y, the side pictures show) faces +z,
    glTF's front.
    """
    return up_to_z(up_axis).T
