"""What results/ tests start from (volumes, a real shard folder, a real run folder) and the mesh check
they share."""

from pathlib import Path

import numpy as np
import torch

from voxgan.atomic import write_json_atomic
from voxgan.data import make_loader
from voxgan.model.config import TrainConfig, build_networks
from voxgan.model.runs import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, checkpoint_bytes, save_checkpoint
from voxgan.shards import ShardHeader, pack, shard_name, write_shard

CLASSES = ("sphere", "box", "cylinder", "torus")


def synthetic_shapes(count, split="test", resolution=16, seed=0):
    """(count, R, R, R) bool solid primitives and their labels, from the synthetic:shapes source."""
    loader = make_loader(
        "synthetic:shapes",
        batch_size=count,
        split=split,
        shuffle=False,
        epoch_size=count,
        resolution=resolution,
        seed=seed,
    )
    loader.set_epoch(0)
    voxels, labels = next(iter(loader))
    return voxels[:, 0].numpy().astype(bool), labels.numpy()


def make_shards(folder, counts=None, resolution=16, seed=0, classes=CLASSES):
    """A real shard folder (manifest + HDF5) holding synthetic shapes in each split, labelled with the
    first ``len(classes)`` of the shapes' classes (the others folded onto them)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, count in (counts or {"train": 48, "test": 24}).items():
        occupancy, labels = synthetic_shapes(count, split, resolution, seed)
        header = ShardHeader(resolution=resolution, split=split, class_names=classes, recipe="test")
        entry = write_shard(
            folder / shard_name(split, 0),
            header,
            pack(occupancy),
            labels % len(classes),
            [f"{split}/{i}.obj" for i in range(count)],
            np.tile(np.eye(4), (count, 1, 1)),
        )
        splits[split] = {"count": count, "shards": [entry]}
    manifest = {
        "schema_version": 1,
        "resolution": resolution,
        "mode": "solid",
        "layout": "test",
        "recipe": "test",
        "classes": list(classes),
        "splits": splits,
        "errors": [],
        "skipped": {},
        "config": {},
        "voxgan_version": "test",
    }
    write_json_atomic(folder / "manifest.json", manifest)
    return folder


def make_run(runs_dir, name="00000-test", conditional=False, step=7):
    """A run folder with a real checkpoint of a tiny, freshly initialised generator."""
    config = TrainConfig(
        data="synthetic:shapes",
        generator_width=4,
        critic_width=4,
        conditional=conditional,
        class_names=CLASSES if conditional else (),
    )
    torch.manual_seed(0)
    generator, critic = build_networks(config)
    run_dir = Path(runs_dir) / name
    run_dir.mkdir(parents=True)
    state = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "config": config.to_dict(),
        "step": step,
        "ema": generator.state_dict(),
        "generator": generator.state_dict(),
        "critic": critic.state_dict(),
    }
    save_checkpoint(checkpoint_bytes(state), run_dir, step)
    return run_dir


def ball(resolution=16, radius=5.0, centre=(8, 8, 8)):
    points = np.indices((resolution,) * 3).transpose(1, 2, 3, 0) + 0.5
    return np.linalg.norm(points - np.array(centre), axis=-1) < radius


def assert_closed_outward(mesh):
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume > 0
    assert len(np.unique(mesh.vertices, axis=0)) == len(mesh.vertices)  # no duplicate vertices
