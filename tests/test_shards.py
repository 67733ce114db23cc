import json

import h5py
import numpy as np
import pytest

from tests.meshfiles import write_off_modelnet_header
from voxgan import shards
from voxgan.errors import VoxganError


def _write(tmp_path, count=5, r=16, seed=0):
    rng = np.random.default_rng(seed)
    occ = rng.random((count, r, r, r)) < 0.3
    header = shards.ShardHeader(resolution=r, class_names=("a", "b"), recipe="test")
    entry = shards.write_shard(
        tmp_path / shards.shard_name("train", 0),
        header,
        shards.pack(occ),
        labels=np.arange(count) % 2,
        sources=[f"m{i}.obj" for i in range(count)],
        mesh_to_grid=np.tile(np.eye(4), (count, 1, 1)),
    )
    return occ, entry


def test_pack_matches_the_documented_numpy_layout():
    occ = np.random.default_rng(1).random((3, 16, 16, 16)) < 0.5
    packed = shards.pack(occ)
    assert packed.shape == (3, 512)
    assert np.array_equal(packed[1], np.packbits(occ[1].reshape(-1)))
    assert np.array_equal(shards.unpack(packed, 16), occ)


def test_shard_round_trip_with_plain_h5py(tmp_path):
    occ, entry = _write(tmp_path)
    assert entry["file"] == "train-00000.h5" and entry["count"] == 5
    with h5py.File(tmp_path / "train-00000.h5") as f:
        assert f.attrs["schema_version"] == 2 and f.attrs["packing"] == "bits"
        assert json.loads(f.attrs["class_names"]) == ["a", "b"]
        assert f["voxels"].dtype == np.uint8 and f["labels"].dtype == np.int32
        grid = np.unpackbits(f["voxels"][2]).reshape(16, 16, 16).astype(bool)
    assert np.array_equal(grid, occ[2])
    shard = shards.read_shard(tmp_path / "train-00000.h5")
    assert shard.sources[4] == "m4.obj" and shard.mesh_to_grid.shape == (5, 4, 4)
    assert list(tmp_path.iterdir()) == [tmp_path / "train-00000.h5"]  # no temporary left behind


def test_verify_names_missing_and_corrupt_shards(tmp_path):
    _, entry = _write(tmp_path)
    manifest = {"schema_version": 1, "splits": {"train": {"count": 5, "shards": [entry]}}}
    shards.write_json_atomic(tmp_path / "manifest.json", manifest)
    assert shards.verify(tmp_path) == []
    data = bytearray((tmp_path / "train-00000.h5").read_bytes())
    data[-100] ^= 0xFF
    (tmp_path / "train-00000.h5").write_bytes(bytes(data))
    assert shards.verify(tmp_path) == ["train-00000.h5: corrupt (sha256 differs from the manifest)"]
    (tmp_path / "train-00000.h5").unlink()
    assert shards.verify(tmp_path) == ["train-00000.h5: missing"]


def test_schema_mismatch_is_refused(tmp_path):
    _write(tmp_path)
    with h5py.File(tmp_path / "train-00000.h5", "a") as f:
        f.attrs["schema_version"] = 3
    with pytest.raises(VoxganError, match="schema version 3, this voxgan reads 1 and 2"):
        shards.read_shard(tmp_path / "train-00000.h5")


def write_schema_1_folder(folder, count=6, r=16):
    """A shard folder as voxgan 0.1 wrote it (schema 1, no plan.json), with plain h5py; returns occupancy."""
    folder.mkdir()
    occ = np.random.default_rng(3).random((count, r, r, r)) < 0.4
    with h5py.File(folder / "train-00000.h5", "w") as f:
        f.attrs.update(schema_version=1, resolution=r, mode="solid", packing="bits", split="train")
        f.attrs.update(class_names='["a"]', up_axis="z", voxgan_version="0.1.0", recipe="")
        f["voxels"] = np.packbits(occ.reshape(count, -1), axis=1)
        f["labels"] = np.zeros(count, np.int32)
        f.create_dataset("sources", data=[f"m{i}.obj" for i in range(count)], dtype=h5py.string_dtype())
        f["mesh_to_grid"] = np.tile(np.eye(4), (count, 1, 1))
    sha256 = shards.file_sha256(folder / "train-00000.h5")
    entry = {"file": "train-00000.h5", "count": count, "sha256": sha256}
    manifest = {
        "schema_version": 1, "complete": True, "resolution": r, "mode": "solid", "layout": "flat",
        "recipe": None, "classes": ["a"], "errors": [], "skipped": {}, "config": {}, "seconds": 1.0,
        "splits": {"train": {"count": count, "shards": [entry]}},
        "progress": {"train": [count]}, "voxgan_version": "0.1.0",
    }  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return occ


def test_a_schema_1_folder_still_reads_and_is_not_resumed_by_mistake(tmp_path):
    from voxgan.data import make_loader
    from voxgan.ingest import pipeline
    from voxgan.ingest.info import run_info

    occ = write_schema_1_folder(tmp_path / "old")
    summary, problems = run_info(tmp_path / "old")
    assert problems == [] and "total" in summary
    batches = make_loader(tmp_path / "old", batch_size=4, shuffle=False)
    voxels = np.concatenate([v.numpy() for v, _ in batches])
    assert np.array_equal(voxels[:, 0].astype(bool), occ)
    write_off_modelnet_header(tmp_path / "in" / "box.off")
    config = pipeline.make_config(tmp_path / "in", tmp_path / "old", workers=1)
    with pytest.raises(VoxganError, match="without plan.json.*--overwrite"):
        pipeline.run_voxelize(config, progress=False)
