"""voxgan.model.state: a run's state goes into a checkpoint and comes back whole; a non-finite update is
counted as skipped, never summed."""

import io
import random

import numpy as np
import pytest
import torch

from tests.model.training import TINY
from voxgan.model.config import TrainConfig
from voxgan.model.runs import checkpoint_bytes
from voxgan.model.state import STAT, build_training, checkpoint_state, count_critic_update, restore

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CONFIG = TrainConfig(resolution=16, **TINY)


def test_a_checkpoint_of_the_state_restores_weights_optimisers_position_sums_and_every_rng():
    networks, progress = build_training(CONFIG, torch.device("cpu"), torch.contiguous_format)
    loss = networks.generator(torch.randn(2, CONFIG.latent_dim)).mean()
    loss.backward()
    networks.optimiser_g.step()  # an optimiser with state
    progress.step, progress.epoch, progress.batch_index, progress.train_seconds = 7, 2, 3, 12.5
    progress.sums[STAT["loss_critic"]] = 1.25
    saved = torch.load(io.BytesIO(checkpoint_bytes(checkpoint_state(CONFIG, networks, progress))),
                       weights_only=True)  # fmt: skip
    draws = (torch.rand(3), np.random.rand(3), random.random())  # what comes next after the save

    other = TrainConfig(**{**CONFIG.to_dict(), "seed": CONFIG.seed + 1})
    fresh, fresh_progress = build_training(other, torch.device("cpu"), torch.contiguous_format)
    restore(fresh, fresh_progress, saved)
    for name in ("generator", "critic", "ema"):
        for key, value in getattr(networks, name).state_dict().items():
            assert torch.equal(getattr(fresh, name).state_dict()[key], value), (name, key)
    state, fresh_state = networks.optimiser_g.state_dict()["state"], fresh.optimiser_g.state_dict()["state"]
    assert all(torch.equal(state[i]["exp_avg"], fresh_state[i]["exp_avg"]) for i in state)
    assert (fresh_progress.step, fresh_progress.epoch, fresh_progress.batch_index) == (7, 2, 3)
    assert fresh_progress.train_seconds == 12.5 and torch.equal(fresh_progress.sums, progress.sums)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(draws[0], again[0]) and np.array_equal(draws[1], again[1]) and draws[2] == again[2]


def test_a_non_finite_critic_update_is_counted_as_skipped_and_not_summed():
    _, progress = build_training(CONFIG, torch.device("cpu"), torch.contiguous_format)
    count_critic_update(progress, torch.tensor([1.0, 2.0, 0.5, 3.0]), penalise=True)
    count_critic_update(progress, torch.tensor([9.0, 9.0, 9.0, float("nan")]), penalise=True)
    sums = {name: progress.sums[index].item() for name, index in STAT.items()}
    assert sums["loss_critic"] == 1.0 and sums["grad_norm_critic"] == 3.0 and sums["gradient_penalty"] == 0.5
    assert sums["critic_updates"] == 1 and sums["penalty_updates"] == 1 and sums["skipped_critic"] == 1
    assert progress.streaks.tolist() == [1, 0]  # one non-finite critic update in a row
