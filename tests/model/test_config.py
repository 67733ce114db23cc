"""voxgan.model.config: a config survives config.json, bad values are named, the networks follow it."""

import json

import pytest
import torch

from voxgan.errors import VoxganError
from voxgan.model.config import TrainConfig, build_networks, check_config


def test_a_config_round_trips_through_json_and_ignores_unknown_keys():
    config = TrainConfig(
        generator_attention=(8, 16), betas=(0.5, 0.99), class_names=("a", "b"), conditional=True
    )
    saved = json.loads(json.dumps(config.to_dict() | {"voxgan_version": "0.1.0"}))
    assert saved["generator_attention"] == [8, 16]
    assert TrainConfig.from_dict(saved) == config


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(resolution=24), "resolution must be 16, 32 or 64"),
        (dict(batch_size=0), "batch_size must be at least 1"),
        (dict(penalty_fraction=0.0), "penalty_fraction must be in"),
        (dict(lr_critic=0.0), "lr_critic must be positive"),
        (dict(time_limit=0.0), "time_limit must be positive"),
    ],
)
def test_check_config_names_the_bad_option(change, message):
    check_config(TrainConfig())
    with pytest.raises(VoxganError, match=message):
        check_config(TrainConfig(**change))


def test_build_networks_follows_the_config():
    config = TrainConfig(
        resolution=32, generator_width=4, critic_width=4, conditional=True, class_names=("a", "b")
    )
    generator, critic = build_networks(config)
    assert (generator.resolution, generator.latent_dim, generator.num_classes) == (32, 100, 2)
    assert (critic.resolution, critic.num_classes) == (32, 2)
    unconditional, _ = build_networks(TrainConfig(generator_width=4, critic_width=4, class_names=("a", "b")))
    assert unconditional.num_classes == 0


def test_a_config_saved_by_voxgan_0_1_describes_its_own_networks():
    saved = {"lr": 3e-4, "generator_width": 4, "critic_width": 4, "n_critic": 5, "voxgan_version": "0.1.0"}
    config = TrainConfig.from_dict(saved)
    assert config.lr_generator == config.lr_critic == 3e-4
    assert config.full_resolution_features and config.attention_pool == 1
    generator, critic = build_networks(config)
    assert isinstance(generator.to_volume, torch.nn.Conv3d) and critic.from_volume is not None
    assert not TrainConfig().full_resolution_features and TrainConfig().attention_pool == 2
