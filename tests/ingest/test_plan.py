"""The work plan: units cut from each split's files, parts that share them, the plan file's checks."""

import json

import pytest

from voxgan.atomic import write_once
from voxgan.ingest import plan


def files(train: int, test: int) -> list[list]:
    """Plan rows [source, size, split, label] for ``train`` + ``test`` files, one refused file between."""
    rows = [[f"a/{i:03d}.off", 100 + i, "train" if i < train else "test", i % 3] for i in range(train + test)]
    return sorted([*rows, ["a/bad.off", 7, None, None]])


def make(rows, shard_size=4, **options) -> dict:
    return plan.make_plan(
        {"resolution": 16, "workers": 2, **options}, "flat", ["x"], rows, ["train", "test"], shard_size
    )


def test_each_split_is_cut_into_units_of_shard_size_files_in_input_order():
    work = make(files(10, 5))
    assert work["units"] == {"train": [0, 4, 8, 10], "test": [0, 4, 5]}
    units = plan.units_of(work)
    assert [u.name for u in units] == [
        "train-00000", "train-00001", "train-00002", "test-00000", "test-00001"
    ]  # fmt: skip
    assert units[2].sources == ("a/008.off", "a/009.off") and units[2].labels == (2, 0)
    assert [s for u in units for s in u.sources] == [f"a/{i:03d}.off" for i in range(15)]  # bad.off refused
    assert "workers" not in work["options"]  # how a run is done is not part of what it makes


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_the_parts_do_every_unit_once(n):
    units = plan.units_of(make(files(23, 9), shard_size=3))
    done = [u for k in range(n) for u in plan.units_of_part(units, k, n)]
    assert sorted(u.name for u in done) == sorted(u.name for u in units)


@pytest.mark.parametrize("text", ["3/3", "-1/3", "1/0", "1", "a/b", "1/3/4", ""])
def test_bad_parts_are_refused_in_one_line(text):
    with pytest.raises(ValueError, match="K/N|0 to N-1") as caught:
        plan.parse_part(text)
    assert "\n" not in str(caught.value)


def test_parse_part_reads_zero_based_k_of_n():
    assert plan.parse_part("0/1") == (0, 1) and plan.parse_part(" 4/5 ") == (4, 5)


def test_the_plan_file_is_json_with_one_line_per_input_file(tmp_path):
    work = make(files(5, 2))
    text = plan.plan_text(work)
    assert json.loads(text) == work
    assert sum(line.strip().startswith('["a/') for line in text.splitlines()) == len(work["files"])


def test_a_folder_keeps_the_first_plan_and_names_what_differs(tmp_path):
    first = make(files(5, 2))
    assert plan.claim(tmp_path, first) == first
    assert plan.claim(tmp_path, make(files(6, 2))) == first  # the folder keeps its plan
    assert plan.difference(first, make(files(5, 2), workers=8)) is None
    option, words = plan.difference(first, make(files(5, 2), resolution=32))
    assert option == "--resolution" and "resolution 16, now 32" in words
    grown = files(5, 2)
    grown[0][1] += 1
    option, words = plan.difference(first, make([*grown, ["a/new.off", 3, "test", 0]]))
    assert (
        option is None
        and "1 added (first: a/new.off)" in words
        and "1 changed size (first: a/000.off)" in words
    )
    moved = [[s, size, "test" if split == "train" else split, label] for s, size, split, label in files(5, 2)]
    assert "other splits or classes" in plan.difference(first, make(moved))[1]


def test_write_once_lets_the_first_writer_win_and_leaves_no_temporary(tmp_path):
    assert write_once(tmp_path / "plan.json", b"first") is True
    assert write_once(tmp_path / "plan.json", b"second") is False
    assert (tmp_path / "plan.json").read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]


def test_damaged_plans_and_unit_records_are_refused_or_redone(tmp_path):
    """A seeded run of the campaign's damage over plan.json and units/*.json of a finished folder, then
    the same voxelize again: a damaged plan is refused in one line (--overwrite starts afresh), a damaged
    unit record is done again; whatever ends well ends with the undamaged run's shards."""
    import json
    import random

    from tests.hostile import mutated_bytes, mutated_json
    from tests.meshfiles import box_triangles, box_vertices, write_off
    from voxgan import shards
    from voxgan.errors import VoxganError
    from voxgan.ingest import pipeline

    for i in range(6):
        write_off(tmp_path / "in" / f"box{i}.off", box_vertices(high=(1 + i, 1, 2)), box_triangles())
    config = pipeline.make_config(tmp_path / "in", tmp_path / "out", resolution=8, shard_size=2, workers=1)
    expected = pipeline.run_voxelize(config, progress=False)
    folder = tmp_path / "out"
    plan, records = (folder / "plan.json").read_bytes(), sorted((folder / "units").glob("*.json"))
    rng, outcomes = random.Random(4), []
    for attempt in range(24):
        target = folder / "plan.json" if attempt % 2 else rng.choice(records)
        good = target.read_bytes()
        damaged = (
            mutated_bytes(good, rng)
            if rng.random() < 0.3
            else json.dumps(mutated_json(json.loads(good), rng))
        )
        target.write_bytes(damaged if isinstance(damaged, bytes) else damaged.encode())
        try:
            manifest = pipeline.run_voxelize(config, progress=False)
        except VoxganError as error:
            assert target.name == "plan.json" and "\n" not in str(error), str(error)
            outcomes.append("refused")
        else:
            assert manifest["splits"] == expected["splits"] and manifest["errors"] == expected["errors"]
            assert all(shards.verify(folder) == [] for _ in [0])
            outcomes.append("done")
        target.write_bytes(good if target.name != "plan.json" else plan)
    assert "refused" in outcomes and "done" in outcomes, outcomes
