"""binvox voxel files: run-length encoded occupancy, already voxels (resampled onto the grid later)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from voxgan.ingest.formats.safety import Origin
from voxgan.ingest.mesh import MeshError

MAX_BINVOX_DIM = 1024


class Volume(NamedTuple):
    """occupancy : (D, D, D) bool indexed ``[x, y, z]``; voxel_to_mesh : (4, 4) float64 affine from voxel
    index coordinates (voxel (i, j, k) spans [i, i+1) × [j, j+1) × [k, k+1)) to the model's coordinates."""

    occupancy: np.ndarray
    voxel_to_mesh: np.ndarray


def read(data: bytes, origin: Origin) -> Volume:
    """The registry's reader: the file's voxels (stored with y fastest, then z, then x)."""
    return Volume(*parse_binvox(data))


def parse_binvox(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Parse the bytes of a binvox file; see :func:`load_binvox`."""
    if not data.startswith(b"#binvox"):
        raise MeshError("cannot parse binvox: no '#binvox' header")
    end = data.find(b"\ndata\n")
    if end < 0:
        raise MeshError("cannot parse binvox: no 'data' line")
    fields = {}
    for line in data[:end].split(b"\n")[1:]:
        words = line.split()
        if words:
            fields[words[0].decode("latin-1")] = words[1:]
    try:
        dims = [int(word) for word in fields["dim"]]
        translate = [float(word) for word in fields.get("translate", [b"0", b"0", b"0"])]
        scale = float(fields.get("scale", [b"1"])[0])
    except (KeyError, ValueError, IndexError):
        raise MeshError("cannot parse binvox: bad or missing dim/translate/scale line") from None
    if len(dims) != 3 or len(translate) != 3:
        raise MeshError("cannot parse binvox: dim and translate need 3 values")
    if len(set(dims)) != 1 or not 1 <= dims[0] <= MAX_BINVOX_DIM:
        raise MeshError(f"cannot parse binvox: grid {dims} is not cubic with a side of 1 to {MAX_BINVOX_DIM}")
    if not (np.isfinite(translate).all() and np.isfinite(scale) and scale > 0):
        raise MeshError("cannot parse binvox: translate and scale must be finite, scale positive")
    side = dims[0]
    runs = np.frombuffer(data, dtype=np.uint8, offset=end + 6)
    if len(runs) % 2:
        runs = runs[:-1]
    values, lengths = runs[0::2], runs[1::2]
    total = int(lengths.sum(dtype=np.int64))
    if total != side**3:
        raise MeshError(f"cannot parse binvox: runs cover {total:,} voxels, the grid has {side**3:,}")
    occupancy_xzy = np.repeat(values > 0, lengths).reshape(side, side, side)
    occupancy = np.ascontiguousarray(occupancy_xzy.transpose(0, 2, 1))
    voxel_to_mesh = np.eye(4)
    voxel_to_mesh[:3, :3] *= scale / side
    voxel_to_mesh[:3, 3] = translate
    return occupancy, voxel_to_mesh
