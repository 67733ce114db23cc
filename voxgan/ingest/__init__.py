"""Meshes and voxel files -> shards: read (formats), turn into the grid frame (frame), voxelize, write.

``voxgan voxelize`` is :func:`voxgan.ingest.pipeline.run_voxelize`; ``voxgan info`` is
:func:`voxgan.ingest.info.run_info`; ``voxgan shapes`` is :func:`voxgan.ingest.shapes.generate_shapes`.
This room imports only the ground (errors, atomic writes, the shard format, pictures).
"""
