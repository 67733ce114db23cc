"""What a training run holds in memory, and how it goes to and from a checkpoint.

:class:`Networks` (the generator, its EMA copy, the critic, their optimisers), :class:`Progress` (where the
run stands, with the sums of the current log interval, indexed by name through :data:`STAT`),
:class:`StepPlan` (what every step shares), fresh state (:func:`build_training`), the state as a checkpoint
(:func:`checkpoint_state`) and back (:func:`restore`), and how an update adds to the sums.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from voxgan import __version__
from voxgan.errors import VoxganError
from voxgan.model.config import TrainConfig, build_networks
from voxgan.model.networks import Critic, Generator, VolumeConvTranspose3d
from voxgan.model.runs import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, restore_rng_state, rng_state

# The sums of a log interval (Progress.sums and a checkpoint's stats_sums), by name, in this order:
CRITIC_VALUES = ("loss_critic", "wasserstein", "gradient_penalty", "grad_norm_critic")  # critic_update's
GENERATOR_VALUES = ("loss_generator", "grad_norm_generator")  # generator_update's
UPDATE_COUNTS = (
    "critic_updates",
    "penalty_updates",
    "generator_updates",
    "skipped_critic",
    "skipped_generator",
)
STAT_NAMES = CRITIC_VALUES + GENERATOR_VALUES + UPDATE_COUNTS
STAT = {name: index for index, name in enumerate(STAT_NAMES)}  # name -> its slot in the sums


@dataclass
class Networks:
    """The generator, its EMA copy (used for samples and export), the critic, and their optimisers."""

    generator: Generator
    critic: Critic
    ema: Generator
    optimiser_g: torch.optim.Optimizer
    optimiser_c: torch.optim.Optimizer


@dataclass
class Progress:
    """Where a run stands, all of it saved in each checkpoint.

    sums : (len(STAT_NAMES),) float64 on the device, summed since the last log line; streaks : (2,) int64,
    the critic and generator updates in a row with a non-finite loss or gradient (checked when logging).
    """

    step: int
    epoch: int
    batch_index: int
    sums: torch.Tensor
    streaks: torch.Tensor
    train_seconds: float = 0.0  # wall-clock seconds of training so far, evaluation not counted


@dataclass(frozen=True)
class StepPlan:
    """What every step of a run shares: the options, the processes, where tensors live, how updates are
    weighted."""

    config: TrainConfig
    rank: int
    world_size: int
    device: torch.device
    memory_format: torch.memory_format
    autocast: torch.autocast
    penalty_samples: int  # volumes of the batch the gradient penalty is computed on
    num_classes: int  # 0 when unconditional

    @classmethod
    def make(cls, config: TrainConfig, rank: int, world_size: int, device: torch.device) -> StepPlan:
        """The plan of a checked ``config`` on this process: channels-last and bfloat16 autocast (CUDA)."""
        return cls(
            config=config,
            rank=rank,
            world_size=world_size,
            device=device,
            memory_format=torch.channels_last_3d if config.channels_last else torch.contiguous_format,
            autocast=torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"),
            penalty_samples=max(1, round(config.batch_size * config.penalty_fraction)),
            num_classes=config.num_classes,
        )

    @property
    def samples_per_step(self) -> int:
        """Real volumes all processes together score in one step."""
        return self.config.batch_size * self.config.n_critic * self.world_size


def build_training(config: TrainConfig, device: torch.device, memory_format) -> tuple[Networks, Progress]:
    """Fresh networks seeded by ``config.seed`` on ``device``, their Adam optimisers, and step 0."""
    torch.manual_seed(config.seed)
    generator, critic = build_networks(config)
    ema = copy.deepcopy(generator).eval().requires_grad_(False)
    for network in (generator, critic, ema):
        network.to(device, memory_format=memory_format)
        # Size-1 dims make channels-last strides ambiguous: give each weight the strides its gradient gets
        # (DDP compares them), contiguous except for transposed convolutions run by the library's kernel.
        for module in network.modules():
            phase_form = isinstance(module, VolumeConvTranspose3d) and device.type == "cpu"
            if isinstance(module, nn.ConvTranspose3d) and not phase_form:
                continue
            for parameter in module.parameters(recurse=False):
                if parameter.dim() == 5 and 1 in parameter.shape[1:]:
                    parameter.data = torch.empty(parameter.shape, device=device).copy_(parameter.data)
    betas = tuple(config.betas)
    optimiser_g = torch.optim.Adam(generator.parameters(), lr=config.lr_generator, betas=betas, fused=True)
    optimiser_c = torch.optim.Adam(critic.parameters(), lr=config.lr_critic, betas=betas, fused=True)
    progress = Progress(
        step=0,
        epoch=0,
        batch_index=0,
        sums=torch.zeros(len(STAT_NAMES), dtype=torch.float64, device=device),
        streaks=torch.zeros(2, dtype=torch.int64, device=device),
    )
    return Networks(generator, critic, ema, optimiser_g, optimiser_c), progress


def checkpoint_state(config: TrainConfig, networks: Networks, progress: Progress) -> dict:
    """Everything a resumed run needs, as plain tensors and numbers (see :mod:`voxgan.model.runs`)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "voxgan_version": __version__,
        "config": config.to_dict(),
        "step": progress.step,
        "epoch": progress.epoch,
        "batch_index": progress.batch_index,
        "generator": networks.generator.state_dict(),
        "critic": networks.critic.state_dict(),
        "ema": networks.ema.state_dict(),
        "optimizer_generator": networks.optimiser_g.state_dict(),
        "optimizer_critic": networks.optimiser_c.state_dict(),
        "stats_sums": progress.sums.cpu(),
        "nonfinite_streaks": progress.streaks.cpu(),
        "train_seconds": progress.train_seconds,
        "rng": rng_state(),
    }


def restore(networks: Networks, progress: Progress, checkpoint: dict) -> None:
    """Load a checkpoint's weights, optimiser states, position, log sums and every RNG state, in place
    (the inverse of :func:`checkpoint_state`)."""
    networks.generator.load_state_dict(checkpoint["generator"])
    networks.critic.load_state_dict(checkpoint["critic"])
    networks.ema.load_state_dict(checkpoint["ema"])
    networks.optimiser_g.load_state_dict(checkpoint["optimizer_generator"])
    networks.optimiser_c.load_state_dict(checkpoint["optimizer_critic"])
    progress.step, progress.epoch = checkpoint["step"], checkpoint["epoch"]
    progress.batch_index = checkpoint["batch_index"]
    progress.sums.copy_(checkpoint["stats_sums"])
    progress.streaks.copy_(checkpoint["nonfinite_streaks"])
    progress.train_seconds = float(checkpoint.get("train_seconds", 0.0))
    restore_rng_state(checkpoint["rng"])


# --- a step's sums --------------------------------------------------------------------------------------


def stat_slots(names: tuple[str, ...]) -> slice:
    """The slots of ``names`` in the sums, which lie side by side in :data:`STAT_NAMES`."""
    start = STAT[names[0]]
    assert STAT_NAMES[start : start + len(names)] == names, names
    return slice(start, start + len(names))


def count_critic_update(progress: Progress, values: torch.Tensor, penalise: bool) -> None:
    """Add a critic update's (4,) [loss, wasserstein, penalty, grad norm] to the sums unless non-finite."""
    ok = torch.isfinite(values[3])
    progress.streaks[0] = torch.where(ok, 0, progress.streaks[0] + 1)
    progress.sums[stat_slots(CRITIC_VALUES)] += torch.where(ok, values.double(), 0)
    progress.sums[STAT["critic_updates"]] += ok.double()
    progress.sums[STAT["penalty_updates"]] += (ok & penalise).double()
    progress.sums[STAT["skipped_critic"]] += (~ok).double()


def count_generator_update(progress: Progress, values: torch.Tensor) -> None:
    """Add a generator update's (2,) [loss, grad norm] to the sums unless non-finite."""
    ok = torch.isfinite(values[1])
    progress.streaks[1] = torch.where(ok, 0, progress.streaks[1] + 1)
    progress.sums[stat_slots(GENERATOR_VALUES)] += torch.where(ok, values.double(), 0)
    progress.sums[STAT["generator_updates"]] += ok.double()
    progress.sums[STAT["skipped_generator"]] += (~ok).double()


def check_streaks(progress: Progress, max_nonfinite: int) -> None:
    """VoxganError when ``max_nonfinite`` updates in a row were skipped as non-finite: training diverged."""
    worst = int(progress.streaks.max())
    if worst >= max_nonfinite:
        raise VoxganError(
            f"training diverged: {worst} optimiser updates in a row had a non-finite loss "
            f"or gradient (step {progress.step}); those updates were skipped and nothing non-finite was "
            "saved; lower --lr or check the data, then resume from the latest checkpoint"
        )
