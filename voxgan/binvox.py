"""The binvox voxel format, parsed and written side by side (ingest reads it, export writes it).

A binvox file is a text header (``#binvox 1``, ``dim D D D``, ``translate x y z``, ``scale s``, ``data``)
and run-length pairs (value, count 1..255) over the voxels in x-z-y order, y fastest. Voxel (i, j, k) of
the grid spans ``translate + scale * [i, i+1) × [j, j+1) × [k, k+1) / D`` in the file's coordinates.

The parser trusts nothing: a bad header, a grid that is not cubic or larger than :data:`MAX_BINVOX_DIM`,
or runs that do not cover the grid exactly raise :class:`BinvoxError` with a one-line reason.
"""

from __future__ import annotations

import numpy as np

from voxgan.errors import VoxganError

MAX_BINVOX_DIM = 1024


class BinvoxError(VoxganError):
    """Bytes that are not a binvox file this module reads; str(error) is the one-line reason."""


def parse_binvox(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The voxels of a binvox file's bytes.

    Returns
    -------
    occupancy : (D, D, D) bool indexed ``[x, y, z]``
    voxel_to_file : (4, 4) float64 affine from voxel index coordinates to the file's coordinates:
        ``translate + scale * ijk / D``.
    """
    if not data.startswith(b"#binvox"):
        raise BinvoxError("cannot parse binvox: no '#binvox' header")
    end = data.find(b"\ndata\n")
    if end < 0:
        raise BinvoxError("cannot parse binvox: no 'data' line")
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
        raise BinvoxError("cannot parse binvox: bad or missing dim/translate/scale line") from None
    if len(dims) != 3 or len(translate) != 3:
        raise BinvoxError("cannot parse binvox: dim and translate need 3 values")
    if len(set(dims)) != 1 or not 1 <= dims[0] <= MAX_BINVOX_DIM:
        raise BinvoxError(
            f"cannot parse binvox: grid {dims} is not cubic with a side of 1 to {MAX_BINVOX_DIM}"
        )
    if not (np.isfinite(translate).all() and np.isfinite(scale) and scale > 0):
        raise BinvoxError("cannot parse binvox: translate and scale must be finite, scale positive")
    side = dims[0]
    runs = np.frombuffer(data, dtype=np.uint8, offset=end + 6)
    if len(runs) % 2:
        runs = runs[:-1]
    values, lengths = runs[0::2], runs[1::2]
    total = int(lengths.sum(dtype=np.int64))
    if total != side**3:
        raise BinvoxError(f"cannot parse binvox: runs cover {total:,} voxels, the grid has {side**3:,}")
    occupancy_xzy = np.repeat(values > 0, lengths).reshape(side, side, side)
    occupancy = np.ascontiguousarray(occupancy_xzy.transpose(0, 2, 1))
    voxel_to_file = np.eye(4)
    voxel_to_file[:3, :3] *= scale / side
    voxel_to_file[:3, 3] = translate
    return occupancy, voxel_to_file


def binvox_bytes(occupancy: np.ndarray, translate=(0.0, 0.0, 0.0), scale: float | None = None) -> bytes:
    """A binvox file of ``occupancy`` : (R, R, R) bool ``[x, y, z]`` (the inverse of :func:`parse_binvox`).

    ``translate`` (3,) is the grid's corner and ``scale`` its side in the file's coordinates (default R:
    voxel (i, j, k) spans [i, i+1)³, as in the shards). Runs longer than 255 voxels become several pairs.
    """
    occupancy = np.asarray(occupancy, bool)
    resolution = occupancy.shape[0]
    values = occupancy.transpose(0, 2, 1).reshape(-1).astype(np.uint8)  # [x, z, y], y fastest
    change = np.flatnonzero(np.diff(values)) + 1
    starts = np.r_[0, change]
    lengths = np.diff(np.r_[starts, len(values)])
    run_values = values[starts]
    pieces = -(-lengths // 255)  # runs longer than 255 become several pairs
    pair_values = np.repeat(run_values, pieces)
    pair_counts = np.full(pieces.sum(), 255, np.int64)
    last_piece = np.cumsum(pieces) - 1
    pair_counts[last_piece] = lengths - 255 * (pieces - 1)
    side = resolution if scale is None else scale
    header = (
        f"#binvox 1\ndim {resolution} {resolution} {resolution}\n"
        f"translate {' '.join(decimal(value) for value in translate)}\nscale {decimal(side)}\ndata\n"
    )
    pairs = np.stack([pair_values, pair_counts.astype(np.uint8)], axis=1).astype(np.uint8)
    return header.encode() + pairs.tobytes()


def decimal(value: float) -> str:
    """The shortest text that reads back as ``value``: 16.0 -> "16", 0.8 -> "0.8", -0.0 -> "0"."""
    return np.format_float_positional(float(value) + 0.0, trim="-")
