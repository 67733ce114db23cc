"""voxgan.data.shard_source: every sample once per epoch in a seeded order, split by rank, class subsets,
augmentation that keeps +z up, and damaged or missing shards refused with a message naming them."""

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from tests.data.shard_folders import CLASSES, epoch_ids, flip_bytes, sample_ids, write_folder
from voxgan import shards
from voxgan.atomic import write_json_atomic
from voxgan.data import make_loader
from voxgan.errors import VoxganError


def test_batches_have_the_documented_types_and_every_sample_once(folder):
    loader = make_loader(folder, batch_size=64)
    assert loader.resolution == 16 and loader.class_names == CLASSES
    assert loader.num_batches == len(loader) == 29  # ceil(1850 / 64)
    batches = list(loader)
    assert len(batches) == 29
    voxels, labels = batches[0]
    assert voxels.dtype == torch.uint8 and voxels.shape == (64, 1, 16, 16, 16)
    assert labels.dtype == torch.int64 and labels.shape == (64,)
    assert set(np.unique(voxels.numpy())) <= {0, 1}
    ids = np.concatenate([sample_ids(v) for v, _ in batches])
    assert sorted(ids) == list(range(1850))
    labels = np.concatenate([lab.numpy() for _, lab in batches])
    assert np.array_equal(labels, ids % 3)  # each label travels with its sample
    with h5py.File(folder / "train-00001.h5") as f:  # the voxels are those of the file, bit for bit
        row = f["voxels"][5]
    voxels = torch.cat([v for v, _ in batches])
    grid = voxels[int(np.flatnonzero(ids == 905)[0]), 0].numpy()
    assert np.array_equal(np.packbits(grid.reshape(-1)), row)


def test_order_is_fixed_by_seed_and_epoch(folder):
    first = np.concatenate(epoch_ids(make_loader(folder, batch_size=64, seed=3, shuffle_buffer=512)))
    again = np.concatenate(epoch_ids(make_loader(folder, batch_size=64, seed=3, shuffle_buffer=512)))
    other_seed = np.concatenate(epoch_ids(make_loader(folder, batch_size=64, seed=4, shuffle_buffer=512)))
    loader = make_loader(folder, batch_size=64, seed=3, shuffle_buffer=512)
    other_epoch = np.concatenate(epoch_ids(loader, epoch=1))
    back_to_zero = np.concatenate(epoch_ids(loader, epoch=0))
    assert np.array_equal(first, again) and np.array_equal(first, back_to_zero)
    assert not np.array_equal(first, other_seed) and not np.array_equal(first, other_epoch)
    assert sorted(first) == sorted(other_seed) == sorted(other_epoch) == list(range(1850))
    in_file_order = np.concatenate(epoch_ids(make_loader(folder, batch_size=64, shuffle=False)))
    assert np.array_equal(in_file_order, np.arange(1850))
    # with the default buffer the shuffle mixes samples from all over the split inside one batch
    mixed = np.concatenate(epoch_ids(make_loader(folder, batch_size=64)))[:64]
    assert np.ptp(mixed) > 1500 and len(np.unique(mixed // 512)) >= 3


RANK_SCRIPT = """
import json, sys
from voxgan import data
from tests_helper_ids import sample_ids
loader = data.make_loader(sys.argv[1], batch_size=32, num_workers=2, seed=7, shuffle_buffer=256,
                          multiprocessing_context=sys.argv[2])
out = {"num_batches": loader.num_batches, "epochs": []}
for epoch in (0, 1):
    loader.set_epoch(epoch)
    out["epochs"].append([sample_ids(v).tolist() for v, _ in loader])
print(json.dumps(out))
"""


HELPER = """
import numpy as np
def sample_ids(voxels):
    packed = np.packbits(voxels.numpy().reshape(len(voxels), -1), axis=1)
    return packed[:, :4].copy().view(">u4").ravel().astype(np.int64)
"""


def run_ranks(tmp_path, folder, world, context="fork"):
    (tmp_path / "tests_helper_ids.py").write_text(HELPER)
    (tmp_path / "rank_script.py").write_text(RANK_SCRIPT)
    processes = []
    for rank in range(world):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), PYTHONPATH=str(tmp_path))
        processes.append(
            subprocess.Popen(
                [sys.executable, str(tmp_path / "rank_script.py"), str(folder), context],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        results.append(json.loads(out))
    return results


def test_two_ranks_by_two_workers_see_every_sample_once(tmp_path):
    folder = tmp_path / "even"
    total = write_folder(folder, [600, 300, 500])  # 1400 samples: divides between 2 ranks
    results = run_ranks(tmp_path, folder, world=2)
    for epoch in (0, 1):
        per_rank = [np.concatenate(r["epochs"][epoch]) for r in results]
        assert len(per_rank[0]) == len(per_rank[1]) == 700
        assert not set(per_rank[0]) & set(per_rank[1])
        assert sorted(np.concatenate(per_rank)) == list(range(total))
    assert results[0]["epochs"][0] != results[0]["epochs"][1]  # reshuffled between epochs
    assert [len(r["epochs"][0]) for r in results] == [r["num_batches"] for r in results] == [22, 22]


def test_uneven_split_gives_every_rank_the_same_batch_count(tmp_path, monkeypatch):
    folder = tmp_path / "uneven"
    total = write_folder(folder, [1000, 37, 500])  # 1537 samples over 3 ranks
    monkeypatch.setenv("WORLD_SIZE", "3")
    seen, counts = [], []
    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))
        loader = make_loader(folder, batch_size=50, seed=1, shuffle_buffer=300)
        batches = epoch_ids(loader, epoch=2)
        counts.append((len(batches), loader.num_batches, sum(map(len, batches))))
        seen.append(np.concatenate(batches))
    assert counts == [(11, 11, 513)] * 3  # ceil(1537 / 3) = 513 samples each, the last batch of 13
    everything = np.concatenate(seen)
    assert set(everything) == set(range(total))
    assert len(everything) - total == 2  # 3 * 513 - 1537 samples repeated, and no more

    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))
        loader = make_loader(folder, batch_size=50, seed=1, drop_last=True)
        batches = epoch_ids(loader)
        assert loader.num_batches == len(batches) == 10 and all(len(b) == 50 for b in batches)


def test_class_subset_relabels_and_keeps_only_those_classes(folder):
    loader = make_loader(folder, batch_size=64, classes=["lamp", "chair"])
    assert loader.class_names == ("lamp", "chair")
    batches = list(loader)
    ids = np.concatenate([sample_ids(v) for v, _ in batches])
    labels = np.concatenate([lab.numpy() for _, lab in batches])
    assert sorted(ids) == [i for i in range(1850) if i % 3 in (0, 2)]
    assert np.array_equal(labels, np.where(ids % 3 == 2, 0, 1))
    with pytest.raises(VoxganError, match="unknown class 'sofa'"):
        make_loader(folder, batch_size=64, classes=["sofa"])


def test_resolution_mismatch_and_missing_split_are_refused(folder):
    with pytest.raises(VoxganError, match="shards are 16³, not the requested 32³"):
        make_loader(folder, batch_size=8, resolution=32)
    with pytest.raises(VoxganError, match="no split 'test'"):
        make_loader(folder, batch_size=8, split="test")


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def rewrite_schema(folder):
    """A shard of schema version 3 (from a future voxgan) whose manifest entry matches its bytes."""
    path = folder / "train-00001.h5"
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = 3
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["splits"]["train"]["shards"][1]["sha256"] = shards.file_sha256(path)
    write_json_atomic(folder / "manifest.json", manifest)


DAMAGE = {
    "corrupt": (lambda folder: flip_bytes(folder / "train-00001.h5"), "corrupt or truncated"),
    "truncated": (lambda folder: truncate(folder / "train-00001.h5"), "corrupt or truncated"),
    "schema": (rewrite_schema, "schema version 3, this voxgan reads 1 and 2"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("workers", [0, 2])
def test_damaged_shards_are_refused_with_a_message_naming_them(tmp_path, damage, workers):
    folder = tmp_path / "damaged"
    write_folder(folder, [300, 300, 300])
    spoil, message = DAMAGE[damage]
    spoil(folder)
    with pytest.raises(VoxganError) as raised:  # before the first batch: make_loader checks the whole split
        list(make_loader(folder, batch_size=32, num_workers=workers))
    assert "make_loader" in "".join(str(entry.name) for entry in raised.traceback)
    text = str(raised.value)
    assert "train-00001.h5" in text and message in text
    assert "\n" not in text and "Traceback" not in text


def test_missing_shard_is_refused_at_once_and_inside_workers(tmp_path):
    folder = tmp_path / "missing"
    write_folder(folder, [300, 300])
    loader = make_loader(folder, batch_size=32, num_workers=2, multiprocessing_context="spawn")
    (folder / "train-00000.h5").unlink()
    with pytest.raises(VoxganError, match="train-00000.h5: shard listed in manifest.json is missing"):
        list(loader)
    with pytest.raises(VoxganError, match="train-00000.h5: shard listed in manifest.json is missing"):
        make_loader(folder, batch_size=32)
    (folder / "manifest.json").unlink()
    with pytest.raises(VoxganError, match="no manifest.json"):
        make_loader(folder, batch_size=32)


def test_augmentation_keeps_up_up(tmp_path):
    r = 16
    grid = np.zeros((r, r, r), dtype=bool)  # a heavy slab at the bottom, a thin post off-centre above it
    grid[:, :, :4] = True
    grid[2:5, 9:11, 4:14] = True
    folder = tmp_path / "up"
    folder.mkdir()
    header = shards.ShardHeader(resolution=r, class_names=())
    entry = shards.write_shard(
        folder / "train-00000.h5", header, shards.pack(np.repeat(grid[None], 256, 0)),
        np.full(256, -1), ["a.obj"] * 256, np.tile(np.eye(4), (256, 1, 1)),
    )  # fmt: skip
    manifest = {"schema_version": 1, "resolution": r, "splits": {"train": {"count": 256, "shards": [entry]}}}
    write_json_atomic(folder / "manifest.json", manifest)
    voxels = torch.cat([v for v, _ in make_loader(folder, batch_size=64, augment=True)])[:, 0].numpy()
    assert voxels.shape == (256, r, r, r)
    z_profile = voxels.sum(axis=(1, 2))  # (N, R): mass per height
    assert (z_profile == grid.sum(axis=(0, 1))).all()  # every sample keeps its mass per height
    footprints = {tuple(np.argwhere(v[:, :, 10]).min(0)) for v in voxels}
    assert len(footprints) == 8  # the post is seen in all 8 turns and flips about z
    assert {int(v.sum()) for v in voxels} == {int(grid.sum())}
    in_workers = torch.cat([v for v, _ in make_loader(folder, batch_size=64, augment=True, num_workers=2)])
    assert torch.equal(in_workers[:64, 0], torch.from_numpy(voxels[:64]))  # the same turns, decoded in main


def test_each_shard_is_hashed_once_and_again_when_it_changes(tmp_path):
    folder = tmp_path / "hashed"
    write_folder(folder, [200, 200])
    loader = make_loader(folder, batch_size=32, num_workers=2)  # workers are new processes each epoch
    assert len(epoch_ids(loader, 0)) == loader.num_batches
    sizes = [(folder / f"train-0000{i}.h5").stat().st_size for i in range(2)]
    assert loader.dataset._verified[:, 0].tolist() == sizes  # the workers' checks reached the main process
    flip_bytes(folder / "train-00001.h5")
    with pytest.raises(VoxganError, match="train-00001.h5: corrupt or truncated"):
        epoch_ids(loader, 1)
