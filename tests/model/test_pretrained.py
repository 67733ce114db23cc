"""voxgan.model.pretrained: the generators shipped in the package, loaded as plain data, used offline by
``voxgan export --pretrained`` and ``voxgan evaluate --pretrained``."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.results.sources import make_shards
from voxgan.model.config import TrainConfig, with_data_defaults
from voxgan.model.pretrained import pretrained_names, pretrained_path, write_generator_file
from voxgan.model.runs import GENERATOR_KEYS, load_checkpoint, load_generator

NAMES = pretrained_names()
SHIPPED = ("shapes-16", "shapes-16-cond", "shapes-32-cond")


def voxgan(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "voxgan", *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


def test_an_unconditional_and_a_conditional_generator_ship_with_the_package():
    assert set(SHIPPED) <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_a_shipped_generator_is_a_small_plain_data_file_of_the_default_recipe(name):
    path = pretrained_path(name)
    assert path.stat().st_size < 8 * 2**20
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert set(state) == {*GENERATOR_KEYS, "pretrained"}  # no critic, no optimiser
    loaded = load_generator(path)
    about = state["pretrained"]
    default = with_data_defaults(TrainConfig(), loaded.config.resolution, loaded.config.class_names)
    for option in ("generator_width", "critic_width", "generator_attention", "latent_dim"):
        flag = "--" + option.replace("_", "-")
        value = getattr(loaded.config, option)  # the default, or what the recorded command asked for
        assert value == getattr(default, option) or f"{flag} {value}" in about["command"], option
    assert loaded.generator.num_classes == (10 if name.endswith("-cond") else 0)
    assert loaded.config.resolution == int(name.split("-")[1])
    assert about["name"] == name and about["step"] == loaded.step > 0
    assert 0.45 <= about["evaluation"]["nna_iou"] <= 1 and "voxgan train" in about["command"]
    with pytest.raises(Exception, match="incomplete"):
        load_checkpoint(path)  # a generator file cannot be resumed from


def test_export_pretrained_writes_the_asked_class_offline_and_the_same_each_time(tmp_path):
    args = ["export", "--pretrained", "shapes-16-cond", "--class", "chair", "--format", "npy", "--num", 6]
    done = voxgan(*args, "--out", "a", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert voxgan(*args, "--out", "b", cwd=tmp_path).returncode == 0
    first, second = tmp_path / "a" / "shapes-16-cond-chair.npy", tmp_path / "b" / "shapes-16-cond-chair.npy"
    assert first.read_bytes() == second.read_bytes()
    volumes = np.load(first)
    assert volumes.shape == (6, 16, 16, 16) and volumes.dtype == bool
    assert all(volume.sum() > 20 for volume in volumes)  # shapes, not empty grids


def test_a_pretrained_name_that_does_not_exist_is_a_usage_error_naming_the_choices(tmp_path):
    done = voxgan("export", "--pretrained", "shapes-99", "--format", "png", cwd=tmp_path)
    assert done.returncode == 2 and "shapes-99" in done.stderr and "shapes-16-cond" in done.stderr
    done = voxgan("export", "--pretrained", "shapes-16", "--run", "runs/x", "--format", "png", cwd=tmp_path)
    assert done.returncode == 2 and "at most one source" in done.stderr
    done = voxgan("evaluate", "--pretrained", "nope", "--data", "shards", cwd=tmp_path)
    assert done.returncode == 2 and "shapes-16" in done.stderr


def test_evaluate_pretrained_records_into_a_folder_of_its_own(tmp_path):
    make_shards(tmp_path / "shards", {"train": 40, "test": 12})
    done = voxgan(
        "evaluate", "--pretrained", "shapes-16", "--data", "shards", "--no-context", "--device", "cpu",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "runs" / "pretrained-shapes-16"
    record = json.loads((folder / "metrics.jsonl").read_text())
    assert record["num"] == 12 and record["step"] == load_generator(pretrained_path("shapes-16")).step
    assert (folder / "report.html").is_file()
    assert not list(pretrained_path("shapes-16").parent.glob("*.jsonl"))  # nothing written into the package


def test_a_generator_file_generates_what_its_checkpoint_does(short_run, tmp_path):
    out = tmp_path / "generator.pt"
    write_generator_file(short_run, out, {"name": "tiny"})
    full, cut = load_generator(short_run), load_generator(out)
    assert cut.step == full.step and cut.config == full.config
    z, labels = torch.randn(3, full.generator.latent_dim), torch.arange(3) % full.generator.num_classes
    assert torch.equal(full.generator(z, labels), cut.generator(z, labels))
    assert out.stat().st_size < (short_run / "checkpoints" / "latest.pt").stat().st_size / 3
