"""What a training run is: its options (:class:`TrainConfig`, saved as ``config.json`` and in every
checkpoint), their check, and the networks they describe."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from voxgan.errors import ConfigError
from voxgan.model.augment import AUGMENTATIONS
from voxgan.model.networks import OUTPUT_LAYERS, Critic, Generator, resolution_steps

DEFAULT_EPOCHS = 50  # when neither --steps, --epochs nor --time-limit is given
DEFAULT_RESOLUTION = 16  # of a config that does not say, before the data has said
# What a run stops at; given on resume, they replace the run's own target, otherwise it is kept.
TARGET_FIELDS = ("steps", "epochs", "time_limit")
# Options that shape the networks: a resumed run cannot change them (its weights would not fit).
NETWORK_FIELDS = (
    "resolution",
    "conditional",
    "latent_dim",
    "generator_width",
    "critic_width",
    "generator_attention",
    "critic_attention",
    "key_divisor",
    "attention_pool",
    "full_resolution_features",
    "output_layer",
)
# Options that say how often something is written: steps ("500") or training time ("10m").
INTERVAL_FIELDS = ("log_every", "checkpoint_every", "samples_every")
# Options that do not belong to the run: where it runs, where its folders go.
PLACE_FIELDS = ("device", "workers", "compile", "out")


@dataclass
class TrainConfig:
    """Everything a run needs; saved as ``config.json`` and in every checkpoint.

    Defaults: the recipe chosen by ``benchmarks/bench_quality.py`` (see BENCHMARKS.md): the original design's
    data and objective (batch 32, 100-d noise, WGAN-GP with λ = 10, Adam betas (0, 0.9), attention in both
    networks) with two time-scale updates (one critic update per generator update, the critic's learning
    rate twice the generator's) and lean networks (no R³ feature maps; attention on the generator's 4³ base
    map and at the critic's 4³, keys and values of attention on larger maps pooled by 2). ``resolution``
    None takes the data's (16³ for a synthetic source).
    :data:`ORIGINAL_DESIGN` holds the options that give the original design instead.
    ``penalty_every = k`` applies the gradient penalty on every k-th critic update only, weighted λ·k (lazy
    regularisation, as StyleGAN2 does for R1); ``penalty_fraction`` computes it on that share of the batch.
    The run stops at ``steps``, else after ``epochs`` passes over the data, or when ``time_limit`` minutes of
    training (evaluation not counted, resumed runs counted together) are spent; with none of the three it
    runs :data:`DEFAULT_EPOCHS` epochs.
    """

    data: str = "synthetic:shapes"
    out: str = "runs"
    epochs: int | None = None
    steps: int | None = None
    time_limit: float | None = None  # minutes
    batch_size: int = 32
    resolution: int | None = None  # None: the data's (shards say theirs; synthetic sources make 16³)
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    conditional: bool | None = None  # None: conditional when the data has two classes or more
    log_every: str = "10s"  # an interval (see parse_interval) of stats.jsonl lines
    checkpoint_every: str = "10m"  # an interval: steps ("500") or training time ("30s", "10m", "2h")
    samples_every: str = "1m"  # the same for samples/step-NNNNNNN.png and loss.png
    keep: int = 3  # step snapshots kept in checkpoints/ (0: all); latest.pt is the newest of them
    eval_every: int = 0
    compile: bool = False
    epoch_size: int = 1000  # volumes per epoch of a synthetic source
    latent_dim: int = 100
    generator_width: int | None = None  # None: default_width(resolution), 16 at 16³
    critic_width: int | None = None
    generator_attention: tuple[int, ...] = (4,)  # on the base map: global and cheap
    critic_attention: tuple[int, ...] = (4,)
    key_divisor: int = 8
    attention_pool: int = 2  # keys and values of attention on maps above 4³ pooled by this
    full_resolution_features: bool = False  # True: voxgan 0.1's networks (a convolution at R³ on both sides)
    output_layer: str = "transposed"  # the generator's last doubling: transposed or resize (see Generator)
    lr_generator: float = 4e-4
    lr_critic: float = 8e-4
    betas: tuple[float, float] = (0.0, 0.9)
    n_critic: int = 1
    penalty_weight: float = 10.0
    penalty_every: int = 1
    penalty_fraction: float = 1.0
    augment: tuple[str, ...] = ()  # what the critic sees, transformed (DiffAugment): see model/augment.py
    channels_last: bool = True  # channels-last 3D memory format (faster convolutions on CPU and CUDA)
    ema_decay: float = 0.999
    speck_penalty: float = 0.0  # weight of the generator's loose voxels (loss.isolated_mass) in its loss
    max_nonfinite: int = 10  # optimiser updates in a row with a non-finite loss or gradient before stopping
    class_names: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        """Classes the networks are conditioned on (0: unconditional); ``conditional`` None conditions on
        the data's classes when there are two or more."""
        conditional = len(self.class_names) >= 2 if self.conditional is None else self.conditional
        return len(self.class_names) if conditional else 0

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """The config a saved dict describes; options it predates take the values that reproduce it."""
        values = dict(values)
        if "lr" in values:  # voxgan 0.1: one learning rate for both networks
            lr = values.pop("lr")
            values.setdefault("lr_generator", lr)
            values.setdefault("lr_critic", lr)
        values = {**BEFORE_THEY_EXISTED, **values}
        for key in INTERVAL_FIELDS:  # voxgan 0.1: a number of steps
            if isinstance(values.get(key), int):
                values[key] = str(values[key])
        fields = {f.name for f in dataclasses.fields(cls)}
        kept = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in fields}
        return cls(**kept)


# The value of each option added after voxgan 0.1 that gives the runs saved before it existed.
BEFORE_THEY_EXISTED = {
    "attention_pool": 1,
    "full_resolution_features": True,
    "output_layer": "transposed",
    "speck_penalty": 0.0,
}

# The design voxgan grew from, as stated: unconditional, transposed convolutions with R³ features in the
# generator, convolutions in the critic, one self-attention layer each, WGAN-GP with λ = 10 and the penalty
# on each of 5 critic updates per generator update, Adam 1e-4 with betas (0, 0.9), batch 32, no average of
# weights.
ORIGINAL_DESIGN = dict(
    conditional=False,
    generator_width=32,
    critic_width=32,
    generator_attention=(8,),
    critic_attention=(4,),
    attention_pool=1,
    full_resolution_features=True,
    lr_generator=1e-4,
    lr_critic=1e-4,
    betas=(0.0, 0.9),
    n_critic=5,
    penalty_weight=10.0,
    penalty_every=1,
    batch_size=32,
    ema_decay=0.0,
    speck_penalty=0.0,
)


@dataclass(frozen=True)
class Interval:
    """How often something happens: every ``count`` steps, or every ``seconds`` of training time."""

    count: int | None = None
    seconds: float | None = None

    def due(self, step: int, seconds: float, last_step: int, last_seconds: float) -> bool:
        """True when ``step`` (at ``seconds`` of training) is a full interval past the last time."""
        if self.count is not None:
            return step // self.count > last_step // self.count
        return seconds - last_seconds >= self.seconds


INTERVAL_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_interval(value: str | int) -> Interval:
    """``500`` (steps) or ``30s`` / ``10m`` / ``1.5h`` (training time) as an :class:`Interval`.

    ValueError saying what an interval looks like for anything else."""
    text = str(value).strip().lower()
    match = re.fullmatch(r"(\d+)|(\d+(?:\.\d*)?|\.\d+)\s*([smh])", text)
    if match is None:
        raise ValueError(f"must be a number of steps (500) or a time (30s, 10m, 2h), got {value!r}")
    if match[1] is not None:
        if int(match[1]) < 1:
            raise ValueError(f"must be at least 1 step, got {value!r}")
        return Interval(count=int(match[1]))
    seconds = float(match[2]) * INTERVAL_UNITS[match[3]]
    if seconds <= 0:
        raise ValueError(f"must be a positive time, got {value!r}")
    return Interval(seconds=seconds)


def check_config(config: TrainConfig) -> None:
    """ConfigError naming the option (as typed on the command line) of the first value out of range."""
    for name in INTERVAL_FIELDS:
        try:
            parse_interval(getattr(config, name))
        except ValueError as error:
            raise ConfigError(option_name(name), f"{name} {error}") from None
    checks = [
        ("resolution", config.resolution in (None, 16, 32, 64), "must be 16, 32 or 64"),
        ("device", is_device_name(config.device), "must be auto, cpu, cuda or cuda:N"),
        ("batch_size", config.batch_size >= 1, "must be at least 1"),
        ("workers", config.workers >= 0, "must be 0 or more"),
        ("epoch_size", config.epoch_size >= 1, "must be at least 1"),
        (
            "generator_width",
            config.generator_width is None or config.generator_width >= 1,
            "must be at least 1",
        ),
        ("critic_width", config.critic_width is None or config.critic_width >= 1, "must be at least 1"),
        ("epochs", config.epochs is None or config.epochs >= 1, "must be at least 1"),
        ("time_limit", config.time_limit is None or config.time_limit > 0, "must be positive"),
        ("steps", config.steps is None or config.steps >= 1, "must be at least 1"),
        ("n_critic", config.n_critic >= 1, "must be at least 1"),
        ("penalty_every", config.penalty_every >= 1, "must be at least 1"),
        ("keep", config.keep >= 0, "must be 0 (keep every snapshot) or more"),
        ("eval_every", config.eval_every >= 0, "must be 0 (never) or more"),
        ("penalty_fraction", 0 < config.penalty_fraction <= 1, "must be in (0, 1]"),
        ("lr_generator", config.lr_generator > 0, "must be positive"),
        ("lr_critic", config.lr_critic > 0, "must be positive"),
        ("ema_decay", 0 <= config.ema_decay < 1, "must be in [0, 1)"),
        ("speck_penalty", config.speck_penalty >= 0, "must be 0 (off) or more"),
        ("attention_pool", config.attention_pool >= 1, "must be at least 1"),
        ("output_layer", config.output_layer in OUTPUT_LAYERS, f"must be one of {', '.join(OUTPUT_LAYERS)}"),
        (
            "output_layer",
            config.output_layer == "transposed" or not config.full_resolution_features,
            "other than transposed needs full_resolution_features False",
        ),
        ("augment", set(config.augment) <= set(AUGMENTATIONS), f"must be among {', '.join(AUGMENTATIONS)}"),
    ]
    for name, ok, message in checks:
        if not ok:
            raise ConfigError(option_name(name), f"{name} {message}, got {getattr(config, name)}")
    if config.resolution is not None:
        for name, allowed in attention_sizes(config.resolution).items():
            wanted = tuple(getattr(config, name))
            if not set(wanted) <= set(allowed):
                raise ConfigError(
                    option_name(name),
                    f"{name} sizes must be among {allowed} at {config.resolution}³, got {wanted}",
                )


def attention_sizes(resolution: int) -> dict[str, list[int]]:
    """The grid sizes where each network can hold self-attention: the generator's base map and the ends of
    its blocks (16 -> [4, 8, 16]), the ends of the critic's blocks (16 -> [4, 8])."""
    generator = [4, *resolution_steps(resolution)]
    return {"generator_attention": generator, "critic_attention": [size // 2 for size in generator[1:]]}


def is_device_name(name: str) -> bool:
    """Whether ``name`` is a ``--device`` value: auto, cpu, cuda or cuda:N."""
    return re.fullmatch(r"auto|cpu|cuda(:\d+)?", name) is not None


def option_name(field: str) -> str:
    """The command-line option of a :class:`TrainConfig` field: ``log_every`` -> ``--log-every``."""
    return "--" + field.replace("_", "-")


def default_width(resolution: int, width: int | None = None) -> int:
    """``width`` when given, else the channels at full resolution that give each grid size the channels
    width 16 gives it at 16³ (64 at 4³, 32 at 8³, 16 at 16³): 16 at 16³, 8 at 32³, 4 at 64³."""
    return max(1, 16 * 16 // resolution) if width is None else width


def with_data_defaults(config: TrainConfig, resolution: int, class_names: tuple[str, ...]) -> TrainConfig:
    """``config`` with what it leaves to the data decided: the resolution, the widths and whether to
    condition on the classes (the data's ``class_names``, taken by a new run)."""
    config = dataclasses.replace(config, resolution=resolution, class_names=class_names)
    return dataclasses.replace(
        config,
        conditional=config.num_classes > 0,
        generator_width=default_width(resolution, config.generator_width),
        critic_width=default_width(resolution, config.critic_width),
    )


def build_networks(config: TrainConfig) -> tuple[Generator, Critic]:
    """The generator and critic a config describes (both on the CPU, freshly initialised, in this order)."""
    return build_generator(config), build_critic(config)


def build_generator(config: TrainConfig) -> Generator:
    """The generator a config describes (on the CPU, freshly initialised)."""
    resolution = config.resolution or DEFAULT_RESOLUTION
    return Generator(
        resolution,
        config.latent_dim,
        default_width(resolution, config.generator_width),
        tuple(config.generator_attention),
        config.num_classes,
        config.key_divisor,
        config.attention_pool,
        config.full_resolution_features,
        config.output_layer,
    )


def build_critic(config: TrainConfig) -> Critic:
    """The critic a config describes (on the CPU, freshly initialised)."""
    resolution = config.resolution or DEFAULT_RESOLUTION
    return Critic(
        resolution,
        default_width(resolution, config.critic_width),
        tuple(config.critic_attention),
        config.num_classes,
        config.key_divisor,
        config.attention_pool,
        config.full_resolution_features,
    )
