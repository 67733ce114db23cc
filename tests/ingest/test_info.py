"""voxgan.ingest.info through real runs: every voxelize run names the up axis it assumed, records it in
the manifest, and leaves preview.png beside the manifest, which `voxgan info` mentions."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from matplotlib.image import imread

from tests import meshfiles
from tests.ingest.test_frame import y_up_wardrobe


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "voxgan", *map(str, args)], capture_output=True, text=True)


def test_a_run_names_its_up_axes_and_writes_a_preview_that_info_mentions(tmp_path: Path):
    vertices, faces = y_up_wardrobe()
    meshfiles.write_glb_mesh(tmp_path / "in" / "tall" / "wardrobe.glb", vertices, faces)
    meshfiles.write_obj_triangles(tmp_path / "in" / "tall" / "wardrobe.obj", vertices, faces)
    meshfiles.write_off(tmp_path / "in" / "flat" / "slab.off", meshfiles.box_vertices(high=(3, 2, 0.2)),
                        meshfiles.box_triangles())  # fmt: skip
    done = run_cli("voxelize", tmp_path / "in", tmp_path / "out", "--workers", 1, "--quiet")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("up axis:")]
    assert lines == [
        "up axis: +z assumed for .obj, .off (--up-axis or the recipe; Y-up meshes need --up-axis y); "
        "+y for .glb (glTF specification); shards are +z up"
    ]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["up_axes"] == {".glb": "y", ".obj": "z", ".off": "z"}
    preview = tmp_path / "out" / "preview.png"
    assert f"preview: {preview}" in done.stdout
    picture = imread(preview)[..., :3]
    assert picture.shape[1] > 3 * 192  # three tiles side by side (2 classes, 3 samples)
    assert (np.abs(picture - picture[0, 0]).sum(axis=2) > 0.3).mean() > 0.01  # voxels are drawn
    again = run_cli("voxelize", tmp_path / "in", tmp_path / "out", "--up-axis", "y", "--overwrite", "--quiet")
    assert "up axis: +y assumed for .obj, .off (--up-axis or the recipe); +y for .glb" in again.stderr
    info = run_cli("info", tmp_path / "out")
    assert info.returncode == 0 and f"preview: {preview}" in info.stdout and "up axis: +y" in info.stdout


def test_info_html_shows_samples_across_classes_with_the_errors_and_then_the_problems(browser, tmp_path):
    from tests.browser import captions, check_page, page_volumes
    from tests.ingest.test_pipeline import voxelize, write_modelnet_tree
    from voxgan import shards

    write_modelnet_tree(tmp_path / "in", train=3, test=1)
    (tmp_path / "in" / "chair" / "train" / "broken.off").write_text("OFF\n3 1 0\n0 0 0\n")
    voxelize(tmp_path / "in", tmp_path / "out", shard_size=2)
    done = run_cli("info", tmp_path / "out", "--html")
    page_path = tmp_path / "out" / "info.html"
    assert done.returncode == 0, done.stderr
    assert f"page: {page_path}" in done.stdout
    text = page_path.read_text(encoding="utf-8")
    assert "chair/train/broken.off" in text and "<h2>Errors (1)</h2>" in text and "Problems" not in text
    volumes = page_volumes(page_path)
    assert len(volumes) == 8  # every sample of the two classes (4 each)
    stored = np.concatenate([shards.read_split(tmp_path / "out", split)[0] for split in ("train", "test")])
    assert all(any(np.array_equal(v, s) for s in stored) for v in volumes)  # the folder's own samples
    page = check_page(browser, page_path, len(volumes))
    names = ["chair"] * 4 + ["table"] * 4  # samples across classes, in class order
    assert captions(page) == [f"{n}\n{int(v.sum())} voxels" for n, v in zip(names, volumes, strict=True)]
    page.close()

    (tmp_path / "out" / "test-00000.h5").unlink()
    done = run_cli("info", tmp_path / "out", "--html")
    assert done.returncode == 1 and "test-00000.h5: missing" in done.stderr
    text = page_path.read_text(encoding="utf-8")
    assert '<ul id="problems"><li>test-00000.h5: missing</li>' in text and page_volumes(page_path) == []


def test_info_verify_names_the_first_bad_file_and_info_refuses_a_disagreeing_manifest(tmp_path: Path):
    """`voxgan info --verify`: one line, exit 0 on a good folder; exit 1 and one line naming the first bad
    file. Without --verify, info refuses a manifest claiming another resolution than its shards."""
    from tests.data.shard_folders import write_folder

    folder = tmp_path / "shards"
    write_folder(folder, [5, 6], resolution=16)
    good = run_cli("info", folder, "--verify")
    assert good.returncode == 0 and good.stdout.splitlines() == ["verified 2 shards, 11 samples"], good.stderr
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["resolution"] = 32
    (folder / "manifest.json").write_text(json.dumps(manifest))
    for args in (("--verify",), ()):
        done = run_cli("info", folder, *args)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1, done.stderr
        assert (
            "train-00000.h5: resolution 16, the manifest says 32" in lines[0]
            and "Traceback" not in done.stderr
        )
