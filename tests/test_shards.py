import json

import h5py
import numpy as np
import pytest

from tests.meshfiles import write_off_modelnet_header
from voxgan import shards
from voxgan.atomic import write_json_atomic
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
    manifest = {"schema_version": 1, "resolution": 16, "splits": {"train": {"count": 5, "shards": [entry]}}}
    write_json_atomic(tmp_path / "manifest.json", manifest)
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


# --- a shard folder checked against its manifest (voxgan info --verify, make_loader, read_split) --------


def _folder(tmp_path):
    from tests.data.shard_folders import write_folder

    folder = tmp_path / "shards"
    write_folder(folder, [5, 6], resolution=16)
    return folder


def _rewrite(folder, name="train-00001.h5", manifest_edit=None, **attrs):
    """Change a shard's attributes (or the manifest) and keep the manifest's sha256 right, so only the
    disagreement itself is left to find."""
    path = folder / name
    with h5py.File(path, "r+") as f:
        for key, value in attrs.items():
            f.attrs[key] = value
    manifest = json.loads((folder / "manifest.json").read_text())
    for entry in manifest["splits"]["train"]["shards"]:
        if entry["file"] == name:
            entry["sha256"] = shards.file_sha256(path)
    if manifest_edit is not None:
        manifest_edit(manifest)
    write_json_atomic(folder / "manifest.json", manifest)


def _relabel(folder):
    path = folder / "train-00001.h5"
    with h5py.File(path, "r+") as f:
        f["labels"][0] = 7
    _rewrite(folder)


def _recount(manifest):
    manifest["splits"]["train"]["shards"][1]["count"] = 5
    manifest["splits"]["train"]["count"] = 10


def _not_hdf5(folder):
    (folder / "train-00001.h5").write_bytes(b"not an HDF5 file" * 64)
    _rewrite_sha_only(folder)


def _rewrite_sha_only(folder):
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["splits"]["train"]["shards"][1]["sha256"] = shards.file_sha256(folder / "train-00001.h5")
    write_json_atomic(folder / "manifest.json", manifest)


def _edit_manifest(change):
    def edit(folder):
        manifest = json.loads((folder / "manifest.json").read_text())
        change(manifest)
        write_json_atomic(folder / "manifest.json", manifest)

    return edit


# damage -> (spoil the folder, a piece of the one line that names it)
SHARD_DAMAGE = {
    "missing": (lambda f: (f / "train-00001.h5").unlink(), "train-00001.h5: missing"),
    "corrupt": (lambda f: _flip_last_bytes(f / "train-00001.h5"), "train-00001.h5: corrupt (sha256"),
    "resolution": (
        lambda f: _rewrite(f, resolution=32),
        "train-00001.h5: resolution 32, the manifest says 16",
    ),
    "mode": (lambda f: _rewrite(f, mode="surface"), "train-00001.h5: mode surface, the manifest says solid"),
    "split": (lambda f: _rewrite(f, split="test"), "train-00001.h5: split test, the manifest says train"),
    "classes": (lambda f: _rewrite(f, class_names='["x"]'), "train-00001.h5: class names ['x'] differ"),
    "packing": (lambda f: _rewrite(f, packing="bytes"), "train-00001.h5: unknown packing"),
    "schema": (lambda f: _rewrite(f, schema_version=3), "train-00001.h5: schema version 3"),
    "count": (lambda f: _rewrite(f, manifest_edit=_recount), "train-00001.h5: voxels of shape (6, 512)"),
    "labels": (_relabel, "train-00001.h5: labels outside -1..2"),
    "not hdf5": (_not_hdf5, "train-00001.h5: not a readable shard"),
    "manifest resolution": (
        _edit_manifest(lambda m: m.update(resolution=32)),
        "train-00000.h5: resolution 16, the manifest says 32",
    ),
}
MANIFEST_DAMAGE = {
    "path outside": (
        _edit_manifest(lambda m: m["splits"]["train"]["shards"][0].update(file="../../etc/passwd")),
        "lists '../../etc/passwd', not a shard file name",
    ),
    "split count": (_edit_manifest(lambda m: m["splits"]["train"].update(count=99)), "counts 99 samples"),
    "sha256": (_edit_manifest(lambda m: m["splits"]["train"]["shards"][0].update(sha256=1)), "not a sha256"),
    "not an object": (lambda f: (f / "manifest.json").write_text("[1, 2]"), "not a manifest"),
    "invalid json": (lambda f: (f / "manifest.json").write_text('{"splits": '), "unreadable manifest"),
    "resolution": (_edit_manifest(lambda m: m.update(resolution="16")), "resolution 16 is not a positive"),
}


def _flip_last_bytes(path):
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_good_folder_verifies(tmp_path):
    folder = _folder(tmp_path)
    assert shards.verify(folder) == []
    assert shards.read_split(folder, "train")[0].shape == (11, 16, 16, 16)


@pytest.mark.parametrize("damage", sorted(SHARD_DAMAGE))
def test_each_kind_of_shard_damage_is_named_before_any_sample_is_read(tmp_path, damage):
    """verify names the damaged file; read_split (evaluate, export) and make_loader (train) refuse the
    folder with that one line before a sample is read."""
    from voxgan.data import make_loader

    folder = _folder(tmp_path)
    spoil, message = SHARD_DAMAGE[damage]
    spoil(folder)
    problems = shards.verify(folder, first=True)
    assert len(problems) == 1 and problems[0].startswith(message), problems
    for refuse in (lambda: shards.read_split(folder, "train"), lambda: make_loader(folder, batch_size=4)):
        with pytest.raises(VoxganError) as raised:
            refuse()
        text = str(raised.value)
        assert message.split(":")[0] in text and "\n" not in text


@pytest.mark.parametrize("damage", sorted(MANIFEST_DAMAGE))
def test_each_kind_of_manifest_damage_is_one_line(tmp_path, damage):
    folder = _folder(tmp_path)
    spoil, message = MANIFEST_DAMAGE[damage]
    spoil(folder)
    with pytest.raises(VoxganError, match=re_escape(message)) as raised:
        shards.verify(folder)
    assert "\n" not in str(raised.value) and "manifest.json" in str(raised.value)


def re_escape(text):
    import re

    return re.escape(text)


def _consume(folder):
    """What each reader of a shard folder makes of it: ("ok", sorted sample ids, labels by id) or
    ("refused", the one line); any other exception escapes (a failure)."""
    from tests.data.shard_folders import sample_ids
    from voxgan.data import make_loader
    from voxgan.ingest.info import run_info, run_verify

    try:
        run_info(folder)
        run_verify(folder)
        ids, labels = [], []
        for voxels, batch_labels in make_loader(folder, batch_size=4, shuffle=False):
            ids += sample_ids(voxels).tolist()
            labels += batch_labels.tolist()
        volumes, split_labels, _ = shards.read_split(folder, "train")
    except VoxganError as error:
        assert str(error) and "\n" not in str(error), str(error)
        return ("refused", str(error))
    assert len(volumes) == len(ids) and sorted(split_labels.tolist()) == sorted(labels)
    return ("ok", sorted(ids), sorted(zip(ids, labels, strict=True)))


def test_damaged_manifests_are_refused_in_one_line_or_read_right(tmp_path):
    """A seeded run of the campaign's damage over manifest.json (values replaced by hostile ones, keys
    dropped, lists wrapped): info, info --verify, make_loader and read_split each refuse it in one line or
    read exactly the samples and labels of the undamaged folder, never a wrong batch."""
    import random

    from tests.hostile import mutated_json

    folder = _folder(tmp_path)
    good = json.loads((folder / "manifest.json").read_text())
    expected = _consume(folder)
    assert expected[0] == "ok" and expected[1] == list(range(11))
    rng, outcomes = random.Random(3), []
    for _ in range(60):
        (folder / "manifest.json").write_text(json.dumps(mutated_json(good, rng)))
        outcome = _consume(folder)
        assert outcome[0] == "refused" or outcome == expected, outcome
        outcomes.append(outcome[0])
    assert outcomes.count("refused") > 10 and "ok" in outcomes


def _damaged_shard_rounds(folder, seed, rounds, report):
    """In a child process (HDF5 on damaged bytes may crash a process, which the parent then reports):
    damage train-00001.h5 (its sha256 updated in the manifest, so the damage itself must be found)."""
    import random

    from tests.hostile import mutated_bytes

    path = folder / "train-00001.h5"
    good, manifest = path.read_bytes(), json.loads((folder / "manifest.json").read_text())
    expected = _consume(folder)
    rng, outcomes = random.Random(seed), []
    for _ in range(rounds):
        path.write_bytes(mutated_bytes(good, rng))
        manifest["splits"]["train"]["shards"][1]["sha256"] = shards.file_sha256(path)
        write_json_atomic(folder / "manifest.json", manifest)
        outcome = _consume(folder)
        outcomes.append("wrong" if outcome[0] == "ok" and outcome != expected else outcome[0])
    report.write_text(json.dumps(outcomes))


def test_damaged_shards_are_refused_in_one_line_or_read_right(tmp_path):
    """Bytes of a shard damaged (flips, truncation, words) with the manifest's sha256 kept right: each
    reader refuses in one line or reads the undamaged samples; never a crash, never a wrong batch."""
    import multiprocessing

    folder = _folder(tmp_path)
    report = tmp_path / "outcomes.json"
    child = multiprocessing.get_context("fork").Process(
        target=_damaged_shard_rounds, args=(folder, 5, 40, report)
    )
    child.start()
    child.join(600)
    assert child.exitcode == 0, f"the reading process ended with {child.exitcode}"
    outcomes = json.loads(report.read_text())
    assert "wrong" not in outcomes and outcomes.count("refused") > 10, outcomes
