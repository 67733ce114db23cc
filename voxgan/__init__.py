"""voxgan: mesh datasets to voxel shards, a self-attention WGAN-GP 3D GAN, and volumes back to meshes."""

__version__ = "0.2.0"
