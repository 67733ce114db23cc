import json

import h5py
import numpy as np
import pytest

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
        assert f.attrs["schema_version"] == 1 and f.attrs["packing"] == "bits"
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
        f.attrs["schema_version"] = 2
    with pytest.raises(VoxganError, match="schema version 2"):
        shards.read_shard(tmp_path / "train-00000.h5")
