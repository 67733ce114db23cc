"""Shards -> batches: the shard source and the synthetic sources, behind one entry point.

``from voxgan.data import make_loader``: see :mod:`voxgan.data.loader`. The sources share their streaming
core (:mod:`voxgan.data.stream`: the rank x worker split, seeds, positions, packed batches).
"""

from voxgan.data.loader import VoxelLoader, make_loader

__all__ = ["VoxelLoader", "make_loader"]
