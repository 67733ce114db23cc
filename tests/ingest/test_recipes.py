"""Each recipe on a small fixture tree in its dataset's real layout; count warnings; CLI overrides."""

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.meshfiles import (
    box_triangles,
    box_vertices,
    write_binvox,
    write_mat_v5,
    write_obj_triangles,
    write_off,
    write_stl_binary,
)
from voxgan import shards
from voxgan.errors import VoxganError
from voxgan.ingest import pipeline, recipes
from voxgan.ingest.frame import up_to_z


def chair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A z-up chair of boxes: seat, a back on the low-x side, four legs. vertices (V, 3), faces (F, 3)."""
    rng = np.random.default_rng(seed)
    width, depth, height = 1.2 + 0.3 * rng.random(), 1.0 + 0.3 * rng.random(), 1.0
    leg = 0.2
    parts = [((0, 0, height), (width, depth, height + 0.2)), ((0, 0, height), (leg, depth, height * 2.3))]
    parts += [((x, y, 0), (x + leg, y + leg, height)) for x in (0, width - leg) for y in (0, depth - leg)]
    vertices = np.concatenate([box_vertices(low, high) for low, high in parts])
    faces = np.concatenate([box_triangles() + 8 * i for i in range(len(parts))])
    return vertices, faces


def y_up(vertices: np.ndarray) -> np.ndarray:
    """The same shape as a y-up dataset stores it (ShapeNet): the inverse of the y-up -> z-up turn."""
    return vertices @ up_to_z("y")[:3, :3]


def run(recipe: str, input_dir: Path, output_dir: Path, **options) -> tuple[dict, list[str]]:
    notes: list[str] = []
    config = pipeline.make_config(input_dir, output_dir, recipes.load_recipe(recipe), workers=1, **options)
    return pipeline.run_voxelize(config, report=notes.append, progress=False), notes


def samples(folder: Path, manifest: dict) -> dict[str, tuple[str, int, np.ndarray]]:
    """source -> (split, label, occupancy) over every shard of a run."""
    found = {}
    for split, info in manifest["splits"].items():
        for entry in info["shards"]:
            shard = shards.read_shard(folder / entry["file"])
            assert shard.header.recipe == manifest["recipe"]["name"]
            for source, label, grid in zip(shard.sources, shard.labels, shard.occupancy, strict=True):
                found[source] = (split, int(label), grid)
    return found


def test_every_shipped_recipe_parses():
    assert recipes.recipe_names() == [
        "3dshapenets",
        "folder",
        "modelnet10",
        "modelnet40",
        "shapenetcore",
        "shapes",
        "thingi10k",
    ]
    for name in recipes.recipe_names():
        recipe = recipes.load_recipe(name)
        assert recipe.name == name and recipe.description and recipe.text.startswith("#")
        assert recipe.up_axis in ("x", "y", "z", "-x", "-y", "-z")  # each states its dataset's up axis
    assert len(recipes.load_recipe("modelnet40").class_names) == 40
    synsets = recipes.shapenet_class_map()
    assert len(synsets) == 55 and len(set(synsets.values())) == 55 and synsets["03001627"] == "chair"


def test_bad_recipes_are_refused_with_the_reason(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('layout = "modelnet"\ncolour = "red"\n')
    with pytest.raises(VoxganError, match="unknown key 'colour'"):
        recipes.load_recipe(str(path))
    path.write_text('layout = "stacked"\n')
    with pytest.raises(VoxganError, match="layout 'stacked'"):
        recipes.load_recipe(str(path))
    path.write_text("[voxelize]\nresolution = 32\nsmooth = true\n")
    with pytest.raises(VoxganError, match=r"unknown \[voxelize\] key 'smooth'"):
        recipes.load_recipe(str(path))
    with pytest.raises(VoxganError, match="unknown recipe 'modelnet11'.*modelnet10"):
        recipes.load_recipe("modelnet11")


@pytest.mark.parametrize("name", ["modelnet10", "modelnet40"])
def test_modelnet_recipes_label_with_the_full_class_list_and_warn_about_counts(tmp_path, name):
    root = tmp_path / name
    wanted = {"modelnet10": ("bed", "toilet"), "modelnet40": ("airplane", "xbox")}[name]
    for c, cls in enumerate(wanted):
        for split, n in (("train", 2), ("test", 1)):
            for i in range(n):
                write_off(root / cls / split / f"{cls}_{i:04d}.off", *chair(10 * c + i), fused_header=True)
    write_off(root / "dragon" / "train" / "dragon_0001.off", *chair(99))
    (root / wanted[0] / "train" / "notes.txt").write_text("not taken")
    manifest, notes = run(name, root, tmp_path / "out")
    recipe = recipes.load_recipe(name)
    assert manifest["classes"] == list(recipe.class_names)
    assert manifest["recipe"] == {"name": name, "text": recipe.text}
    reason = f"class 'dragon' is not one of the recipe's {len(recipe.class_names)} classes"
    assert manifest["errors"] == [{"source": "dragon/train/dragon_0001.off", "reason": reason}]
    assert manifest["skipped"] == {".txt": 1}
    found = samples(tmp_path / "out", manifest)
    assert {s: (split, label) for s, (split, label, _) in found.items()} == {
        f"{cls}/{split}/{cls}_{i:04d}.off": (split, recipe.class_names.index(cls))
        for cls in wanted
        for split, n in (("train", 2), ("test", 1))
        for i in range(n)
    }
    warning = [n for n in notes if n.startswith("warning:")]
    assert (
        len(warning) == 1 and f"train: found 4, a complete copy has {recipe.expected['train']}" in warning[0]
    )


def test_shapenetcore_v1_and_v2_trees_stand_up_like_modelnet(tmp_path):
    vertices, faces = chair(3)
    write_off(tmp_path / "mn" / "chair" / "train" / "chair_0001.off", vertices, faces, fused_header=True)
    upright, _ = run("modelnet10", tmp_path / "mn", tmp_path / "mn_out")
    reference = samples(tmp_path / "mn_out", upright)["chair/train/chair_0001.off"][2]
    top_x = np.nonzero(reference[:, :, 14].any(axis=1))[0]  # the back, on the low-x side, reaches the top
    seat_x = np.nonzero(reference.any(axis=(1, 2)))[0]
    assert reference[:, :, 0].sum() > 0 and len(top_x) and top_x.max() < seat_x.mean()

    v1 = tmp_path / "ShapeNetCore.v1"
    write_obj_triangles(
        v1 / "03001627" / "1a6f615e8b1b5ae4dbbc9440457e303e" / "model.obj", y_up(vertices), faces
    )
    (v1 / "03001627" / "1a6f615e8b1b5ae4dbbc9440457e303e" / "model.mtl").write_text("newmtl a\n")
    write_obj_triangles(
        v1 / "04379243" / "1a00aa6b75362cc5b324368d54a7416f" / "model.obj", y_up(vertices), faces
    )
    manifest, _ = run("shapenetcore", v1, tmp_path / "v1_out")
    assert manifest["layout"] == "shapenet" and manifest["skipped"] == {".mtl": 1}
    assert manifest["classes"] == ["chair", "table"]  # from the synset ids
    found = samples(tmp_path / "v1_out", manifest)
    assert [found[s][1] for s in sorted(found)] == [0, 1]
    for _, _, grid in found.values():
        assert np.array_equal(grid, reference)  # y-up ShapeNet ends +z up, the same as z-up ModelNet

    v2 = tmp_path / "ShapeNetCore.v2"
    models = []
    for synset, model in [
        ("03001627", "aa01"),
        ("03001627", "aa02"),
        ("02691156", "bb01"),
        ("02691156", "bb02"),
    ]:
        folder = v2 / synset / model / "models"
        write_obj_triangles(folder / "model_normalized.obj", y_up(vertices), faces)
        write_binvox(folder / "model_normalized.solid.binvox")
        (folder / "model_normalized.json").write_text("{}")
        models.append(f"{synset}/{model}/models/model_normalized.obj")
    split_file = tmp_path / "all.csv"
    split_file.write_text(
        "id,synsetId,subSynsetId,modelId,split\n1,03001627,03001627,aa01,train\n2,03001627,03001627,aa02,val\n"
        "3,02691156,02691156,bb01,test\n4,02691156,02691156,bb02,train\n"
    )
    manifest, notes = run("shapenetcore", v2, tmp_path / "v2_out", split_file=split_file)
    assert manifest["skipped"] == {".binvox": 4, ".json": 4}
    assert list(manifest["splits"]) == ["train", "val", "test"]
    found = samples(tmp_path / "v2_out", manifest)
    assert {s: (split, label) for s, (split, label, _) in found.items()} == {
        models[0]: ("train", 1), models[1]: ("val", 1), models[2]: ("test", 0), models[3]: ("train", 0)
    }  # fmt: skip
    assert all(np.array_equal(grid, reference) for _, _, grid in found.values())
    assert any("total: found 4, a complete copy has 52472" in n for n in notes)


def test_thingi10k_is_a_flat_folder_of_stl_without_classes(tmp_path):
    vertices, faces = chair(1)
    for thing in (32770, 34785, 35269, 36069, 37266):
        write_stl_binary(tmp_path / "Thingi10K" / "raw_meshes" / f"{thing}.stl", vertices[faces])
    (tmp_path / "Thingi10K" / "metadata.csv").write_text("id\n")
    manifest, notes = run("thingi10k", tmp_path / "Thingi10K", tmp_path / "out")
    assert manifest["layout"] == "flat" and manifest["classes"] == [] and manifest["skipped"] == {".csv": 1}
    found = samples(tmp_path / "out", manifest)
    assert len(found) == 5 and {label for _, label, _ in found.values()} == {-1}
    assert any("total: found 5, a complete copy has 10000" in n for n in notes)


def test_folder_recipe_takes_classes_from_first_folders_and_splits_by_hash(tmp_path):
    vertices, faces = chair(2)
    sources = [
        f"{cls}/{sub}mesh_{i}.obj" for cls in ("cups", "plates") for sub in ("", "deep/") for i in range(5)
    ]
    for source in sources:
        write_obj_triangles(tmp_path / "mine" / source, vertices, faces)
    manifest, notes = run("folder", tmp_path / "mine", tmp_path / "out", test_fraction=0.5)
    assert manifest["layout"] == "folder" and manifest["classes"] == ["cups", "plates"]
    assert not [n for n in notes if n.startswith("warning")]
    found = samples(tmp_path / "out", manifest)
    assert sorted(found) == sorted(sources)
    for source, (split, label, _) in found.items():
        assert split == ("test" if pipeline.layouts.hash_split(source, 0.5) == "test" else "train")
        assert label == ["cups", "plates"].index(source.split("/")[0])


def test_shapes_recipe_on_the_generated_dataset(tmp_path):
    from voxgan.ingest.shapes import generate_shapes

    generate_shapes(tmp_path / "shapes", train_per_class=1, test_per_class=1)
    manifest, notes = run("shapes", tmp_path / "shapes", tmp_path / "out")
    assert manifest["errors"] == [] and manifest["classes"] == list(recipes.load_recipe("shapes").class_names)
    assert manifest["splits"]["train"]["count"] == 10 and manifest["splits"]["test"]["count"] == 10
    assert any("train: found 10, a complete copy has 1000" in n for n in notes)


def test_command_line_options_override_the_recipe(tmp_path):
    vertices, faces = chair(4)
    write_off(tmp_path / "mn" / "sofa" / "train" / "sofa_0001.off", vertices, faces)
    write_obj_triangles(tmp_path / "mn" / "sofa" / "train" / "sofa_0002.obj", vertices, faces)
    done = subprocess.run(
        [sys.executable, "-m", "voxgan", "voxelize", str(tmp_path / "mn"), str(tmp_path / "out"), "--recipe",
         "modelnet10", "--resolution", "32", "--include", "*.obj", "--mode", "surface", "--workers", "1"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "warning: this copy differs from a complete modelnet10" in done.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["resolution"] == 32 and manifest["mode"] == "surface"
    assert manifest["config"]["include"] == ["*.obj"] and manifest["config"]["recipe"] == "modelnet10"
    assert manifest["recipe"]["text"] == recipes.load_recipe("modelnet10").text
    assert manifest["skipped"] == {".off": 1} and manifest["splits"]["train"]["count"] == 1
    with h5py.File(tmp_path / "out" / "train-00000.h5") as f:
        assert (
            f.attrs["recipe"] == "modelnet10" and f.attrs["resolution"] == 32 and f.attrs["mode"] == "surface"
        )


def test_3dshapenets_volumes_take_the_class_above_the_resolution_folder(tmp_path):
    volume = np.zeros((30, 30, 30), np.uint8)
    volume[3:27, 10:20, 3:12] = 1  # a slab at the bottom...
    volume[3:6, 10:13, 3:27] = 1  # ...and a post rising from it along +z
    sources = [f"{cls}/30/{split}/{cls}_000000{i}_{turn}.mat" for cls in ("desk", "sofa")
               for split, i in (("train", 1), ("test", 2)) for turn in (1, 2)]  # fmt: skip
    for source in sources:
        write_mat_v5(tmp_path / "volumetric_data" / source, {"instance": volume})
    manifest, notes = run("3dshapenets", tmp_path / "volumetric_data", tmp_path / "out")
    assert manifest["layout"] == "modelnet" and manifest["classes"] == ["desk", "sofa"]
    assert manifest["resolution"] == 32 and manifest["config"]["mat_key"] == "instance"
    assert manifest["up_axes"] == {".mat": "z"} and manifest["errors"] == []
    found = samples(tmp_path / "out", manifest)
    assert sorted(found) == sorted(sources)
    for source, (split, label, grid) in found.items():
        assert split == source.split("/")[2] and label == ["desk", "sofa"].index(source.split("/")[0])
        filled = np.argwhere(grid)
        assert (filled.max(axis=0) - filled.min(axis=0)).tolist()[::2] == [31, 31]  # fitted to the grid
        assert grid[:, :, :16].sum() > 2 * grid[:, :, 16:].sum()  # the slab stays at the bottom
