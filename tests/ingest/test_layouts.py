from pathlib import Path

import pytest

from voxgan.errors import VoxganError
from voxgan.ingest import layouts

EXTENSIONS = {".obj", ".off", ".stl", ".ply", ".glb", ".gltf", ".binvox"}


def touch(root: Path, *relative: str) -> None:
    for name in relative:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def test_discovery_is_sorted_and_counts_skipped_files_by_extension(tmp_path):
    touch(tmp_path, "b/2.OFF", "a/1.obj", "a/10.obj", "a/texture.PNG", "a/model.mtl", "README", "b/notes.txt")
    touch(tmp_path, ".DS_Store", "a/._1.obj", "__MACOSX/a/._1.obj", ".git/objects/x")
    found = layouts.find_mesh_files(tmp_path, EXTENSIONS)
    assert found.mesh_paths == ["a/1.obj", "a/10.obj", "b/2.OFF"]
    assert found.skipped == {"(hidden)": 4, "(none)": 1, ".mtl": 1, ".png": 1, ".txt": 1}


def test_include_patterns_match_from_the_right_and_the_rest_is_skipped(tmp_path):
    touch(
        tmp_path,
        "02691156/m1/models/model_normalized.obj",
        "02691156/m1/models/model_normalized.solid.binvox",
    )
    touch(tmp_path, "02691156/m1/images/other.obj")
    found = layouts.find_mesh_files(
        tmp_path, EXTENSIONS, include=("model.obj", "models/model_normalized.obj")
    )
    assert found.mesh_paths == ["02691156/m1/models/model_normalized.obj"]
    assert found.skipped == {".binvox": 1, ".obj": 1}


def test_output_folder_inside_the_input_is_not_searched(tmp_path):
    touch(tmp_path, "a/1.obj", "shards/leftover.obj")
    found = layouts.find_mesh_files(tmp_path, EXTENSIONS, exclude_dirs=(tmp_path / "shards",))
    assert found.mesh_paths == ["a/1.obj"]


@pytest.mark.parametrize(
    ("paths", "layout"),
    [
        (["chair/train/chair_0001.off", "chair/test/chair_0900.off", "bed/train/bed_0001.off"], "modelnet"),
        (["ModelNet10/chair/train/c.off", "ModelNet10/sofa/test/s.off"], "modelnet"),
        (["02691156/1a04/model.obj", "03001627/1b05/model.obj"], "shapenet"),
        (
            ["02691156/1a04/models/model_normalized.obj", "03001627/ff/models/model_normalized.obj"],
            "shapenet",
        ),
        (["chairs/a.obj", "chairs/sub/b.stl", "tables/c.ply"], "folder"),
        (["raw_meshes/32770.stl", "raw_meshes/34785.stl"], "flat"),
        (["1.stl", "2.stl"], "flat"),
        (["chairs/a.obj", "loose.obj"], "flat"),
        ([], "flat"),
    ],
)
def test_auto_detection(paths, layout):
    assert layouts.detect_layout(paths) == layout


def test_modelnet_classes_and_splits_come_from_the_folders():
    entries, errors = layouts.assign_entries(
        ["bed/test/bed_1.off", "bed/train/bed_2.off", "extra/bed_3.off"], "modelnet"
    )
    assert [(e.source, e.class_name, e.split) for e in entries] == [
        ("bed/test/bed_1.off", "bed", "test"),
        ("bed/train/bed_2.off", "bed", "train"),
    ]
    assert errors == [("extra/bed_3.off", "does not fit the modelnet layout <class>/{train,test}/<file>")]


def test_shapenet_takes_one_model_file_per_folder_and_names_classes_from_synsets():
    paths = [
        "03001627/aa/models/model_normalized.obj",
        "03001627/aa/models/part.obj",
        "03001627/bb/model.obj",
        "09999999/cc/model.obj",
    ]
    entries, errors = layouts.assign_entries(
        paths, "shapenet", class_map={"03001627": "chair"}, split_table={"aa": "val", "bb": "train"}
    )
    assert [(e.source, e.class_name, e.split) for e in entries] == [
        ("03001627/aa/models/model_normalized.obj", "chair", "val"),
        ("03001627/bb/model.obj", "chair", "train"),
        ("09999999/cc/model.obj", "09999999", layouts.hash_split("09999999/cc/model.obj", 0.2)),
    ]
    assert len(errors) == 1 and errors[0][0] == "03001627/aa/models/part.obj"
    assert "models/model_normalized.obj" in errors[0][1]


def test_folder_and_flat_split_by_a_stable_hash_of_the_path():
    paths = [f"class{i % 3}/mesh_{i:04d}.stl" for i in range(2000)]
    entries, _ = layouts.assign_entries(paths, "folder", test_fraction=0.2)
    test_share = sum(e.split == "test" for e in entries) / len(entries)
    assert 0.17 < test_share < 0.23
    assert {e.class_name for e in entries} == {"class0", "class1", "class2"}
    again, _ = layouts.assign_entries(list(reversed(paths)), "folder", test_fraction=0.2)
    assert {e.source: e.split for e in again} == {e.source: e.split for e in entries}
    flat, _ = layouts.assign_entries(paths, "flat", test_fraction=0.2)
    assert all(e.class_name is None for e in flat)
    assert [e.split for e in flat] == [e.split for e in entries]
    # pinned: the split of a path must never change between voxgan versions
    pinned = ["train", "train", "test", "train", "train", "train", "test", "test"]
    assert [layouts.hash_split(f"m{i}.stl", 0.5) for i in range(8)] == pinned
    assert (
        layouts.hash_split("anything.obj", 0.0) == "train"
        and layouts.hash_split("anything.obj", 1.0) == "test"
    )


def test_folder_layout_reports_files_outside_class_folders():
    entries, errors = layouts.assign_entries(["a/x.obj", "y.obj"], "folder")
    assert [e.source for e in entries] == ["a/x.obj"]
    assert errors == [("y.obj", "does not fit the folder layout <class>/.../<file> (no class folder)")]


def test_labels_follow_a_fixed_class_list():
    entry = layouts.MeshEntry("bed/train/b.off", "bed", "train")
    assert layouts.label_of(entry, ("bathtub", "bed")) == 1
    assert layouts.label_of(layouts.MeshEntry("x.stl", None, "test"), ()) == -1
    assert layouts.class_names_of([entry], ()) == ("bed",)


def test_shapenet_split_file(tmp_path):
    csv = tmp_path / "all.csv"
    csv.write_text(
        "id,synsetId,subSynsetId,modelId,split\n1,03001627,03001627,aa,train\n2,03001627,x,bb,test\n"
    )
    assert layouts.read_shapenet_split_file(csv) == {"aa": "train", "bb": "test"}
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(VoxganError, match="not a ShapeNet split file"):
        layouts.read_shapenet_split_file(csv)
