"""What a training run is: its options (:class:`TrainConfig`, saved as ``config.json`` and in every
checkpoint), their check, and the networks they describe."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from voxgan.errors import VoxganError
from voxgan.model.networks import Critic, Generator

# Options that may change when a run is resumed; every other option comes from the checkpoint.
RUNTIME_FIELDS = (
    "steps",
    "epochs",
    "device",
    "workers",
    "log_every",
    "checkpoint_every",
    "eval_every",
    "compile",
)


@dataclass
class TrainConfig:
    """Everything a run needs; saved as ``config.json`` and in every checkpoint.

    Defaults: the original design (batch 32, 50 epochs of 1,000 synthetic volumes, 100-d noise, 16³) and the
    WGAN-GP paper (λ = 10, 5 critic updates per generator update, Adam lr 1e-4, betas (0, 0.9)).
    ``penalty_every = k`` applies the gradient penalty on every k-th critic update only, weighted λ·k (lazy
    regularisation, as StyleGAN2 does for R1); ``penalty_fraction`` computes it on that share of the batch.
    """

    data: str = "synthetic:shapes"
    out: str = "runs"
    epochs: int = 50
    steps: int | None = None
    batch_size: int = 32
    resolution: int = 16
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    conditional: bool = False
    log_every: int = 10
    checkpoint_every: int = 100
    eval_every: int = 0
    compile: bool = False
    epoch_size: int = 1000  # volumes per epoch of a synthetic source
    latent_dim: int = 100
    generator_width: int = 32
    critic_width: int = 32
    generator_attention: tuple[int, ...] = (8,)
    critic_attention: tuple[int, ...] = (4,)
    key_divisor: int = 8
    lr: float = 1e-4
    betas: tuple[float, float] = (0.0, 0.9)
    n_critic: int = 5
    penalty_weight: float = 10.0
    penalty_every: int = 4
    penalty_fraction: float = 1.0
    channels_last: bool = True  # channels-last 3D memory format (faster convolutions on CPU and CUDA)
    ema_decay: float = 0.999
    max_nonfinite: int = 10  # optimiser updates in a row with a non-finite loss or gradient before stopping
    class_names: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kept = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in fields}
        return cls(**kept)


def check_config(config: TrainConfig) -> None:
    """VoxganError naming the first option out of range."""
    checks = [
        (config.resolution in (16, 32, 64), f"resolution must be 16, 32 or 64, got {config.resolution}"),
        (config.batch_size >= 1, f"batch size must be at least 1, got {config.batch_size}"),
        (config.epochs >= 1, f"epochs must be at least 1, got {config.epochs}"),
        (config.steps is None or config.steps >= 1, f"steps must be at least 1, got {config.steps}"),
        (config.n_critic >= 1 and config.penalty_every >= 1, "n_critic and penalty_every must be at least 1"),
        (config.log_every >= 1 and config.checkpoint_every >= 1, "log and checkpoint intervals must be >= 1"),
        (
            0 < config.penalty_fraction <= 1,
            f"penalty_fraction must be in (0, 1], got {config.penalty_fraction}",
        ),
        (config.lr > 0, f"learning rate must be positive, got {config.lr}"),
    ]
    for ok, message in checks:
        if not ok:
            raise VoxganError(message)


def build_networks(config: TrainConfig) -> tuple[Generator, Critic]:
    """The generator and critic a config describes (both on the CPU, freshly initialised)."""
    num_classes = len(config.class_names) if config.conditional else 0
    generator = Generator(
        config.resolution,
        config.latent_dim,
        config.generator_width,
        tuple(config.generator_attention),
        num_classes,
        config.key_divisor,
    )
    critic = Critic(
        config.resolution,
        config.critic_width,
        tuple(config.critic_attention),
        num_classes,
        config.key_divisor,
    )
    return generator, critic
