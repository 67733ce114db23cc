"""binvox voxel files: run-length encoded occupancy, already voxels (resampled onto the grid later).

The codec itself is :mod:`voxgan.binvox` on the ground, which export writes with; this is its reader in the
format registry, its refusals turned into :class:`~voxgan.ingest.mesh.MeshError`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from voxgan.binvox import BinvoxError, parse_binvox
from voxgan.ingest.formats.safety import Origin
from voxgan.ingest.mesh import MeshError


class Volume(NamedTuple):
    """occupancy : (D, D, D) bool indexed ``[x, y, z]``; voxel_to_mesh : (4, 4) float64 affine from voxel
    index coordinates (voxel (i, j, k) spans [i, i+1) × [j, j+1) × [k, k+1)) to the model's coordinates."""

    occupancy: np.ndarray
    voxel_to_mesh: np.ndarray


def read(data: bytes, origin: Origin) -> Volume:
    """The registry's reader: the file's voxels (stored with y fastest, then z, then x)."""
    try:
        return Volume(*parse_binvox(data))
    except BinvoxError as error:
        raise MeshError(str(error)) from None
