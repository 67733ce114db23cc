"""voxgan.data.synthetic: noise and solid primitives at every resolution, seeded streams split by rank."""

import numpy as np
import pytest
import torch

from voxgan.data import make_loader
from voxgan.data.synthetic import rasterise_shapes
from voxgan.errors import VoxganError


@pytest.mark.parametrize("source", ["synthetic:noise", "synthetic:shapes"])
@pytest.mark.parametrize("resolution", [16, 32, 64])
def test_synthetic_sources_at_each_resolution(source, resolution):
    batch = 8
    loader = make_loader(source, batch_size=batch, resolution=resolution, epoch_size=20, seed=1)
    assert loader.resolution == resolution and loader.num_batches == 3
    batches = epoch_ids_raw(loader, 0)
    assert [len(v) for v, _ in batches] == [8, 8, 4]
    voxels, labels = batches[0]
    assert voxels.dtype == torch.uint8 and voxels.shape == (batch, 1) + (resolution,) * 3
    assert labels.dtype == torch.int64 and labels.shape == (batch,)
    fill = voxels.float().mean(dim=(1, 2, 3, 4))
    assert ((fill > 0.005) & (fill < 0.6)).all(), fill
    if source == "synthetic:noise":
        assert loader.class_names == () and (labels == -1).all()
    else:
        assert loader.class_names == ("sphere", "box", "cylinder", "torus")
        assert ((labels >= 0) & (labels < 4)).all()
    again = epoch_ids_raw(
        make_loader(source, batch_size=batch, resolution=resolution, epoch_size=20, seed=1), 0
    )
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, again, strict=True)
    )
    other_epoch = epoch_ids_raw(loader, 1)
    assert not torch.equal(batches[0][0], other_epoch[0][0])


def epoch_ids_raw(loader, epoch):
    loader.set_epoch(epoch)
    return list(loader)


def test_synthetic_streams_are_disjoint_across_ranks_and_independent_of_workers():
    def first_batch(rank, workers=0):
        loader = make_loader(
            "synthetic:shapes", batch_size=16, epoch_size=64, rank=rank, world_size=2, num_workers=workers
        )
        return [v for v, _ in loader]

    rank0, rank1 = first_batch(0), first_batch(1)
    assert len(rank0) == len(rank1) == 2
    assert not any(torch.equal(a, b) for a in rank0 for b in rank1)
    assert all(torch.equal(a, b) for a, b in zip(rank0, first_batch(0, workers=2), strict=True))


def test_synthetic_shapes_are_the_kind_their_label_says():
    rng = np.random.default_rng(0)
    kinds = np.repeat(np.arange(4), 16)
    grids = rasterise_shapes(rng, kinds, 32).astype(bool)
    fill = grids.reshape(64, -1).mean(1)
    assert (fill > 0.005).all()
    # a torus has a hole along its axis: its centre of mass is empty far more often than for solid shapes
    centres = [tuple(np.round(np.argwhere(g).mean(0)).astype(int)) for g in grids]
    hollow = np.array([not g[c] for g, c in zip(grids, centres, strict=True)])
    assert hollow[kinds == 3].mean() > 0.8 and not hollow[kinds != 3].any()


def test_shapes_class_subset_and_bad_sources():
    loader = make_loader("synthetic:shapes", batch_size=32, epoch_size=64, classes=["torus", "box"])
    assert loader.class_names == ("torus", "box")
    labels = torch.cat([lab for _, lab in loader])
    assert set(labels.tolist()) == {0, 1}
    with pytest.raises(VoxganError, match="unknown source"):
        make_loader("synthetic:cubes", batch_size=4)
    with pytest.raises(VoxganError, match="no classes"):
        make_loader("synthetic:noise", batch_size=4, classes=["a"])
