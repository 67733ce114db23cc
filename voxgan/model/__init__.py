"""Batches -> a trained generator: the networks, the WGAN-GP loss and updates, the training loop, and the
run folders and checkpoints it leaves (:mod:`voxgan.model.runs`, which also loads a trained generator).

This room imports the data room and the ground, never the results room: periodic evaluation is handed to
:func:`voxgan.model.train.train` as a function.
"""
