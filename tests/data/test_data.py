import json
import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
import torch

from voxgan import data, shards
from voxgan.errors import VoxganError

CLASSES = ("chair", "table", "lamp")


def write_folder(folder, counts, resolution=16, split="train", seed=0):
    """Shards whose samples carry their id: the first 4 packed bytes are the sample index (big-endian)."""
    folder.mkdir(parents=True, exist_ok=True)
    header = shards.ShardHeader(resolution=resolution, split=split, class_names=CLASSES, recipe="test")
    entries, first = [], 0
    for index, count in enumerate(counts):
        rng = np.random.default_rng(seed + index)
        packed = rng.integers(0, 256, (count, resolution**3 // 8), dtype=np.uint8)
        ids = np.arange(first, first + count, dtype=np.uint32)
        packed[:, :4] = ids.astype(">u4").view(np.uint8).reshape(count, 4)
        entries.append(
            shards.write_shard(
                folder / shards.shard_name(split, index),
                header,
                packed,
                labels=ids % len(CLASSES),
                sources=[f"m{i}.obj" for i in ids],
                mesh_to_grid=np.tile(np.eye(4), (count, 1, 1)),
            )
        )
        first += count
    manifest = {
        "schema_version": 1,
        "resolution": resolution,
        "mode": "solid",
        "layout": "folder",
        "recipe": "test",
        "classes": list(CLASSES),
        "splits": {split: {"count": first, "shards": entries}},
        "errors": [],
        "skipped": {},
        "config": {},
        "voxgan_version": "test",
    }
    shards.write_json_atomic(folder / "manifest.json", manifest)
    return first


def sample_ids(voxels):
    """(B, 1, R, R, R) uint8 -> (B,) the ids written by write_folder."""
    packed = np.packbits(voxels.numpy().reshape(len(voxels), -1), axis=1)
    return packed[:, :4].copy().view(">u4").ravel().astype(np.int64)


def epoch_ids(loader, epoch=0):
    loader.set_epoch(epoch)
    return [sample_ids(voxels) for voxels, _ in loader]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("shards")
    write_folder(path, [900, 250, 700])  # 1850 samples, blocks of 512 rows at 16³
    return path


def test_batches_have_the_documented_types_and_every_sample_once(folder):
    loader = data.make_loader(folder, batch_size=64)
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
    first = np.concatenate(epoch_ids(data.make_loader(folder, batch_size=64, seed=3, shuffle_buffer=512)))
    again = np.concatenate(epoch_ids(data.make_loader(folder, batch_size=64, seed=3, shuffle_buffer=512)))
    other_seed = np.concatenate(
        epoch_ids(data.make_loader(folder, batch_size=64, seed=4, shuffle_buffer=512))
    )
    loader = data.make_loader(folder, batch_size=64, seed=3, shuffle_buffer=512)
    other_epoch = np.concatenate(epoch_ids(loader, epoch=1))
    back_to_zero = np.concatenate(epoch_ids(loader, epoch=0))
    assert np.array_equal(first, again) and np.array_equal(first, back_to_zero)
    assert not np.array_equal(first, other_seed) and not np.array_equal(first, other_epoch)
    assert sorted(first) == sorted(other_seed) == sorted(other_epoch) == list(range(1850))
    in_file_order = np.concatenate(epoch_ids(data.make_loader(folder, batch_size=64, shuffle=False)))
    assert np.array_equal(in_file_order, np.arange(1850))
    # with the default buffer the shuffle mixes samples from all over the split inside one batch
    mixed = np.concatenate(epoch_ids(data.make_loader(folder, batch_size=64)))[:64]
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
        loader = data.make_loader(folder, batch_size=50, seed=1, shuffle_buffer=300)
        batches = epoch_ids(loader, epoch=2)
        counts.append((len(batches), loader.num_batches, sum(map(len, batches))))
        seen.append(np.concatenate(batches))
    assert counts == [(11, 11, 513)] * 3  # ceil(1537 / 3) = 513 samples each, the last batch of 13
    everything = np.concatenate(seen)
    assert set(everything) == set(range(total))
    assert len(everything) - total == 2  # 3 * 513 - 1537 samples repeated, and no more

    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))
        loader = data.make_loader(folder, batch_size=50, seed=1, drop_last=True)
        batches = epoch_ids(loader)
        assert loader.num_batches == len(batches) == 10 and all(len(b) == 50 for b in batches)


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_worker_start_methods_and_persistent_workers(folder, context):
    reference = data.make_loader(folder, batch_size=64, seed=5, shuffle_buffer=512)
    loader = data.make_loader(
        folder,
        batch_size=64,
        seed=5,
        shuffle_buffer=512,
        num_workers=2,
        multiprocessing_context=context,
        persistent_workers=True,
    )
    for epoch in (0, 1):  # the same workers must follow set_epoch
        got = np.concatenate(epoch_ids(loader, epoch))
        expected = np.concatenate(epoch_ids(reference, epoch))
        assert sorted(got) == list(range(1850))
        assert np.array_equal(got[:64], expected[:64])  # worker 0 starts with the first shuffle window
    assert len(epoch_ids(loader, 1)) == loader.num_batches


@pytest.mark.filterwarnings("ignore:This DataLoader will create 4 worker processes")
def test_four_workers_cover_the_split(folder):
    loader = data.make_loader(folder, batch_size=32, num_workers=4, shuffle_buffer=128)
    ids = np.concatenate(epoch_ids(loader))
    assert sorted(ids) == list(range(1850)) and len(epoch_ids(loader)) == loader.num_batches


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_continues_exactly_where_the_epoch_stopped(folder, workers):
    loader = data.make_loader(folder, batch_size=32, seed=2, shuffle_buffer=128, num_workers=workers)
    full = epoch_ids(loader, epoch=3)
    for start in (0, 5, 17, len(full)):
        loader.set_position(3, start)
        rest = [sample_ids(v) for v, _ in loader]
        assert len(rest) == len(full) - start
        assert all(np.array_equal(a, b) for a, b in zip(rest, full[start:], strict=True))
    with pytest.raises(VoxganError, match="start batch"):
        loader.set_position(3, len(full) + 1)


def test_class_subset_relabels_and_keeps_only_those_classes(folder):
    loader = data.make_loader(folder, batch_size=64, classes=["lamp", "chair"])
    assert loader.class_names == ("lamp", "chair")
    batches = list(loader)
    ids = np.concatenate([sample_ids(v) for v, _ in batches])
    labels = np.concatenate([lab.numpy() for _, lab in batches])
    assert sorted(ids) == [i for i in range(1850) if i % 3 in (0, 2)]
    assert np.array_equal(labels, np.where(ids % 3 == 2, 0, 1))
    with pytest.raises(VoxganError, match="unknown class 'sofa'"):
        data.make_loader(folder, batch_size=64, classes=["sofa"])


def test_resolution_mismatch_and_missing_split_are_refused(folder):
    with pytest.raises(VoxganError, match="shards are 16³, not the requested 32³"):
        data.make_loader(folder, batch_size=8, resolution=32)
    with pytest.raises(VoxganError, match="no split 'test'"):
        data.make_loader(folder, batch_size=8, split="test")


def flip_bytes(path):
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 64] = bytes(b ^ 0xFF for b in raw[len(raw) // 2 : len(raw) // 2 + 64])
    path.write_bytes(bytes(raw))


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def rewrite_schema(folder):
    """A shard of schema version 2 whose manifest entry matches its bytes (so only the version is wrong)."""
    path = folder / "train-00001.h5"
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = 2
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["splits"]["train"]["shards"][1]["sha256"] = shards.file_sha256(path)
    shards.write_json_atomic(folder / "manifest.json", manifest)


DAMAGE = {
    "corrupt": (lambda folder: flip_bytes(folder / "train-00001.h5"), "corrupt or truncated"),
    "truncated": (lambda folder: truncate(folder / "train-00001.h5"), "corrupt or truncated"),
    "schema": (rewrite_schema, "schema version 2, this voxgan reads 1"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("workers", [0, 2])
def test_damaged_shards_are_refused_with_a_message_naming_them(tmp_path, damage, workers):
    folder = tmp_path / "damaged"
    write_folder(folder, [300, 300, 300])
    spoil, message = DAMAGE[damage]
    spoil(folder)
    loader = data.make_loader(folder, batch_size=32, num_workers=workers)
    with pytest.raises(VoxganError) as raised:
        list(loader)
    text = str(raised.value)
    assert "train-00001.h5" in text and message in text
    assert "\n" not in text and "Traceback" not in text


def test_missing_shard_is_refused_at_once_and_inside_workers(tmp_path):
    folder = tmp_path / "missing"
    write_folder(folder, [300, 300])
    loader = data.make_loader(folder, batch_size=32, num_workers=2, multiprocessing_context="spawn")
    (folder / "train-00000.h5").unlink()
    with pytest.raises(VoxganError, match="train-00000.h5: shard listed in manifest.json is missing"):
        list(loader)
    with pytest.raises(VoxganError, match="train-00000.h5: shard listed in manifest.json is missing"):
        data.make_loader(folder, batch_size=32)
    (folder / "manifest.json").unlink()
    with pytest.raises(VoxganError, match="no manifest.json"):
        data.make_loader(folder, batch_size=32)


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
    shards.write_json_atomic(folder / "manifest.json", manifest)
    voxels = torch.cat([v for v, _ in data.make_loader(folder, batch_size=64, augment=True)])[:, 0].numpy()
    assert voxels.shape == (256, r, r, r)
    z_profile = voxels.sum(axis=(1, 2))  # (N, R): mass per height
    assert (z_profile == grid.sum(axis=(0, 1))).all()  # every sample keeps its mass per height
    footprints = {tuple(np.argwhere(v[:, :, 10]).min(0)) for v in voxels}
    assert len(footprints) == 8  # the post is seen in all 8 turns and flips about z
    assert {int(v.sum()) for v in voxels} == {int(grid.sum())}
    in_workers = torch.cat(
        [v for v, _ in data.make_loader(folder, batch_size=64, augment=True, num_workers=2)]
    )
    assert torch.equal(in_workers[:64, 0], torch.from_numpy(voxels[:64]))  # the same turns, decoded in main


@pytest.mark.parametrize("source", ["synthetic:noise", "synthetic:shapes"])
@pytest.mark.parametrize("resolution", [16, 32, 64])
def test_synthetic_sources_at_each_resolution(source, resolution):
    batch = 8
    loader = data.make_loader(source, batch_size=batch, resolution=resolution, epoch_size=20, seed=1)
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
        data.make_loader(source, batch_size=batch, resolution=resolution, epoch_size=20, seed=1), 0
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
        loader = data.make_loader(
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
    grids = data.rasterise_shapes(rng, kinds, 32).astype(bool)
    fill = grids.reshape(64, -1).mean(1)
    assert (fill > 0.005).all()
    # a torus has a hole along its axis: its centre of mass is empty far more often than for solid shapes
    centres = [tuple(np.round(np.argwhere(g).mean(0)).astype(int)) for g in grids]
    hollow = np.array([not g[c] for g, c in zip(grids, centres, strict=True)])
    assert hollow[kinds == 3].mean() > 0.8 and not hollow[kinds != 3].any()


def test_shapes_class_subset_and_bad_sources():
    loader = data.make_loader("synthetic:shapes", batch_size=32, epoch_size=64, classes=["torus", "box"])
    assert loader.class_names == ("torus", "box")
    labels = torch.cat([lab for _, lab in loader])
    assert set(labels.tolist()) == {0, 1}
    with pytest.raises(VoxganError, match="unknown source"):
        data.make_loader("synthetic:cubes", batch_size=4)
    with pytest.raises(VoxganError, match="no classes"):
        data.make_loader("synthetic:noise", batch_size=4, classes=["a"])


def test_resume_point_follows_the_dataloader_round_robin():
    assert data.resume_point([3, 3], 0) == ([0, 0], 0)
    assert data.resume_point([3, 3], 3) == ([2, 1], 1)
    assert data.resume_point([3, 1], 3) == ([2, 1], 0)
    assert data.resume_point([2, 2], 4) == ([2, 2], 0)


def test_worker_failure_message_reaches_the_command_line(tmp_path):
    folder = tmp_path / "cli"
    write_folder(folder, [100])
    flip_bytes(folder / "train-00000.h5")
    script = textwrap.dedent(
        f"""
        from voxgan import data
        from voxgan.errors import VoxganError
        try:
            list(data.make_loader({str(folder)!r}, batch_size=8, num_workers=2))
        except VoxganError as error:
            print("ERR", error)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ERR ") and out.stdout.count("\n") == 1 and "train-00000.h5" in out.stdout


def test_bad_rank_and_empty_epochs_are_refused(folder):
    with pytest.raises(VoxganError, match="rank 2 is not in 0..world_size-1"):
        data.make_loader(folder, batch_size=8, rank=2, world_size=2)
    with pytest.raises(VoxganError, match="make no whole batch of 1000 per rank"):
        data.make_loader(folder, batch_size=1000, drop_last=True, rank=0, world_size=2)
    with pytest.raises(VoxganError, match="make no whole batch"):
        data.make_loader("synthetic:noise", batch_size=64, epoch_size=10, drop_last=True)


def test_each_shard_is_hashed_once_and_again_when_it_changes(tmp_path):
    folder = tmp_path / "hashed"
    write_folder(folder, [200, 200])
    loader = data.make_loader(folder, batch_size=32, num_workers=2)  # workers are new processes each epoch
    assert len(epoch_ids(loader, 0)) == loader.num_batches
    sizes = [(folder / f"train-0000{i}.h5").stat().st_size for i in range(2)]
    assert loader.dataset._verified[:, 0].tolist() == sizes  # the workers' checks reached the main process
    flip_bytes(folder / "train-00001.h5")
    with pytest.raises(VoxganError, match="train-00001.h5: corrupt or truncated"):
        epoch_ids(loader, 1)
