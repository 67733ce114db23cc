"""voxgan.model.augment: the critic's view is shifted or cut, never turned, and gradients pass through."""

import numpy as np
import pytest
import torch

from voxgan.model.augment import cutout, diff_augment, translate

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def blocks(batch: int = 6, resolution: int = 32) -> torch.Tensor:
    """(B, 1, R, R, R) float: an asymmetric solid (a bar and a post) well inside each grid."""
    volumes = torch.zeros(batch, 1, resolution, resolution, resolution)
    volumes[:, :, 8:20, 12:16, 10:14] = 1.0  # a bar along x
    volumes[:, :, 8:12, 12:16, 14:24] = 1.0  # a post along +z at one end
    return volumes


def offset_of(moved: np.ndarray, source: np.ndarray) -> tuple[int, int, int] | None:
    """The integer shift that turns ``source`` (R, R, R) into ``moved``, or None when none does."""
    for shift in np.ndindex(7, 7, 7):
        shift = tuple(s - 3 for s in shift)
        if np.array_equal(np.roll(source, shift, axis=(0, 1, 2)), moved):
            return shift
    return None


def test_translation_shifts_each_volume_whole_by_at_most_r_over_16_and_keeps_up_up():
    volumes = blocks().contiguous(memory_format=torch.channels_last_3d)
    moved = translate(volumes, torch.Generator().manual_seed(1))
    assert moved.shape == volumes.shape and moved.is_contiguous(memory_format=torch.channels_last_3d)
    shifts = [offset_of(m[0].numpy(), v[0].numpy()) for m, v in zip(moved, volumes, strict=True)]
    assert all(s is not None and max(map(abs, s)) <= 2 for s in shifts), shifts  # 32 / 16
    assert len(set(shifts)) > 1, "every volume got the same shift"


def test_translation_shifts_empty_space_in_rather_than_wrapping_around():
    volumes = torch.zeros(8, 1, 16, 16, 16)
    volumes[:, :, -1, 4:12, 4:12] = 1.0  # a square on the face x = R - 1
    moved = translate(volumes, torch.Generator().manual_seed(0))
    sums = moved.sum(dim=(1, 2, 3, 4))
    assert set(sums.tolist()) == {64.0, 0.0}  # shifted out at +x, not back in at x = 0
    assert moved[:, :, 0].sum() == 0


def test_cutout_empties_one_box_of_half_the_side_and_nothing_else():
    volumes = torch.ones(16, 1, 16, 16, 16)
    cut = cutout(volumes, torch.Generator().manual_seed(0))
    for sample in cut[:, 0]:
        empty = np.argwhere(sample.numpy() == 0)
        lo, hi = empty.min(axis=0), empty.max(axis=0)
        assert np.all(hi - lo + 1 <= 8)  # side R/2, less where clipped at a face
        assert len(empty) == np.prod(hi - lo + 1)  # one box: every voxel between its corners is empty
    assert (cut == 0).any(dim=(1, 2, 3, 4)).all()


def test_the_same_seed_gives_the_same_view_and_gradients_reach_the_input():
    volumes = blocks().requires_grad_(True)
    policy = ("translation", "cutout")
    first = diff_augment(volumes, policy, torch.Generator().manual_seed(5))
    second = diff_augment(volumes, policy, torch.Generator().manual_seed(5))
    assert torch.equal(first, second)
    first.sum().backward()
    assert volumes.grad is not None and 0 < volumes.grad.sum() <= volumes.detach().numel()
