"""voxgan.model.bookkeeping: what a run writes and when, bounded whatever the hardware's speed. (Its writes
in a real run, a full disk included, are tested with the loop in test_train.py.)"""

import math

import pytest
import torch

from voxgan.model.bookkeeping import Bookkeeping, log_record
from voxgan.model.config import TrainConfig
from voxgan.model.state import STAT_NAMES, Progress
from voxgan.model.train import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def simulate_an_hour(config: TrainConfig, steps_per_second: float, minutes: float = 10.0) -> dict:
    """How many log lines, checkpoints and pictures a run of ``config`` writes in an hour of training at
    this speed: the trainer's own Bookkeeping on a simulated clock (``minutes`` simulated, scaled)."""
    progress = Progress(0, 0, 0, torch.zeros(1), torch.zeros(2))
    books, counts = Bookkeeping.start(config, progress), {"log": 0, "checkpoint": 0, "samples": 0}
    while progress.train_seconds < 60 * minutes:
        progress.step += 1
        progress.train_seconds += 1 / steps_per_second
        for name, due in zip(("log", "checkpoint", "samples"), books.due(progress), strict=True):
            if due:
                counts[name] += 1
                setattr(books, f"last_{name}", (progress.step, progress.train_seconds))
    return {name: count * 60 / minutes for name, count in counts.items()}


def test_a_default_run_grows_by_at_most_100_mb_an_hour_whatever_its_speed(tmp_path):
    run = train(TrainConfig(out=str(tmp_path), steps=1, epoch_size=64, batch_size=8))  # default networks
    checkpoint = (run / "checkpoints" / "latest.pt").stat().st_size
    picture = max(p.stat().st_size for p in (run / "samples").iterdir())
    line = max(len(line) + 1 for line in (run / "stats.jsonl").read_text().splitlines())
    config = TrainConfig()
    fixed = (config.keep + 1) * checkpoint  # the kept snapshots and best.pt (latest.pt is a hard link)
    assert fixed < 80 * 2**20  # four checkpoints of a conditional run, about 17 MB each at 16³
    for steps_per_second in (0.5, 8.0, 400.0):  # a slow CPU, this machine, a GPU
        hour = simulate_an_hour(config, steps_per_second)
        assert hour["samples"] <= 61 and hour["log"] <= 361 and hour["checkpoint"] <= 7
        grown = hour["samples"] * picture + hour["log"] * line  # checkpoints beyond keep are removed
        assert grown < 100 * 2**20, (steps_per_second, grown)


def test_a_log_line_averages_each_value_over_its_own_updates_and_has_no_nan():
    sums = dict.fromkeys(STAT_NAMES, 0.0) | {"loss_critic": 6.0, "critic_updates": 3.0, "skipped_critic": 2.0}
    record = log_record(sums, step=4, epoch=1, steps_done=2, elapsed=0.5, data_wait=0.1, samples_per_step=8)
    assert record["loss_critic"] == 2.0 and record["skipped_critic"] == 2 and record["samples_per_s"] == 32.0
    assert record["loss_generator"] is None and record["gradient_penalty"] is None  # no update: no number
    assert math.isclose(record["data_wait"], 0.05)
