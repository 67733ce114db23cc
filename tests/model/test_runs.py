"""voxgan.model.runs: run folders, checkpoints refused unless plain and whole, the EMA generator of a run,
and a checkpoint written by an earlier voxgan that still loads."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.model.training import voxgan_train
from voxgan.atomic import append_line
from voxgan.errors import VoxganError
from voxgan.model.config import TrainConfig
from voxgan.model.runs import (
    checkpoint_bytes,
    checkpoint_path,
    find_latest_run,
    load_checkpoint,
    load_generator,
    read_stats,
    save_checkpoint,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_load_generator_gives_the_ema_generator_in_eval_mode_its_config_and_step(short_run):
    loaded = load_generator(short_run)
    generator, config = loaded.generator, loaded.config
    assert not generator.training and generator.num_classes == 4  # the synthetic shapes' classes
    assert (generator.latent_dim, generator.resolution) == (100, 16)
    assert config == TrainConfig.from_dict(json.loads((short_run / "config.json").read_text()))
    assert config.class_names == ("sphere", "box", "cylinder", "torus")
    assert loaded.step == load_checkpoint(short_run)["step"] == 2
    with torch.no_grad():
        volumes = generator(torch.randn(3, generator.latent_dim), torch.tensor([0, 1, 3]))
    assert volumes.shape == (3, 1, 16, 16, 16) and volumes.min() >= 0 and volumes.max() <= 1
    from_file = load_generator(short_run / "checkpoints" / "step-0000001.pt")
    assert from_file.step == 1
    from_file = from_file.generator
    assert not torch.equal(from_file.to_volume.weight, generator.to_volume.weight)


def test_find_latest_run_takes_the_highest_index(tmp_path):
    for name in ("00001-b", "00010-a", "00002-z", "notes"):
        (tmp_path / name).mkdir()
    assert find_latest_run(tmp_path).name == "00010-a"
    with pytest.raises(VoxganError, match="no run folder"):
        find_latest_run(tmp_path / "missing")


class OpensAFile:
    """Unpickling this calls open(path, "w"): a stand-in for code hidden in a checkpoint."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_checkpoint_with_a_pickled_object_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save({"format": "voxgan-checkpoint", "payload": OpensAFile(marker)}, path)
    with pytest.raises(VoxganError, match="refused") as error:
        load_checkpoint(path)
    assert "\n" not in str(error.value)
    assert not marker.exists()


def test_a_truncated_checkpoint_is_refused_in_one_line(short_run, tmp_path):
    data = (short_run / "checkpoints" / "latest.pt").read_bytes()
    run = tmp_path / "00000-shapes-16"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "latest.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(VoxganError, match="refused"):
        load_checkpoint(run)
    done = voxgan_train("--resume", "--out", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("voxgan: error: ")
    assert "latest.pt: refused" in done.stderr


FIXTURES = Path(__file__).parent / "fixtures"


def test_a_checkpoint_written_by_voxgan_0_1_0_loads_and_samples_the_same_volumes():
    loaded = load_generator(FIXTURES / "00000-shapes-16-cond")
    generator = loaded.generator
    assert loaded.config.class_names == ("sphere", "box", "cylinder", "torus")
    assert (generator.latent_dim, generator.num_classes, generator.resolution) == (100, 4, 16)
    z = torch.randn(4, generator.latent_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        volumes = generator(z, torch.arange(4))
    assert volumes.shape == (4, 1, 16, 16, 16) and volumes.dtype == torch.float32
    assert volumes.min() >= 0 and volumes.max() <= 1
    expected = np.load(FIXTURES / "expected-samples.npy").astype(np.float32)  # (4, 16, 16, 16)
    np.testing.assert_allclose(volumes[:, 0].numpy(), expected, atol=2e-3)


def snapshot_names(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir())


def test_saving_keeps_the_newest_snapshots_and_latest_is_the_newest(short_run, tmp_path):
    state = load_checkpoint(short_run)
    for step in range(1, 6):
        save_checkpoint(checkpoint_bytes({**state, "step": step}), tmp_path, step, keep=2)
    assert snapshot_names(tmp_path) == ["latest.pt", "step-0000004.pt", "step-0000005.pt"]
    assert load_checkpoint(tmp_path)["step"] == 5
    # A run resumed from step 2 of a longer run: earlier snapshots are pruned, later ones left alone.
    for step in (7, 8):
        save_checkpoint(checkpoint_bytes({**state, "step": step}), tmp_path, step, keep=2)
    save_checkpoint(checkpoint_bytes({**state, "step": 6}), tmp_path, 6, keep=1)
    assert snapshot_names(tmp_path) == ["latest.pt", "step-0000006.pt", "step-0000007.pt", "step-0000008.pt"]
    assert load_checkpoint(tmp_path)["step"] == 6
    # keep=0 keeps every snapshot.
    save_checkpoint(checkpoint_bytes({**state, "step": 9}), tmp_path, 9, keep=0)
    assert len(snapshot_names(tmp_path)) == 5


def test_a_run_folder_without_latest_pt_gives_its_newest_snapshot(short_run, tmp_path):
    run = tmp_path / "00000-run"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("step-0000001.pt", "step-0000002.pt"):
        (run / "checkpoints" / name).write_bytes((short_run / "checkpoints" / name).read_bytes())
    assert checkpoint_path(run).name == "step-0000002.pt" and load_checkpoint(run)["step"] == 2
    assert load_generator(run).generator.resolution == 16


def test_stats_with_a_line_cut_short_by_a_crash_keep_the_whole_lines(tmp_path):
    path = tmp_path / "stats.jsonl"
    path.write_text('{"step": 1, "loss_critic": 0.5}\n{"step": 2, "loss_critic": 0.4}\n{"step": 3, "loss_cr')
    assert [r["step"] for r in read_stats(path, 10)] == [1, 2]
    assert [r["step"] for r in read_stats(path, 1)] == [1]


def test_a_line_appended_to_a_full_disk_leaves_the_file_ending_in_a_whole_line(full_disk_dir):
    disk = full_disk_dir(100 * 1024)
    if disk.kind != "tmpfs":
        pytest.skip("needs a small tmpfs (root): the write runs in this process")
    path = disk.path / "stats.jsonl"
    line = '{"step": 1, "padding": "' + "x" * 3000 + '"}\n'
    with pytest.raises(OSError) as error:
        for _ in range(1000):
            append_line(path, line)
    assert error.value.errno == 28  # ENOSPC
    text = path.read_text()
    assert text and text.endswith("\n") and len(text) % len(line) == 0


def test_damaged_checkpoints_are_refused_in_one_line_or_load_whole(tmp_path):
    """A seeded run of the campaign's damage over a checkpoint: its bytes (flips, truncation, words) and
    its contents (the saved config and state mutated, then saved again). Each load ends as a generator
    that makes volumes of its resolution or as one VoxganError line, never another exception."""
    import random

    from tests.hostile import mutated_bytes, mutated_json
    from tests.results.sources import make_run

    run_dir = make_run(tmp_path / "runs")
    latest = run_dir / "checkpoints" / "latest.pt"
    good = latest.read_bytes()
    state = torch.load(latest, weights_only=True)
    rng = random.Random(7)
    outcomes = {"loaded": 0, "refused": 0}
    for attempt in range(80):
        if attempt % 2:
            latest.write_bytes(mutated_bytes(good, rng))
        else:
            damaged = dict(state, config=mutated_json(state["config"], rng))
            if rng.random() < 0.3:
                damaged = mutated_json({k: v for k, v in damaged.items() if not torch.is_tensor(v)}, rng)
                damaged.update({k: state[k] for k in ("generator", "critic", "ema") if rng.random() < 0.7})
            torch.save(damaged, latest)
        try:
            generator = load_generator(run_dir).generator
            volumes = generator(torch.zeros(2, generator.latent_dim), None if not generator.num_classes else
                                torch.zeros(2, dtype=torch.int64))  # fmt: skip
            assert volumes.shape == (2, 1, *(generator.resolution,) * 3)
            outcomes["loaded"] += 1
        except VoxganError as error:
            assert "\n" not in str(error) and str(error)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 20 and outcomes["loaded"] > 0, outcomes


def test_a_checkpoint_claiming_vast_networks_is_refused_by_export_without_building_them(tmp_path):
    """A config claiming networks 2¹⁸ channels wide (terabytes of weights) beside the small weights the
    file holds: `voxgan export` refuses it in one line, having allocated nothing of the sort."""
    import subprocess
    import sys

    from tests.results.sources import make_run

    run_dir = make_run(tmp_path / "runs")
    latest = run_dir / "checkpoints" / "latest.pt"
    state = torch.load(latest, weights_only=True)
    state["config"] = {**state["config"], "generator_width": 2**18, "critic_width": 2**18}
    torch.save(state, latest)
    done = subprocess.run([sys.executable, "-m", "voxgan", "export", "--run", str(run_dir), "--format", "npy",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "latest.pt: refused: not a voxgan generator checkpoint" in done.stderr
    assert "weights are not those of the networks its config describes" in done.stderr
