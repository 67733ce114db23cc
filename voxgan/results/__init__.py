"""A trained generator (or a shard folder) -> files people look at: meshes, voxel files, pictures
(:mod:`voxgan.results.export`) and quality numbers (:mod:`voxgan.results.evaluate`).

This room imports the model room (to load generators), the data room and the ground.
"""
