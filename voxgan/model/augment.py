"""Differentiable augmentation of what the critic sees (DiffAugment, Zhao et al. 2020), in 3D.

The critic judges real and generated volumes through the same random transformations, so that on a small
dataset it cannot learn the training volumes by heart; the generator is trained through them too (they are
differentiable), so it learns the untransformed distribution. Every transformation keeps +z up.

- ``translation``: each volume shifted by up to R/16 voxels along each axis, empty voxels shifted in;
- ``cutout``: an axis-aligned box of half the grid's side, at a random place in each volume, emptied.

Both are indexing and masking only: differentiable, cheap, the same on any device. Volumes voxelized from
meshes stand centred on the floor of the grid; a critic that sees them shifted cannot tell where a shape
stands, so ``translation`` lets samples drift (BENCHMARKS.md): it is for datasets too small for the critic.
"""

from __future__ import annotations

import torch

AUGMENTATIONS = ("translation", "cutout")


def diff_augment(volumes: torch.Tensor, policy: tuple[str, ...], noise: torch.Generator) -> torch.Tensor:
    """volumes (B, C, R, R, R) -> the same shape, each transformation of ``policy`` applied in order, drawn
    per volume from ``noise`` (a generator on the volumes' device)."""
    for name in policy:
        volumes = TRANSFORMS[name](volumes, noise)
    return volumes


def translate(volumes: torch.Tensor, noise: torch.Generator) -> torch.Tensor:
    """Shift each volume (B, C, R, R, R) by a random integer offset in [-R/16, R/16] per axis."""
    batch, resolution = volumes.shape[0], volumes.shape[-1]
    reach = max(1, resolution // 16)
    padded = torch.nn.functional.pad(volumes, [reach] * 6)  # (B, C, R + 2s, ...)
    offsets = torch.randint(0, 2 * reach + 1, (3, batch, 1), device=volumes.device, generator=noise)
    x, y, z = torch.arange(resolution, device=volumes.device) + offsets  # each (B, R)
    rows = torch.arange(batch, device=volumes.device)[:, None, None, None]
    moved = padded.movedim(1, -1)  # (B, R', R', R', C): index the grid axes, keep the channels
    picked = moved[rows, x[:, :, None, None], y[:, None, :, None], z[:, None, None, :]]
    return picked.movedim(-1, 1).contiguous(memory_format=_format_of(volumes))


def cutout(volumes: torch.Tensor, noise: torch.Generator) -> torch.Tensor:
    """Empty an axis-aligned box of side R/2 at a random place (clipped at the faces) in each volume."""
    batch, resolution = volumes.shape[0], volumes.shape[-1]
    side = resolution // 2
    starts = torch.randint(-side // 2, resolution - side // 2, (3, batch, 1), device=volumes.device,
                           generator=noise)  # fmt: skip
    cells = torch.arange(resolution, device=volumes.device)
    inside = (cells >= starts) & (cells < starts + side)  # (3, B, R): the box's extent on each axis
    box = inside[0][:, :, None, None] & inside[1][:, None, :, None] & inside[2][:, None, None, :]
    return volumes * (~box)[:, None].to(volumes.dtype)


def _format_of(volumes: torch.Tensor) -> torch.memory_format:
    """channels_last_3d when ``volumes`` is laid out so, else contiguous."""
    if volumes.is_contiguous(memory_format=torch.channels_last_3d) and not volumes.is_contiguous():
        return torch.channels_last_3d
    return torch.contiguous_format


TRANSFORMS = {"translation": translate, "cutout": cutout}
