"""voxgan.model.config: a config survives config.json, bad values are named, the networks follow it."""

import json

import pytest
import torch

from voxgan.errors import VoxganError
from voxgan.model.config import (
    Interval,
    TrainConfig,
    build_networks,
    check_config,
    default_width,
    parse_interval,
)


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
        (dict(generator_width=0), "generator_width must be at least 1"),
        (dict(critic_width=0), "critic_width must be at least 1"),
        (dict(penalty_fraction=0.0), "penalty_fraction must be in"),
        (dict(lr_critic=0.0), "lr_critic must be positive"),
        (dict(time_limit=0.0), "time_limit must be positive"),
        (dict(output_layer="deconvolution"), "output_layer must be one of transposed, resize"),
        (dict(augment=("translation", "flip")), "augment must be among translation, cutout"),
        (dict(output_layer="resize", full_resolution_features=True), "needs full_resolution_features False"),
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
    unconditional, _ = build_networks(
        TrainConfig(generator_width=4, critic_width=4, conditional=False, class_names=("a", "b"))
    )
    assert unconditional.num_classes == 0
    assert [default_width(r) for r in (16, 32, 64)] == [16, 8, 4] and default_width(32, 12) == 12
    left, given = (
        build_networks(TrainConfig(resolution=32)),
        build_networks(TrainConfig(resolution=32, generator_width=8, critic_width=8)),
    )
    for network, same in zip(left, given, strict=True):  # widths left to the resolution: 8 at 32³
        assert [p.shape for p in network.parameters()] == [p.shape for p in same.parameters()]


def test_a_config_saved_by_voxgan_0_1_describes_its_own_networks():
    saved = {"lr": 3e-4, "generator_width": 4, "critic_width": 4, "n_critic": 5, "voxgan_version": "0.1.0"}
    config = TrainConfig.from_dict(saved)
    assert config.lr_generator == config.lr_critic == 3e-4
    assert config.full_resolution_features and config.attention_pool == 1
    generator, critic = build_networks(config)
    assert isinstance(generator.to_volume, torch.nn.Conv3d) and critic.from_volume is not None
    assert not TrainConfig().full_resolution_features and TrainConfig().attention_pool == 2


@pytest.mark.parametrize(
    "text, interval",
    [
        ("500", Interval(count=500)),
        (7, Interval(count=7)),
        ("30s", Interval(seconds=30.0)),
        ("10m", Interval(seconds=600.0)),
        ("1.5h", Interval(seconds=5400.0)),
        (" 2M ", Interval(seconds=120.0)),
    ],
)
def test_an_interval_is_steps_or_training_time(text, interval):
    assert parse_interval(text) == interval


@pytest.mark.parametrize("text", ["0", "-3", "10 minutes", "m", "0s", "1d", "", "1e3"])
def test_a_bad_interval_is_refused_naming_the_option(text):
    with pytest.raises(ValueError, match="steps .* or a time|at least 1 step|positive time"):
        parse_interval(text)
    with pytest.raises(VoxganError, match="samples_every") as error:
        check_config(TrainConfig(samples_every=text))
    assert error.value.option == "--samples-every"


def test_an_interval_is_due_once_a_whole_interval_has_passed():
    every_3 = Interval(count=3)
    assert [s for s in range(1, 10) if every_3.due(s, 0.0, s - 1, 0.0)] == [3, 6, 9]
    assert not every_3.due(5, 0.0, 3, 0.0) and every_3.due(6, 0.0, 5, 0.0)
    a_minute = Interval(seconds=60.0)
    assert not a_minute.due(100, 119.9, 50, 60.0) and a_minute.due(101, 120.0, 50, 60.0)


def test_a_config_saved_with_a_checkpoint_interval_in_steps_loads_as_that_interval():
    config = TrainConfig.from_dict({"checkpoint_every": 100, "log_every": 5})
    assert config.checkpoint_every == "100" and parse_interval(config.checkpoint_every) == Interval(count=100)
    assert config.samples_every == TrainConfig().samples_every and config.keep == TrainConfig().keep


def test_attention_sizes_the_networks_do_not_have_are_refused_naming_the_option():
    check_config(TrainConfig(resolution=32, generator_attention=(4, 32), critic_attention=(16,)))
    with pytest.raises(VoxganError, match=r"generator_attention sizes must be among \[4, 8, 16\]") as error:
        check_config(TrainConfig(resolution=16, generator_attention=(5,)))
    assert error.value.option == "--generator-attention"
    with pytest.raises(VoxganError, match="critic_attention") as error:
        check_config(TrainConfig(resolution=16, critic_attention=(16,)))
    assert error.value.option == "--critic-attention"
